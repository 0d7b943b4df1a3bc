from .atomic_io import *  # noqa: F401,F403
from .folder_scan import *  # noqa: F401,F403
from .checkpoint import *  # noqa: F401,F403
from .preflight import *  # noqa: F401,F403
