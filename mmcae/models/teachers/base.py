"""What every frozen teacher (DALL-E tokenizer, CLIP) shares: weights from
one local file converted by mmcae (or random ones on request), checked
against the module's keys and shapes before loading, never trained."""
import os
from typing import List, Mapping, Optional

import torch
from mmengine.model import BaseModule

from mmcae.convert.common import check_state_dict, state_dict_of
from mmcae.utils.checkpoint import (UnsafeCheckpointError, _first_line,
                                    is_torchscript_archive, safe_load)

__all__ = ['FrozenTeacher', 'keep_target_generator_out_of_checkpoints']


class FrozenTeacher(BaseModule):
    """Base of the frozen target generators.

    A subclass builds its layers, then calls :meth:`_set_weights`; it names
    its converter and the released file in the class attributes below,
    which every refusal message quotes. The module is always frozen: no
    parameter requires grad and ``train()`` keeps it in eval mode.

    Args:
        checkpoint (str, optional): local path of a file written by the
            subclass's converter (``{'state_dict': ..., 'meta': ...}``; a
            bare state dict is accepted too). Required unless
            ``random_init=True``.
        random_init (bool): random weights, nothing loaded (tests and
            benchmarks only); must not be combined with ``checkpoint``.
        init_cfg: unused (weights come from ``checkpoint``).
    """
    #: the teacher's weights in words ('DALL-E encoder')
    weights_name = ''
    #: the converter script, relative to the repository root
    converter = ''
    #: file name of the official release, as the converter takes it
    release_file = ''
    #: where that file comes from, in words
    release_from = ''

    def __init__(self,
                 checkpoint: Optional[str] = None,
                 random_init: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        if checkpoint is None and not random_init:
            raise ValueError(
                f'{name} needs `checkpoint` (a local file converted with '
                f'`python {self.converter} {self.release_file} OUT.pth` '
                f'from {self.release_from}); pass random_init=True '
                'explicitly for random weights')
        if checkpoint is not None and random_init:
            raise ValueError(f'{name}: give either `checkpoint` or '
                             'random_init=True, not both')

    @classmethod
    def meta(cls, **kwargs) -> 'FrozenTeacher':
        """A random-init instance on the meta device: its keys and shapes,
        without memory (what converters check their output against)."""
        with torch.device('meta'):
            return cls(random_init=True, **kwargs)

    # ------------------------------------------------------------------ #
    # weights
    # ------------------------------------------------------------------ #
    def _set_weights(self, checkpoint: Optional[str], random_init: bool):
        """Random weights or ``checkpoint``'s (checked, strict), then
        frozen: no gradients, eval mode."""
        if random_init:
            self._random_init()
            self.checkpoint = None
        else:
            self.checkpoint = os.path.expanduser(os.fspath(checkpoint))
            self.load_state_dict(self._read_checkpoint(self.checkpoint),
                                 strict=True)
        self.requires_grad_(False)
        super().train(False)

    def _random_init(self):
        raise NotImplementedError

    def _read_checkpoint(self, path: str) -> dict:
        """The state dict in ``path``, refused with the converter command
        when it is missing, a release that needs converting, or does not
        fit."""
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f'{self.weights_name} checkpoint not found: {path!r}. '
                f'Convert {self.release_from} first: `python '
                f'{self.converter} {self.release_file} {path}` (the '
                'converter runs no code from the file).')
        if is_torchscript_archive(path):
            raise ValueError(
                f'{path!r} is a TorchScript archive, not a converted mmcae '
                f'{self.weights_name} checkpoint; convert it first: '
                f'`python {self.converter} {path} OUT.pth`')
        try:
            ckpt = safe_load(path)
        except UnsafeCheckpointError as e:
            stem = os.path.splitext(os.path.basename(path))[0]
            raise UnsafeCheckpointError(
                f'{path!r} is not a converted mmcae {self.weights_name} '
                'checkpoint: it cannot be read with torch.load(weights_only='
                f'True) ({_first_line(e)}). If it is {self.release_from}, '
                f'convert it first: `python {self.converter} {path} '
                f'checkpoints/{stem}_mmcae.pth` and pass the output as '
                '`checkpoint`.') from None
        sd = state_dict_of(ckpt, path)
        self.check_weights(sd, path)
        return sd

    def check_weights(self, state_dict: Mapping[str, torch.Tensor],
                      source: str) -> None:
        """``ValueError`` listing what in ``state_dict`` (read from
        ``source``) does not fit this teacher's keys and shapes."""
        check_state_dict(self.state_dict(), state_dict, source,
                         type(self).__name__, self._mismatch_hints(state_dict))

    def _mismatch_hints(self, state_dict) -> List[str]:
        return [f'convert {self.release_from} with `python {self.converter} '
                f'{self.release_file} OUT.pth`']

    def init_weights(self):
        """No-op: the weights come from ``checkpoint`` (or random_init)."""
        self._is_init = True

    def train(self, mode: bool = True):
        """Always stays in eval mode (frozen teacher)."""
        return super().train(False)


def _drop_target_generator(module, state_dict, prefix, local_metadata):
    for k in [k for k in state_dict
              if k.startswith(prefix + 'target_generator.')]:
        del state_dict[k]


def _keep_target_generator(module, state_dict, prefix, *args):
    # Checkpoints without the frozen tokenizer load strictly: its weights
    # stay those loaded from its own file.
    for k, v in module.target_generator.state_dict(
            prefix=prefix + 'target_generator.',
            keep_vars=True).items():
        state_dict.setdefault(k, v)


def keep_target_generator_out_of_checkpoints(model):
    """A frozen target generator (DALL-E 205 MiB, CLIP ViT-B/16 330 MiB) is
    loaded from its own file: leave it out of every training checkpoint,
    and let checkpoints without it load strictly."""
    model.register_state_dict_post_hook(_drop_target_generator)
    model.register_load_state_dict_pre_hook(_keep_target_generator)
