"""Reading foreign checkpoints: what every source needs, then one module
per source.

``common``: unwrapping (``state_dict`` / ``model`` / ``module``), prefixes,
renames, the key / shape check and the source hash; ``cae``: official CAE /
MMPretrain CAE encoders; ``cmae``: official CMAE (MMSelfSup-style)
checkpoints; ``dalle``: OpenAI's DALL-E ``encoder.pkl``; ``clip``: OpenAI /
open_clip CLIP image towers; ``restricted_pickle``: an unpickler for
plain-pickle releases that lets only tensors out. The command-line tools
are in ``tools/model_converters/``. Loading mmcae's own checkpoints is
:mod:`mmcae.utils.checkpoint`.

``dalle`` and ``clip`` check their output against the teachers in
:mod:`mmcae.models.teachers`, which read their converted files with
``common``: import them by module name (``mmcae.convert.clip``), so that
importing this package does not import the models.
"""
from .cae import *  # noqa: F401,F403
from .cmae import *  # noqa: F401,F403
from .common import *  # noqa: F401,F403
