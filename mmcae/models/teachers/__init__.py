"""Frozen teachers making the targets: DALL-E tokenizer (CAE), CLIP (CAE v2).
"""
from .base import *  # noqa: F401,F403
from .clip import *  # noqa: F401,F403
from .dalle import *  # noqa: F401,F403
