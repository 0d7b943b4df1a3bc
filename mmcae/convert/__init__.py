"""Reading foreign checkpoints: one module per source.

``cae``: official CAE / MMPretrain CAE encoders; ``cmae``: official CMAE
(MMSelfSup-style) checkpoints; the DALL-E and CLIP teachers' files are
converted by the tools in ``tools/model_converters/``;
``restricted_pickle``: an unpickler for plain-pickle releases that lets only
tensors out. Loading mmcae's own checkpoints is :mod:`mmcae.utils.checkpoint`.
"""
from .cae import *  # noqa: F401,F403
from .cmae import *  # noqa: F401,F403
