"""Data transforms for CAE pretraining.

:class:`BlockwiseMaskGenerator` draws CAE's (BEiT-style) block-wise masks
over the patch grid. It reproduces the official CAE generator draw for draw
(same calls on Python's global :mod:`random` generator, in the same order),
so for a given ``random.seed`` its masks are bit-identical to the official
per-patch looped algorithm. Two differences from MMPretrain's
``BEiTMaskGenerator`` matter:

* block positions use :func:`random.randint`, whose upper bound is
  *inclusive*, so blocks can touch the last row and column (MMPretrain's copy
  uses ``np.random.randint`` with an exclusive bound and never masks them);
* like CAE (not BEiT), the outer loop runs until *exactly*
  ``num_masking_patches`` patches are masked, instead of giving up the first
  time a round of attempts masks nothing.

Using the global :mod:`random` generator makes the masks reproducible
through mmengine's dataloader ``worker_init_fn``, which seeds ``random``,
``numpy`` and ``torch`` in every worker.
"""
import math
import os
import random
from numbers import Real
from typing import Optional, Sequence, Tuple, Union

import mmpretrain.datasets  # noqa: F401  (its transforms first, see below)
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms import LoadImageFromFile as _MMCVLoadImageFromFile

from mmcae.registry import TRANSFORMS
from mmcae.utils.sizes import check_int, to_2tuple

__all__ = ['BlockwiseMaskGenerator', 'LoadImageFromFile']


@TRANSFORMS.register_module()
class BlockwiseMaskGenerator(BaseTransform):
    """Generate CAE's block-wise mask over a grid of patches.

    Required Keys: none.

    Added Keys:

    - mask (np.ndarray): bool array of shape ``(h, w)`` (the patch grid);
      ``True`` marks a masked patch. Exactly ``num_masking_patches`` entries
      are ``True``.
    - num_masked (int): ``num_masking_patches``.

    Blocks are drawn one after another: each round makes up to 10 attempts to
    place a rectangle of area ``uniform(min_num_patches, remaining)`` and
    aspect ratio ``exp(uniform(log(min_aspect), log(max_aspect)))``; an
    attempt is kept if it masks at least one new patch and no more than the
    patches still to be masked (and ``max_num_patches``).

    Args:
        input_size (int | Sequence[int]): Size of the patch grid, ``s`` for
            an ``s x s`` grid or ``(h, w)``. Both sides must be at least 2,
            since a block is always strictly smaller than the grid.
        num_masking_patches (int): Number of patches to mask in every mask,
            at least 1 and fewer than the grid holds (a mask that hides
            every patch or none is refused). CAE uses 98 for the 14x14 grid
            of ViT-B/16 at 224.
        min_num_patches (int): Lower bound of a block's target area.
            Defaults to 16 (CAE's setting). It may exceed
            ``num_masking_patches``: the area is then drawn between the two
            bounds, exactly as the official code does.
        max_num_patches (int, optional): Upper bound of the patches one
            block may add. Defaults to ``num_masking_patches``.
        min_aspect (float): Minimum block aspect ratio (h / w). Defaults to
            0.3.
        max_aspect (float, optional): Maximum aspect ratio. Defaults to
            ``1 / min_aspect``.
        max_failed_rounds (int): Safety net against settings under which no
            block can ever finish the mask (the official code would loop
            forever): after this many consecutive rounds that mask nothing a
            ``RuntimeError`` is raised. Defaults to 10000.
    """

    def __init__(self,
                 input_size: Union[int, Sequence[int]],
                 num_masking_patches: int,
                 min_num_patches: int = 16,
                 max_num_patches: Optional[int] = None,
                 min_aspect: float = 0.3,
                 max_aspect: Optional[float] = None,
                 max_failed_rounds: int = 10000) -> None:
        super().__init__()
        height, width = to_2tuple(input_size, 'input_size')
        for name, side in (('height', height), ('width', width)):
            if side < 2:
                raise ValueError(
                    f'input_size={input_size!r}: the grid {name} must be at '
                    'least 2 patches (a block is always strictly smaller '
                    f'than the grid), got {side}')
        self.height, self.width = int(height), int(width)
        self.num_patches = self.height * self.width

        self.num_masking_patches = check_int(
            'num_masking_patches', num_masking_patches, minimum=1)
        if self.num_masking_patches > self.num_patches:
            raise ValueError(
                f'num_masking_patches={self.num_masking_patches} exceeds the '
                f'{self.num_patches} patches of a '
                f'{self.height}x{self.width} grid')
        if self.num_masking_patches == self.num_patches:
            raise ValueError(
                f'num_masking_patches={self.num_masking_patches} hides every '
                f'patch of the {self.height}x{self.width} grid: the encoder '
                'would see nothing; mask fewer (CAE: 98 of 196, 50 %)')
        self.min_num_patches = check_int(
            'min_num_patches', min_num_patches, minimum=1)
        if max_num_patches is None:
            max_num_patches = self.num_masking_patches
        self.max_num_patches = check_int(
            'max_num_patches', max_num_patches, minimum=1)

        for name, value in (('min_aspect', min_aspect), ('max_aspect',
                                                         max_aspect)):
            if value is None and name == 'max_aspect':
                continue
            if isinstance(value, bool) or not isinstance(value, Real):
                raise TypeError(f'{name} must be a number, got {value!r}')
            if not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f'{name}={value} must be a positive finite number')
        self.min_aspect = float(min_aspect)
        self.max_aspect = (1.0 / self.min_aspect
                           if max_aspect is None else float(max_aspect))
        self.log_aspect_ratio = (math.log(self.min_aspect),
                                 math.log(self.max_aspect))
        self.max_failed_rounds = check_int(
            'max_failed_rounds', max_failed_rounds, minimum=1)

    def get_shape(self) -> Tuple[int, int]:
        return self.height, self.width

    def _mask(self, mask: np.ndarray, max_mask_patches: int) -> int:
        """One round: up to 10 attempts to add a block; returns how many
        patches were newly masked (0 if every attempt failed)."""
        height, width = self.height, self.width
        min_num_patches = self.min_num_patches
        log_lo, log_hi = self.log_aspect_ratio
        uniform, randint = random.uniform, random.randint
        for _ in range(10):
            target_area = uniform(min_num_patches, max_mask_patches)
            aspect_ratio = math.exp(uniform(log_lo, log_hi))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < width and h < height:
                top = randint(0, height - h)
                left = randint(0, width - w)
                block = mask[top:top + h, left:left + w]
                delta = h * w - int(np.count_nonzero(block))
                if 0 < delta <= max_mask_patches:
                    block[...] = True  # view: sets only the unmasked ones
                    return delta
        return 0

    def generate(self) -> np.ndarray:
        """Draw one mask: a bool array of shape ``(h, w)`` with exactly
        ``num_masking_patches`` ``True`` entries."""
        mask = np.zeros(self.get_shape(), dtype=bool)
        mask_count = 0
        failed_rounds = 0
        while mask_count != self.num_masking_patches:
            max_mask_patches = min(self.num_masking_patches - mask_count,
                                   self.max_num_patches)
            delta = self._mask(mask, max_mask_patches)
            if delta == 0:
                failed_rounds += 1
                if failed_rounds >= self.max_failed_rounds:
                    raise RuntimeError(
                        f'{self!r} could not add a block for '
                        f'{failed_rounds} consecutive rounds with '
                        f'{mask_count}/{self.num_masking_patches} patches '
                        'masked; these settings cannot finish a mask')
            else:
                failed_rounds = 0
                mask_count += delta
        return mask

    def transform(self, results: dict) -> dict:
        results['mask'] = self.generate()
        # the count, known here on the CPU, spares the training step a
        # host-device sync (PackInputs(algorithm_keys=['num_masked']))
        results['num_masked'] = self.num_masking_patches
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}('
                f'input_size=({self.height}, {self.width}), '
                f'num_masking_patches={self.num_masking_patches}, '
                f'min_num_patches={self.min_num_patches}, '
                f'max_num_patches={self.max_num_patches}, '
                f'min_aspect={self.min_aspect}, '
                f'max_aspect={self.max_aspect}, '
                f'max_failed_rounds={self.max_failed_rounds})')


@TRANSFORMS.register_module()
class GridBlockMaskGenerator(BaseTransform):
    """MAE-style random masking over cells of ``block x block`` patches.

    The official CMAE code masks a coarse grid whose cells cover 2x2
    patches: it keeps ``int(cells * (1 - mask_ratio))`` cells chosen
    uniformly (17 of the 49 cells of ViT-B/16 at 224, i.e. 68 visible
    patches at ``mask_ratio=0.65``) and upsamples the keep-mask. With
    ``block_size=1`` this is MAE's per-patch random masking (0.75 keeps 49).

    Added Keys:

    - mask (np.ndarray): bool ``(h, w)``, ``True`` = masked, the same
      contract as :class:`BlockwiseMaskGenerator`, so the algorithms read
      it the same way. Every mask has the same number of masked patches.
    - num_masked (int): that number.

    Drawn with :mod:`numpy`'s global generator, which mmengine's
    ``worker_init_fn`` seeds in every dataloader worker.

    Args:
        input_size: patch grid, ``s`` or ``(h, w)``; both sides divisible by
            ``block_size``.
        mask_ratio: fraction of cells to mask, in [0, 1); a ratio that
            masks no cell, or keeps none, is refused.
        block_size: patches per cell side (2 = official CMAE, 1 = MAE).
    """

    def __init__(self,
                 input_size: Union[int, Sequence[int]],
                 mask_ratio: float = 0.65,
                 block_size: int = 2) -> None:
        super().__init__()
        self.height, self.width = to_2tuple(input_size, 'input_size')
        self.block_size = check_int('block_size', block_size, minimum=1)
        if self.height % self.block_size or self.width % self.block_size:
            raise ValueError(
                f'input_size={input_size!r}: the {self.height}x{self.width} '
                f'patch grid is not divisible by block_size={block_size}')
        if (isinstance(mask_ratio, bool) or not isinstance(mask_ratio, Real)
                or not 0 <= mask_ratio < 1):
            raise ValueError(f'mask_ratio={mask_ratio!r} must be in [0, 1)')
        self.mask_ratio = float(mask_ratio)
        self.cells = (self.height // self.block_size,
                      self.width // self.block_size)
        num_cells = self.cells[0] * self.cells[1]
        self.num_keep_cells = int(num_cells * (1 - self.mask_ratio))
        if self.num_keep_cells < 1:
            raise ValueError(
                f'mask_ratio={mask_ratio} keeps no cell of the '
                f'{self.cells[0]}x{self.cells[1]} grid')
        self.num_masking_patches = (self.height * self.width -
                                    self.num_keep_cells * self.block_size**2)
        if self.num_masking_patches == 0:
            raise ValueError(
                f'mask_ratio={mask_ratio} masks none of the '
                f'{self.cells[0]}x{self.cells[1]} cells of '
                f'{self.block_size}x{self.block_size} patches: there would '
                'be nothing to predict; use a larger mask_ratio')

    def generate(self) -> np.ndarray:
        num_cells = self.cells[0] * self.cells[1]
        keep = np.zeros(num_cells, dtype=bool)
        # argsort of uniform noise, as the official code draws it
        keep[np.argsort(np.random.rand(num_cells))[:self.num_keep_cells]] = True
        keep = keep.reshape(self.cells)
        b = self.block_size
        keep = keep.repeat(b, axis=0).repeat(b, axis=1)
        return ~keep

    def transform(self, results: dict) -> dict:
        results['mask'] = self.generate()
        # the count, known here on the CPU, spares the training step a
        # host-device sync (PackInputs(algorithm_keys=['num_masked']))
        results['num_masked'] = self.num_masking_patches
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(input_size=({self.height}, '
                f'{self.width}), mask_ratio={self.mask_ratio}, '
                f'block_size={self.block_size})')


@TRANSFORMS.register_module()
class PixelShiftCrop(BaseTransform):
    """CMAE's "pixel shifting": a ``size`` crop at a random small offset.

    The official ``ShiftPixel(pixel)`` crops rows ``dy:dy+size`` and columns
    ``dx:dx+size`` of the shared master image (256 for 224 views) with
    ``dy, dx`` drawn independently from ``{0, ..., max_shift}``; the online
    view uses ``max_shift=0`` (the fixed top-left crop), the target view
    ``max_shift=31``. Put both inside a ``MultiView`` after the shared
    ``RandomResizedCrop`` and ``RandomFlip``: every view then starts from
    the same master image. MMPretrain's ``RandomCrop`` cannot make the
    fixed top-left crop, hence this transform.

    Required Keys: img. Modified Keys: img, img_shape. Added Keys:
    pixel_shift ``(dy, dx)``.
    """

    def __init__(self, size: Union[int, Sequence[int]] = 224,
                 max_shift: int = 31) -> None:
        super().__init__()
        self.size = to_2tuple(size)
        self.max_shift = check_int('max_shift', max_shift, minimum=0)

    def transform(self, results: dict) -> dict:
        img = results['img']
        H, W = img.shape[:2]
        h, w = self.size
        if H < h + self.max_shift or W < w + self.max_shift:
            raise ValueError(
                f'PixelShiftCrop(size={self.size}, max_shift='
                f'{self.max_shift}) needs an image of at least '
                f'{h + self.max_shift}x{w + self.max_shift}, got {H}x{W} '
                f"from {results.get('img_path', 'the pipeline')}: make the "
                'master crop larger')
        dy = random.randint(0, self.max_shift)
        dx = random.randint(0, self.max_shift)
        results['img'] = np.ascontiguousarray(img[dy:dy + h, dx:dx + w])
        results['img_shape'] = (h, w)
        results['pixel_shift'] = (dy, dx)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, '
                f'max_shift={self.max_shift})')


__all__ += ['GridBlockMaskGenerator', 'PixelShiftCrop']


# Replaces mmcv's transform of the same name in MMPretrain's scope (which
# MMPretrain registers at the import above, hence force=True after it), so
# that every mmcae config's pipeline names the file it could not read.
@TRANSFORMS.register_module(name='LoadImageFromFile', force=True)
class LoadImageFromFile(_MMCVLoadImageFromFile):
    """mmcv's ``LoadImageFromFile``, but every failure names the file, and
    an image over ``max_pixels`` is refused before it is decoded.

    mmcv names a file that decodes to nothing, but an empty (0-byte) file
    makes OpenCV raise ``cv2.error ... !buf.empty()`` with no path.

    mmcv decodes with OpenCV, whose own limit is 2**30 pixels: a
    20000x20000 PNG (a few MB on disk) decodes to 1.2 GB per copy and the
    pipeline makes several, in every worker.  The size is read from the
    file's header first (Pillow reads only the header until asked for
    pixels) and an image over the limit is refused, naming the file, its
    size and the config key.  Local files only: for other backends the
    header cannot be read without fetching the whole object twice.

    Args:
        max_pixels: the largest ``width * height`` accepted; Pillow's own
            decompression-bomb threshold (89478485, about 9459x9459) by
            default; ``None`` turns the check off.  In a config: the
            pipeline's ``dict(type='LoadImageFromFile', max_pixels=N)``.
        **kwargs: mmcv's arguments.
    """

    DEFAULT_MAX_PIXELS = 89478485  # PIL.Image.MAX_IMAGE_PIXELS

    def __init__(self, *args, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.max_pixels = None if max_pixels is None else check_int(
            'LoadImageFromFile max_pixels', max_pixels, minimum=1)

    def _check_pixels(self, path):
        if self.max_pixels is None or not isinstance(path, (str, os.PathLike)):
            return
        path = os.fspath(path)
        if not os.path.isfile(path):
            return  # remote or missing: mmcv's read names it
        import re
        import warnings

        from PIL import Image
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', Image.DecompressionBombWarning)
                with Image.open(path) as im:  # the header only
                    w, h = im.size
            pixels, size = w * h, f'is {w}x{h} ({w * h} pixels)'
        except Image.DecompressionBombError as e:
            # Pillow stops at twice its limit, before giving the size
            found = re.search(r'\((\d+) pixels\)', str(e))
            if found is None:
                raise
            pixels = int(found.group(1))
            size = f'has {pixels} pixels'
        except Exception:
            return  # not Pillow's format, or broken: the decode names it
        if pixels > self.max_pixels:
            raise ValueError(
                f'image {path} {size}, over the limit '
                f'of {self.max_pixels} pixels of LoadImageFromFile '
                '(max_pixels): decoding it would take '
                f'{pixels * 3 / 2**30:.1f} GiB per copy. Resize the image, '
                "or raise the limit with the pipeline's dict("
                "type='LoadImageFromFile', max_pixels=N) (None: no limit)")

    def transform(self, results: dict) -> Optional[dict]:
        self._check_pixels(results.get('img_path'))
        try:
            return super().transform(results)
        except Exception as e:
            path = results.get('img_path')
            if path is None or str(path) in str(e):
                raise
            try:
                empty = os.path.getsize(path) == 0
            except OSError:
                empty = False
            why = 'the file is empty (0 bytes)' if empty else (
                f'{type(e).__name__}: '
                f'{(str(e).strip().splitlines() or [""])[-1]}')
            raise OSError(f'failed to load image: {path} ({why})') from e

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f', max_pixels={self.max_pixels})'
