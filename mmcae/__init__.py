"""mmcae: CAE, CAE v2 and CMAE as OpenMMLab components.

Importing the package (``custom_imports=dict(imports=['mmcae'])`` in a config)
registers every component.
"""
from .version import __version__, check_dependencies  # noqa: F401

# Fail here, naming the package and the range, rather than deep inside a run.
check_dependencies()

from . import datasets, engine, models  # noqa: F401,E402
from .utils import setup_safe_torch_load  # noqa: E402

# mmengine's checkpoint loading (load_from, --resume, init_cfg, URLs) goes
# through mmcae's validated weights-only loader; torch's own allow-list is
# left untouched (mmcae's is scoped to its loading calls, see
# mmcae/utils/checkpoint.py).
setup_safe_torch_load()
