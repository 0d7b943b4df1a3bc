"""CMAE's projector and predictor: MMPretrain's ``NonLinearNeck`` in the
official shape (Linear-BN-ReLU-Linear, no last BN or bias)."""
from mmpretrain.models.necks import NonLinearNeck

from ...registry import MODELS

__all__ = ['CMAEProjector', 'CMAEPredictor']


@MODELS.register_module()
class CMAEProjector(NonLinearNeck):
    """Projector (ViT-B: 768-1536-256) on the feature decoder's mean token;
    the momentum projector is a second instance updated by EMA.

    Only the widths and the norm are free: the rest is the official head.
    The official norm is SyncBN (eps 1e-6); one process needs ``BN1d``.
    Forward as ``NonLinearNeck``'s: a 1-tuple in, a 1-tuple out.
    """

    def __init__(self,
                 in_channels: int = 768,
                 hid_channels: int = 1536,
                 out_channels: int = 256,
                 norm_cfg: dict = dict(type='SyncBN', eps=1e-6),
                 **kwargs):
        super().__init__(
            in_channels,
            hid_channels,
            out_channels,
            num_layers=2,
            with_bias=True,
            with_last_bn=False,
            with_last_bias=False,
            with_avg_pool=False,
            norm_cfg=norm_cfg,
            **kwargs)


@MODELS.register_module()
class CMAEPredictor(CMAEProjector):
    """Predictor (256-1536-256) on the online projection, before InfoNCE;
    built by ``MoCoV3Head`` as its ``predictor`` (``head.predictor.*``)."""

    def __init__(self, in_channels: int = 256, **kwargs):
        super().__init__(in_channels, **kwargs)
