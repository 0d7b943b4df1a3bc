from .cae_vit import *  # noqa: F401,F403
