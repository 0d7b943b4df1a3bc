"""CAE v2: CAE's encoder and regressor, supervised by a frozen CLIP."""
from .caev2 import *  # noqa: F401,F403
from .head import *  # noqa: F401,F403
