from .checkpoint import *  # noqa: F401,F403
from .preflight import *  # noqa: F401,F403
