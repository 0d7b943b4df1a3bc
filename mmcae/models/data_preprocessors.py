"""One image, two normalisations (student and teacher views)."""
from typing import Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from ..registry import MODELS

__all__ = ['DualNormDataPreprocessor']


@MODELS.register_module()
class DualNormDataPreprocessor(BaseDataPreprocessor):
    """Normalise one batch twice: ImageNet stats for the student, the
    teacher's stats (CLIP's for CAE v2) for the target generator.

    CAE v2's second view is the same crop at the same size (224), so
    MMPretrain's ``TwoNormDataPreprocessor`` would need the pipeline to
    decode, crop and collate every image twice; this takes one.
    """

    def __init__(self,
                 mean: Sequence[float],
                 std: Sequence[float],
                 second_mean: Sequence[float],
                 second_std: Sequence[float],
                 to_rgb: bool = True,
                 non_blocking: bool = False):
        super().__init__(non_blocking)
        self.to_rgb = to_rgb
        for name, v in (('mean', mean), ('std', std),
                        ('second_mean', second_mean),
                        ('second_std', second_std)):
            if len(v) != 3:
                raise ValueError(f'DualNormDataPreprocessor: {name} needs 3 '
                                 f'values, got {list(v)}')
            self.register_buffer(name,
                                 torch.tensor(v).view(1, 3, 1, 1), False)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        x = data['inputs']
        if isinstance(x, (list, tuple)):
            x = torch.stack(list(x))
        if self.to_rgb:
            x = x[:, [2, 1, 0]]
        x = x.float()
        return {
            'inputs': [(x - self.mean) / self.std,
                       (x - self.second_mean) / self.second_std],
            'data_samples': data.get('data_samples')
        }
