"""Load a detection / segmentation transfer config, failing clearly when its
toolbox (MMDetection / MMSegmentation, the ``transfer`` extra) is missing or
outside the supported range."""
from ..version import TRANSFER, require_transfer
from .preflight import load_config

__all__ = ['load_transfer_config']


def load_transfer_config(path):
    """``Config.fromfile(path)`` (through :func:`load_config`, whose syntax
    errors name the file and line), after which the toolbox of the config's
    ``default_scope`` is imported and its version checked.

    A config that inherits ``mmdet::`` / ``mmseg::`` files fails inside
    mmengine when the toolbox is absent ("mmdet is not installed, please
    install mmdet manually"); that error is replaced by one that names the
    package, the range and ``pip install -e .[transfer]``.
    """
    try:
        cfg = load_config(path)
    except ModuleNotFoundError as e:
        for name, (dist, _, _) in TRANSFER.items():
            if str(e).startswith((f'{name} ', f'{dist} ')):
                require_transfer(name)  # raises, naming the extra
        raise
    scope = cfg.get('default_scope')
    if scope in TRANSFER:
        require_transfer(scope)
    return cfg
