"""Original / masked / reconstructed figure (the CAE paper's Fig. 4 style)."""
from typing import List, Sequence

import numpy as np
import torch

from .figures import save_figure

__all__ = [
    'skimage_photos', 'reconstruction_figure', 'center_crop_resize',
    'photos_and_scenes_figure'
]


def center_crop_resize(img: np.ndarray, size) -> np.ndarray:
    """HWC uint8 -> square-cropped, resized to ``size`` (h, w)."""
    from PIL import Image
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = img[top:top + s, left:left + s]
    return np.asarray(
        Image.fromarray(img).resize((size[1], size[0]), Image.BICUBIC))


def skimage_photos(size) -> List[np.ndarray]:
    """Real photos shipped with scikit-image (no download), RGB uint8."""
    from skimage import data
    out = []
    for name in ('astronaut', 'chelsea', 'coffee', 'rocket'):
        img = getattr(data, name)()
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        out.append(center_crop_resize(img[..., :3], size))
    return out


@torch.no_grad()
def reconstruction_figure(model,
                          images: Sequence[np.ndarray],
                          masks: torch.Tensor,
                          out_file: str,
                          mean=(123.675, 116.28, 103.53),
                          std=(58.395, 57.12, 57.375),
                          titles: Sequence[str] = None) -> str:
    """Write a figure with rows original / masked / reconstruction (the
    format the extension of ``out_file`` names); returns the path written.

    Args:
        model: a model with ``reconstruct(img, mask)`` (CAE with a pixel
            head, CMAE).
        images: RGB uint8 HWC arrays of the model's input size.
        masks: (B, h, w) or (B, N) bool, True = masked.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    x = (x - mean_t) / std_t
    was_training = model.training
    model.eval()
    rec = model.reconstruct(x, masks)
    model.train(was_training)
    rec = (rec * std_t + mean_t).clamp(0, 255).byte().permute(0, 2, 3, 1)

    ph, pw = model.backbone.patch_size
    H, W = x.shape[-2:]
    m = masks.reshape(len(images), H // ph, W // pw).bool()
    m = m.repeat_interleave(ph, 1).repeat_interleave(pw, 2)
    masked = torch.from_numpy(np.stack(images)).clone()
    masked[m] = torch.tensor([127, 127, 127], dtype=torch.uint8)

    n = len(images)
    fig, axes = plt.subplots(3, n, figsize=(1.8 * n, 5.6), squeeze=False)
    rows = [('original', [torch.from_numpy(np.array(i)) for i in images]),
            ('masked', list(masked)), ('reconstruction', list(rec))]
    for r, (name, ims) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(ims[c].numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name)
            if r == 0 and titles:
                ax.set_title(titles[c], fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_file, dpi=100)


def photos_and_scenes_figure(model,
                             out_file: str,
                             num_scenes: int = 4,
                             mask_ratio: float = 0.5,
                             seed: int = 0) -> str:
    """The main job's figure: four scikit-image photos and the first
    ``num_scenes`` embedded val scenes (rendered, as the dataset writes
    them), block-masked at ``mask_ratio`` with a seeded generator."""
    import random

    from mmcae.datasets.scenes import render_scene
    from mmcae.datasets.transforms import BlockwiseMaskGenerator

    size = model.backbone.img_size
    ph, pw = model.backbone.patch_size
    grid = (size[0] // ph, size[1] // pw)
    images = skimage_photos(size)
    titles = ['astronaut', 'chelsea', 'coffee', 'rocket']
    for i in range(num_scenes):
        images.append(render_scene(i, split='val', img_size=size)[0])
        titles.append(f'scene {i}')
    n = grid[0] * grid[1]
    gen = BlockwiseMaskGenerator(
        input_size=grid,
        num_masking_patches=min(n - 1, max(1, int(round(mask_ratio * n)))),
        min_num_patches=min(4, n))
    random.seed(seed)
    masks = torch.stack(
        [torch.from_numpy(gen.transform({})['mask']) for _ in images])
    return reconstruction_figure(model, images, masks, out_file,
                                 titles=titles)
