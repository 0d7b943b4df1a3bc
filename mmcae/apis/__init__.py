from .entry import *  # noqa: F401,F403
from .linear_probe import *  # noqa: F401,F403
