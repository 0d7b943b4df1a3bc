from .cae import *  # noqa: F401,F403
