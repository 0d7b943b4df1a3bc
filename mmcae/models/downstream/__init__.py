"""Transfer parts: attentive probing, the detection/segmentation pyramid."""
from .attentive_pooling import *  # noqa: F401,F403
from .simple_pyramid import *  # noqa: F401,F403
