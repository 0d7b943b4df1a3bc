"""CAE (Chen et al., 2022): one file per box of the paper's figure."""
from .alignment import *  # noqa: F401,F403
from .context_autoencoder import *  # noqa: F401,F403
from .decoder import *  # noqa: F401,F403
from .encoder import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .regressor import *  # noqa: F401,F403
