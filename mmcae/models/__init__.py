from .teachers import *  # noqa: F401,F403
from .cae import *  # noqa: F401,F403
from .caev2 import *  # noqa: F401,F403
from .cmae import *  # noqa: F401,F403
from .downstream import *  # noqa: F401,F403
from .data_preprocessors import *  # noqa: F401,F403
from .pretrained_init import *  # noqa: F401,F403
