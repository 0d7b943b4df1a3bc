from .cae import *  # noqa: F401,F403
from .caev2 import *  # noqa: F401,F403
from .cmae import *  # noqa: F401,F403
