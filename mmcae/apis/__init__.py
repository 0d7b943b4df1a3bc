from .linear_probe import *  # noqa: F401,F403
