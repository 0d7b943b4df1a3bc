from .cae_heads import *  # noqa: F401,F403
from .caev2_head import *  # noqa: F401,F403
