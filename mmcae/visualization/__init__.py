from .reconstruction import *  # noqa: F401,F403
from .encoder_maps import *  # noqa: F401,F403
from .curves import *  # noqa: F401,F403
from .figures import *  # noqa: F401,F403
