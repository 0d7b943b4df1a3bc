from .reconstruction import *  # noqa: F401,F403
