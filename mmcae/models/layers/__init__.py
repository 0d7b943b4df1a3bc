"""Layers shared by CAE, CAE v2 and CMAE (timm's ``layers`` package, small).

Parameter names follow the official CAE code (``patch_embed.proj``,
``blocks.i.{norm1, attn.qkv, attn.q_bias, attn.v_bias, attn.proj, norm2,
mlp.fc1, mlp.fc2, gamma_1, gamma_2}``) so that official checkpoints load
after stripping their prefix, without a rename table.
"""
from .attention import *  # noqa: F401,F403
from .blocks import *  # noqa: F401,F403
from .helpers import *  # noqa: F401,F403
from .inputs import *  # noqa: F401,F403
from .masking import *  # noqa: F401,F403
from .patches import *  # noqa: F401,F403
from .pos_embed import *  # noqa: F401,F403
