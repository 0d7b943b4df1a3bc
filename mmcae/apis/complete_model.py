"""The test tools evaluate complete models only, with the right tool.

mmengine's runner loads ``load_from`` with ``strict=False``: every weight
the checkpoint lacks (a pretraining checkpoint has no neck, no decode head,
no classifier) stays at its random init, one warning line among hundreds
says so, and the tool still prints a metric (mIoU 5.16 on the embedded ADE
data for a pretraining checkpoint).  :class:`CompleteModelHook` stops the
test before anything is evaluated, naming the parts the checkpoint leaves
at their initial values and what to run instead.  ``tools/test.py`` and
``tools/transfer/test.py`` each refuse the other's configs
(:func:`check_test_tool`).
"""
from collections import OrderedDict
from typing import Dict, List, Mapping, Tuple

from mmengine.hooks import Hook

__all__ = ['incomplete_parts', 'CompleteModelHook', 'check_test_tool',
           'TRANSFER_SCOPES']

TRANSFER_SCOPES = ('mmdet', 'mmseg')


def _top(key: str) -> str:
    return key.split('.', 1)[0]


def incomplete_parts(expected: Mapping, given: Mapping
                     ) -> Tuple[Dict[str, List[str]], List[str]]:
    """``({top-level module: [missing keys]}, [misshaped keys])``: what a
    non-strict load of ``given`` into a model whose state dict is
    ``expected`` would leave at its initial values."""
    missing = OrderedDict()
    for k in expected:
        if k not in given:
            missing.setdefault(_top(k), []).append(k)
    misshaped = [
        f'{k}: model {tuple(v.shape)}, checkpoint '
        f'{tuple(getattr(given[k], "shape", ()))}'
        for k, v in expected.items()
        if k in given and hasattr(v, 'shape')
        and tuple(v.shape) != tuple(getattr(given[k], 'shape', ()))
    ]
    return missing, misshaped


class CompleteModelHook(Hook):
    """Refuse a test checkpoint that does not set every weight of the model.

    Registered by :func:`mmcae.apis.entry.run_entry` for the two test
    tools; runs on ``after_load_checkpoint``, i.e. after the checkpoint is
    read and before mmengine copies it into the model.

    Args:
        config: the config path, for the commands in the message.
        transfer: ``tools/transfer/*`` (mmdet / mmseg) rather than
            ``tools/*`` (MMPretrain benchmark configs).
    """

    # before ResumeKeysCheckHook (VERY_HIGH), whose flat key list does not
    # say what to run instead
    priority = 'HIGHEST'

    def __init__(self, config: str, transfer: bool):
        self.config = config
        self.transfer = transfer

    def after_load_checkpoint(self, runner, checkpoint):
        if getattr(runner, '_resume', False):
            return
        from mmengine.model import is_model_wrapper

        from ..convert.common import strip_prefix
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        sd = checkpoint.get('state_dict', checkpoint) \
            if isinstance(checkpoint, dict) else {}
        given = strip_prefix(sd if isinstance(sd, dict) else {}, 'module.')
        missing, misshaped = incomplete_parts(model.state_dict(), given)
        if not (missing or misshaped):
            return
        source = getattr(runner, '_load_from', None) or 'the checkpoint'
        raise ValueError(self._message(source, type(model).__name__,
                                         missing, misshaped, given,
                                         model.state_dict()))

    def _message(self, source, owner, missing, misshaped, given, expected):
        lines = [f'{source} does not set every weight of {owner} (the '
                 f'model of {self.config}); testing it would score a model '
                 'whose other weights are random:']
        if missing:
            parts = ', '.join(f'{p}.* ({len(keys)} of them, e.g. '
                              f'{keys[0]})' for p, keys in missing.items())
            lines.append(f'  no weights for: {parts}')
        if misshaped:
            lines.append(f'  shape mismatches ({len(misshaped)}): '
                         f'{misshaped[:5]}')
        has_backbone = any(k.startswith('backbone.') for k in given)
        others = {_top(k) for k in expected} - {'backbone'}
        # every weight of every part but the backbone is missing
        bare = others and all(
            len(missing.get(p, ())) == sum(_top(k) == p for k in expected)
            for p in others)
        if has_backbone and bare:
            lines.append('  it holds a backbone only: a pretraining (or '
                         'backbone-only) checkpoint, not one written by '
                         'training this config')
        if self.transfer:
            train = 'tools/transfer/train.py'
            test = 'tools/transfer/test.py'
        else:
            train, test = 'tools/train.py', 'tools/test.py'
        lines.append(
            f'Train this config from it first: python {train} '
            f'{self.config} --cfg-options '
            f'model.backbone.init_cfg.checkpoint={source} ; then test that '
            f"run's checkpoint: python {test} {self.config} "
            'WORK_DIR/<its last checkpoint>. Nothing was evaluated.')
        return '\n'.join(lines)


def check_test_tool(cfg, config_path: str, transfer: bool) -> None:
    """``tools/test.py`` takes MMPretrain configs, ``tools/transfer/
    test.py`` detection / segmentation configs: anything else is refused
    naming the tool to use."""
    scope = cfg.get('default_scope')
    if not transfer and scope in TRANSFER_SCOPES:
        raise ValueError(
            f'{config_path} is a {scope} transfer config (default_scope='
            f"'{scope}'): test it with python tools/transfer/test.py "
            f'{config_path} CHECKPOINT (tools/test.py evaluates MMPretrain '
            'benchmark configs)')
    if transfer and scope not in TRANSFER_SCOPES:
        raise ValueError(
            f'{config_path} is not a detection / segmentation config '
            f"(default_scope={scope!r}, expected one of {TRANSFER_SCOPES}): "
            f'test it with python tools/test.py {config_path} CHECKPOINT')
