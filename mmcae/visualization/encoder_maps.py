"""Pictures of what an encoder learned: the cls token's attention in the
last block (the CAE paper's Fig. 6) and a t-SNE of its features (Fig. 5).

Both work on any CAE encoder checkpoint layout (mmcae pretraining or
classifier, MMPretrain, official release) and read images as tensors
normalised with ImageNet mean/std, RGB.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .figures import save_figure

__all__ = [
    'build_encoder', 'images_to_tensor', 'last_block_attention',
    'last_block_cls_attention',
    'mass_mask', 'encoder_features', 'attention_figure', 'tsne_figure',
    'render_scenes'
]

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def build_encoder(backbone_cfg: dict, checkpoint: Optional[str] = None):
    """A ``CAEViT`` from a config's ``model.backbone``, loaded from any
    checkpoint layout (``None``: the random init of that config)."""
    from mmcae.models import CAEViT
    from mmcae.convert.cae import load_cae_encoder
    from mmcae.utils import safe_load
    cfg = dict(backbone_cfg)
    cfg.pop('type', None)
    cfg.pop('init_cfg', None)
    cfg['frozen'] = False
    encoder = CAEViT(**cfg)
    if checkpoint is not None:
        load_cae_encoder(encoder, safe_load(checkpoint), checkpoint)
    return encoder.eval()


def images_to_tensor(images: Sequence[np.ndarray], mean=IMAGENET_MEAN,
                     std=IMAGENET_STD) -> torch.Tensor:
    """RGB uint8 HWC arrays -> normalised (B, 3, H, W) float."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std).view(1, 3, 1, 1)


def render_scenes(num: int, img_size, split: str = 'val',
                  num_classes: int = 6) -> Tuple[list, list]:
    """The first ``num`` embedded scenes of a split (the dataset's images,
    rendered without touching the disk) and their labels."""
    from mmcae.datasets.scenes import render_scene
    imgs, labels = [], []
    for i in range(num):
        img, _, _, label = render_scene(i, split=split, img_size=img_size,
                                        num_classes=num_classes)
        imgs.append(img)
        labels.append(label)
    return imgs, labels


def _tokens_before_last_block(encoder, x):
    grid = encoder.patch_embed.grid_size(x.shape)
    h = encoder._prepend_cls(encoder.embed(x))
    for blk in encoder.blocks[:-1]:
        h = blk(h, grid=grid)
    return h, grid


@torch.no_grad()
def last_block_attention(encoder, x: torch.Tensor) -> torch.Tensor:
    """(B, heads, 1+h*w, 1+h*w) softmax attention of the last block,
    relative-position bias included when the encoder has one.  The encoder
    runs attention through SDPA, which returns no weights, so they are
    recomputed from the block's own projections."""
    from mmcae.models.layers import full_qkv_bias
    h, grid = _tokens_before_last_block(encoder, x)
    blk = encoder.blocks[-1]
    attn = blk.attn
    B, N, _ = h.shape
    qkv = F.linear(blk.norm1(h), attn.qkv.weight,
                   full_qkv_bias(attn.q_bias, attn.v_bias))
    q, k, _ = qkv.reshape(B, N, 3, attn.num_heads,
                          attn.head_dim).permute(2, 0, 3, 1, 4)
    logits = (q @ k.transpose(-2, -1)) * attn.head_dim**-0.5
    if attn.rel_pos_grid is not None:
        logits = logits + attn.rel_pos_bias(grid)
    return logits.softmax(-1)


def last_block_cls_attention(encoder, x: torch.Tensor) -> torch.Tensor:
    """(B, heads, h, w): the cls query's attention over the patch tokens
    in the last block (the cls->cls weight left out, as in the paper)."""
    grid = encoder.patch_embed.grid_size(x.shape)
    probs = last_block_attention(encoder, x)[:, :, 0, 1:]
    return probs.reshape(*probs.shape[:2], *grid)


def mass_mask(attn: torch.Tensor, mass: float = 0.5) -> torch.Tensor:
    """The smallest set of patches holding ``mass`` of each map's total
    attention (DINO's thresholding), as a bool map of the same shape."""
    flat = attn.flatten(-2)
    flat = flat / flat.sum(-1, keepdim=True)
    vals, idx = flat.sort(-1, descending=True)
    before = vals.cumsum(-1) - vals  # mass of the strictly larger ones
    keep_sorted = before < mass
    keep = torch.zeros_like(keep_sorted).scatter(-1, idx, keep_sorted)
    return keep.reshape(attn.shape)


@torch.no_grad()
def encoder_features(encoder, x: torch.Tensor,
                     feature: str = 'mean') -> torch.Tensor:
    """(B, C) features: ``'cls'`` (cls token after the final norm, the
    linear probe's) or ``'mean'`` (mean patch token: after fc_norm for a
    mean-pooling classifier encoder, after the final norm otherwise)."""
    if feature not in ('cls', 'mean'):
        raise ValueError(f"feature must be 'cls' or 'mean', got {feature!r}")
    h, grid = _tokens_before_last_block(encoder, x)
    h = encoder.blocks[-1](h, grid=grid)
    fc_norm = getattr(encoder, 'fc_norm', None)
    if feature == 'mean' and fc_norm is not None:
        return fc_norm(h[:, 1:].mean(1))
    h = encoder.norm(h)
    return h[:, 0] if feature == 'cls' else h[:, 1:].mean(1)


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def attention_figure(encoder, images: Sequence[np.ndarray], out_file: str,
                     mass: float = 0.5, titles: Sequence[str] = None,
                     panel_px: int = 160, source: str = '') -> str:
    """Rows: image; head-averaged cls attention of the last block over the
    image with the contour of the patches holding ``mass`` of it; the
    same contour for every head (one colour each).  Each panel is
    ``panel_px`` square and a key strip half a panel wide sits on the
    right (a colour bar for row 2 on one scale for all images, the head
    colours of row 3), so the PNG is ((cols + 0.5) x panel_px,
    3 x panel_px).  ``source`` (the checkpoint) heads the title, so that
    figures of different encoders cannot be mistaken for each other.
    Returns the path written (see :func:`save_figure`)."""
    plt = _plt()
    attn = last_block_cls_attention(encoder, images_to_tensor(images))
    mean_map = attn.mean(1)
    mean_mask = mass_mask(mean_map, mass)
    head_masks = mass_mask(attn, mass)
    H, W = images[0].shape[:2]
    cols, dpi = len(images), 100
    width = (cols + 0.5) * panel_px
    fig, axes = plt.subplots(
        3, cols, figsize=(width / dpi, 3 * panel_px / dpi),
        dpi=dpi, squeeze=False)
    fig.subplots_adjust(0, 0, cols * panel_px / width, 0.90, 0.02, 0.02)
    cmap = plt.get_cmap('tab10')
    vmax = float(mean_map.max())

    def up(m):  # (h, w) -> (H, W), nearest: one block per patch
        return F.interpolate(m[None, None].float(), size=(H, W),
                             mode='nearest')[0, 0].numpy()

    for c, img in enumerate(images):
        axes[0, c].imshow(img)
        if titles:
            axes[0, c].set_title(titles[c], fontsize=7, pad=2)
        axes[1, c].imshow(img)
        heat = F.interpolate(mean_map[c][None, None], size=(H, W),
                             mode='bilinear', align_corners=False)[0, 0]
        shown = axes[1, c].imshow(heat.numpy(), cmap='inferno', alpha=0.6,
                                  vmin=0.0, vmax=vmax)
        axes[1, c].contour(up(mean_mask[c]), levels=[0.5], colors='cyan',
                           linewidths=1.0)
        axes[2, c].imshow(img)
        for hd in range(attn.shape[1]):
            axes[2, c].contour(up(head_masks[c, hd]), levels=[0.5],
                               colors=[cmap(hd % 10)], linewidths=0.8)
        for r in range(3):
            axes[r, c].set_axis_off()
    left = cols * panel_px / width
    bar = fig.add_axes([left + 0.1 * (1 - left), 1 / 3 + 0.02,
                        0.2 * (1 - left), 1 / 3 - 0.04])
    cb = fig.colorbar(shown, cax=bar)
    cb.ax.tick_params(labelsize=5)
    uniform = 1 / (attn.shape[-1] * attn.shape[-2])
    cb.set_label(f'head-mean weight (uniform = {uniform:.3f})', fontsize=5)
    from matplotlib.lines import Line2D
    fig.legend([Line2D([], [], color=cmap(h % 10)) for h in
                range(attn.shape[1])],
               [f'head {h}' for h in range(attn.shape[1])],
               loc='center', bbox_to_anchor=((1 + left) / 2, 1 / 6),
               fontsize=5, frameon=False, handlelength=1.2)
    fig.suptitle(f'{source or "encoder"}\ncls attention, last block: '
                 f'image / head mean with its {int(mass * 100)} % mass '
                 'contour / per-head contours', fontsize=6, y=0.995)
    return save_figure(fig, out_file, dpi=dpi)


def tsne_figure(feats: torch.Tensor, labels: Sequence[int],
                class_names: Sequence[str], out_file: str,
                title: str = '', seed: int = 0, perplexity: float = 30.,
                size_px: int = 600) -> str:
    """2-D t-SNE (scikit-learn) of ``feats`` coloured by class; a square
    ``size_px`` figure; returns the path written (see
    :func:`save_figure`)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as e:  # pragma: no cover - listed in requirements
        raise ImportError('the t-SNE figure needs scikit-learn '
                          '(requirements/runtime.txt)') from e
    if not 0 < perplexity < len(feats):
        # TSNE's own check (perplexity < n_samples) comes after the work;
        # the perplexity is used as given, never lowered behind the title
        raise ValueError(f't-SNE needs more points than its perplexity: '
                         f'{len(feats)} points, perplexity {perplexity}')
    plt = _plt()
    x = feats.double().numpy()
    emb = TSNE(n_components=2, perplexity=perplexity, init='pca',
               random_state=seed).fit_transform(x)
    labels = np.asarray(labels)
    dpi = 100
    fig, ax = plt.subplots(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
    cmap = plt.get_cmap('tab10')
    for c, name in enumerate(class_names):
        sel = labels == c
        ax.scatter(emb[sel, 0], emb[sel, 1], s=6, color=cmap(c % 10),
                   label=name)
    ax.legend(fontsize=7, markerscale=2, loc='best')
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_file, dpi=dpi)
