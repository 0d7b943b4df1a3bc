"""CAE's prediction heads and its alignment loss."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from ...registry import MODELS
from ..layers import gather_tokens, mask_ids, patchify, to_2tuple

__all__ = [
    'CAETokenPredictionHead', 'CAEPixelPredictionHead', 'CAEAlignment',
    'normalize_patches'
]


@MODELS.register_module()
class CAETokenPredictionHead(BaseModule):
    """Linear classifier over the dVAE vocabulary, cross-entropy loss.

    Targets are the DALL-E token ids of the masked patches.
    """

    def __init__(self, embed_dims=768, num_classes=8192, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.fc = nn.Linear(embed_dims, num_classes)
        nn.init.xavier_uniform_(self.fc.weight)  # official init
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        return self.fc(x)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred (B, Nm, K) logits; target (B, Nm) token ids."""
        if target.shape != pred.shape[:-1]:
            raise ValueError(f'token targets {tuple(target.shape)} do not '
                             f'match predictions {tuple(pred.shape[:-1])}')
        # float32 softmax even under AMP, as the official loss.
        return F.cross_entropy(
            pred.float().flatten(0, 1), target.flatten().long())


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6):
    """Per-patch zero mean / unit variance (MAE's ``norm_pix_loss``)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt(), mean, var


@MODELS.register_module()
class CAEPixelPredictionHead(BaseModule):
    """Regresses the pixels of the masked patches (MSE).

    With ``norm_pix=True`` the target is each patch normalised by its own
    mean and variance, as in the paper's reconstruction figure.
    """

    def __init__(self,
                 embed_dims=768,
                 patch_size=16,
                 in_channels=3,
                 norm_pix=True,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.patch_size = to_2tuple(patch_size)
        self.in_channels = in_channels
        self.norm_pix = norm_pix
        out = self.patch_size[0] * self.patch_size[1] * in_channels
        self.fc = nn.Linear(embed_dims, out)
        nn.init.xavier_uniform_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        return self.fc(x)

    def targets(self, img: torch.Tensor, mask) -> torch.Tensor:
        """(B, Nm, p*p*C) pixel targets of the masked patches (``mask``:
        :class:`~mmcae.models.layers.MaskIds` or a (B, N) bool mask)."""
        patches = patchify(img, self.patch_size)
        target = gather_tokens(patches, mask_ids(mask).masked)
        if self.norm_pix:
            target = normalize_patches(target)[0]
        return target

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape != pred.shape:
            raise ValueError(f'pixel targets {tuple(target.shape)} do not '
                             f'match predictions {tuple(pred.shape)}')
        return F.mse_loss(pred.float(), target.float())


@MODELS.register_module()
class CAEAlignment(nn.Module):
    """Aligns the regressor's predictions with the encoder's own latents.

    The target is the *current* encoder applied to the masked patches, with
    no gradient.  The official code keeps an ``alignment_encoder`` whose
    tensors are the encoder's, so the target always uses the current
    weights; sharing the encoder module gives exactly that without a copy
    (MMPretrain's momentum copy with m=0 lags one step behind instead).
    Like the official teacher, the encoder stays in train mode here, so
    drop path is active in the target pass too.
    """

    def __init__(self, loss_weight: float = 2.0):
        super().__init__()
        self.loss_weight = loss_weight

    @torch.no_grad()
    def target(self, encoder, tokens: torch.Tensor, mask,
               project) -> torch.Tensor:
        """Encoder output of the masked patches (cls dropped), projected."""
        out = encoder.forward_tokens(tokens.detach(),
                                     mask_ids(mask).masked)[:, 1:]
        return project(out).detach()

    def loss(self, pred: torch.Tensor, target: torch.Tensor):
        return self.loss_weight * F.mse_loss(pred.float(), target.float())

    def extra_repr(self) -> str:
        return f'loss_weight={self.loss_weight}'
