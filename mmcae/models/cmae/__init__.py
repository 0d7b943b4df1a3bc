"""CMAE (Huang et al., 2022): one file per box of the paper's figure."""
from .branches import *  # noqa: F401,F403
from .cmae import *  # noqa: F401,F403
from .decoders import *  # noqa: F401,F403
from .encoder import *  # noqa: F401,F403
from .momentum_encoder import *  # noqa: F401,F403
from .momentum_hook import *  # noqa: F401,F403
from .projector import *  # noqa: F401,F403
