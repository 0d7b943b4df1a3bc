from .cae_regressor import *  # noqa: F401,F403
from .attentive_pooling import *  # noqa: F401,F403
from .simple_pyramid import *  # noqa: F401,F403
