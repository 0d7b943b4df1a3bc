from .scenes import *  # noqa: F401,F403
from .transforms import *  # noqa: F401,F403
from .sample_seed import *  # noqa: F401,F403
from .transfer_data import *  # noqa: F401,F403
from .color_transforms import *  # noqa: F401,F403
