from .cae_vit import *  # noqa: F401,F403
from .cmae_vit import *  # noqa: F401,F403
