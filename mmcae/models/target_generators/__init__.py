from .dalle import *  # noqa: F401,F403
