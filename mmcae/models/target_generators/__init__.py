from .dalle import *  # noqa: F401,F403
from .clip import *  # noqa: F401,F403
