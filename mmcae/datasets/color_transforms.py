"""Colour and crop augmentations with MMPretrain's pixels, at a lower cost.

CAE v2 and CMAE spend most of a data worker's time in MMPretrain's
``ColorJitter`` (mmcv's Pillow backend: every colour op turns the array into
a PIL image through a channel-reversed view, which Pillow copies pixel by
pixel, and back), in ``RandomResizedCrop`` / ``RandomFlip`` (a flipped view
that Pillow again copies pixel by pixel) and in ``RandomGrayscale`` (float64
arithmetic over the whole image).

The transforms here take the same arguments, draw the same random numbers
from the same generators in the same order, and compute the same pixels:

* colour ops run on one RGB Pillow image (one conversion in, one out);
  brightness and contrast are Pillow's blend as a 256-entry lookup table
  computed with Pillow's own float32 arithmetic (truncation, then clipping);
  the contrast mean, saturation and hue are Pillow's own C code
  (``convert('L')`` / ``Image.blend`` / HSV), exactly as
  ``PIL.ImageEnhance`` and mmcv's ``adjust_hue`` use them;
* grayscale is MMPretrain's float64 weighted sum, term by term through
  lookup tables (the same float64 operations, so the same truncated result);
* the flip is materialised by OpenCV (contiguous, so Pillow can take it
  without a per-pixel copy) and only the crop's pixels are handed to the
  same Pillow ``resize`` (``resize(box=...)`` is no substitute: its filter
  reads pixels outside the box, so the edges differ);
* :class:`JitterFlipResizedCrop` (CAE v2's jitter, flip, crop) colours only
  the pixels its crop keeps.

MMPretrain's ``GaussianBlur`` (Pillow's C blur on a contiguous array) is
already as fast as it gets and stays as it is.

``tests/test_color_transforms.py`` checks the outputs against the reference
transforms pixel for pixel (to one grey level) over many images and draws.
"""
from typing import Optional

import cv2
import mmpretrain.datasets  # noqa: F401  (registers the reference transforms)
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms import RandomFlip as _MMCVRandomFlip
from mmcv.transforms import RandomGrayscale as _MMCVRandomGrayscale
from mmpretrain.datasets.transforms import ColorJitter as _ColorJitter
from mmpretrain.datasets.transforms import \
    RandomResizedCrop as _RandomResizedCrop
from PIL import Image

from mmcae.registry import TRANSFORMS

__all__ = [
    'FastColorJitter', 'FastRandomGrayscale',
    'FastRandomFlip', 'FastRandomResizedCrop', 'JitterFlipResizedCrop',
    'blend_lut', 'contrast_mean'
]

_PIL_RESAMPLE = {
    'nearest': Image.NEAREST,
    'bilinear': Image.BILINEAR,
    'bicubic': Image.BICUBIC,
    'box': Image.BOX,
    'lanczos': Image.LANCZOS,
    'hamming': Image.HAMMING,
}
_LEVELS = np.arange(256, dtype=np.float32)


def blend_lut(base: float, factor: float) -> np.ndarray:
    """Pillow's ``Image.blend(constant base, image, factor)`` as a table.

    Pillow computes ``base + factor * (v - base)`` in float32 per byte and
    truncates (clipping to 0..255 when ``factor`` extrapolates); done here
    once for the 256 levels, with the same float32 operations.
    """
    base32 = np.float32(base)
    out = base32 + np.float32(factor) * (_LEVELS - base32)
    return np.clip(np.trunc(out), 0, 255).astype(np.uint8)


def _rgb_image(img: np.ndarray, name: str) -> Image.Image:
    """A BGR uint8 array as an RGB Pillow image (one contiguous copy)."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'{name} needs a 3-channel image, got an array of '
                         f'shape {img.shape}')
    return Image.fromarray(cv2.cvtColor(_uint8(img), cv2.COLOR_BGR2RGB))


def _uint8(img: np.ndarray) -> np.ndarray:
    img = img if img.dtype == np.uint8 else img.astype(np.uint8)
    # OpenCV and Pillow take a C-contiguous array without a per-pixel copy
    return img if img.flags.c_contiguous else np.ascontiguousarray(img)


def _pil_crop(img: np.ndarray, box: tuple) -> Image.Image:
    """``Image.fromarray(img).crop(box)`` copying only the box's pixels
    (Pillow would copy the whole image first, then the box)."""
    left, top, right, bottom = box
    return Image.fromarray(_uint8(img[top:bottom, left:right]))


def _bgr_array(im: Image.Image) -> np.ndarray:
    return cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2BGR)


def adjust_brightness(im: Image.Image, factor: float) -> Image.Image:
    """``ImageEnhance.Brightness(im).enhance(factor)``: blend with black."""
    return im.point(blend_lut(0, factor).tolist() * len(im.getbands()))


def contrast_mean(im: Image.Image) -> int:
    """The grey level ``ImageEnhance.Contrast`` blends with: the mean
    luminance, rounded as ``ImageStat`` gives it (an integer sum over the
    histogram, one float division)."""
    hist = im.convert('L').histogram()
    return int(sum(i * n for i, n in enumerate(hist)) / sum(hist) + 0.5)


def adjust_contrast(im: Image.Image, factor: float,
                    mean: Optional[int] = None) -> Image.Image:
    """``ImageEnhance.Contrast(im).enhance(factor)``; ``mean`` (of the whole
    image, :func:`contrast_mean`) lets it run on a crop of that image."""
    mean = contrast_mean(im) if mean is None else mean
    return im.point(blend_lut(mean, factor).tolist() * len(im.getbands()))


def adjust_saturation(im: Image.Image, factor: float) -> Image.Image:
    """``ImageEnhance.Color(im).enhance(factor)``: blend with the image's
    own luminance."""
    return Image.blend(im.convert('L').convert(im.mode), im, factor)


def adjust_hue(im: Image.Image, factor: float) -> Image.Image:
    """mmcv's / torchvision's Pillow ``adjust_hue``: shift Pillow's 8-bit
    HSV hue by ``uint8(factor * 255)``, wrapping around."""
    # np.uint8(x) of a negative float wraps as the C cast does on x86
    shift = int(factor * 255) % 256
    h, s, v = im.convert('HSV').split()
    h = h.point([(i + shift) % 256 for i in range(256)])
    return Image.merge('HSV', (h, s, v)).convert(im.mode)


@TRANSFORMS.register_module()
class FastColorJitter(_ColorJitter):
    """MMPretrain's ``ColorJitter`` (Pillow backend), same pixels, faster.

    Same arguments, same random draws (``np.random.permutation(4)`` for the
    order, then one ``np.random.uniform`` per enabled op), same ops in that
    random order: brightness, contrast, saturation (``ImageEnhance``) and
    hue (8-bit HSV shift), as torchvision's ``ColorJitter`` on a PIL image
    does, which the official CAE v2 and CMAE code use. The image is BGR (as
    MMPretrain loads it); the ops see it as RGB, as mmcv's Pillow backend
    does.

    Args:
        brightness, contrast, saturation, hue: as MMPretrain's
            ``ColorJitter``.
        backend (str): only ``'pillow'`` (MMPretrain's default, the official
            pipelines' semantics).
    """

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0,
                 backend: str = 'pillow') -> None:
        if backend != 'pillow':
            raise ValueError(
                f"FastColorJitter(backend={backend!r}): only 'pillow' is "
                "supported (the official pipelines' semantics); use "
                "MMPretrain's ColorJitter for the cv2 backend")
        super().__init__(brightness, contrast, saturation, hue, backend)

    def transform(self, results: dict) -> dict:
        order, b, c, s, h = self._rand_params()
        ops = [(adjust_brightness, b), (adjust_contrast, c),
               (adjust_saturation, s), (adjust_hue, h)]
        todo = [ops[i] for i in order if ops[i][1] is not None]
        if not todo:
            return results
        im = _rgb_image(results['img'], type(self).__name__)
        for fn, factor in todo:
            im = fn(im, factor)
        results['img'] = _bgr_array(im)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(brightness={self.brightness}, '
                f'contrast={self.contrast}, saturation={self.saturation}, '
                f'hue={self.hue})')


@TRANSFORMS.register_module()
class FastRandomGrayscale(_MMCVRandomGrayscale):
    """mmcv's ``RandomGrayscale`` (as MMPretrain configs use it), same
    pixels, faster.

    The reference computes ``(w / w.sum() * img).sum(axis=2)`` in float64
    and truncates to uint8. Here each product comes from a 256-entry float64
    table per channel and the three are added in the same order, which gives
    the same float64 values, hence the same bytes.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        weights = np.array(self.channel_weights) / sum(self.channel_weights)
        self._tables = [w * np.arange(256, dtype=np.float64) for w in weights]

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.dtype != np.uint8 or self.color_format == 'hsv':
            return super().transform(results)  # no table for these
        img = img[..., None] if img.ndim == 2 else img
        channels = img.shape[2]
        if self._random_prob() < self.prob and channels > 1:
            if channels != len(self.channel_weights):
                raise ValueError(
                    f'FastRandomGrayscale: {len(self.channel_weights)} '
                    f'channel_weights for an image of {channels} channels')
            gray = self._tables[0][img[..., 0]]
            for c in range(1, channels):
                gray += self._tables[c][img[..., c]]
            gray = gray.astype(np.uint8)
            if self.keep_channels:
                results['img'] = cv2.merge([gray] * channels) \
                    if channels <= 4 else np.dstack([gray] * channels)
            else:
                results['img'] = gray
            return results
        results['img'] = img
        return results


@TRANSFORMS.register_module()
class FastRandomFlip(_MMCVRandomFlip):
    """mmcv's ``RandomFlip`` with the flipped image materialised.

    mmcv returns a negatively strided view; the next transform that hands it
    to Pillow (a resize, a colour op) then pays a per-pixel copy. OpenCV's
    flip writes the same pixels contiguously for a fraction of that.
    """

    _CODES = {'horizontal': 1, 'vertical': 0, 'diagonal': -1}

    def _flip(self, results: dict) -> None:
        img = results['img']
        super()._flip(results)
        if isinstance(img, np.ndarray) and img.dtype == np.uint8 and (
                img.ndim == 2 or img.ndim == 3 and img.shape[2] <= 4):
            results['img'] = cv2.flip(
                _uint8(img), self._CODES[results['flip_direction']])


@TRANSFORMS.register_module()
class FastRandomResizedCrop(_RandomResizedCrop):
    """MMPretrain's ``RandomResizedCrop`` with ``backend='pillow'``, same
    pixels, faster: the same box (same draws), cropped by Pillow from a
    contiguous image, then the same Pillow resize."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.backend != 'pillow':
            raise ValueError(
                f"FastRandomResizedCrop(backend={self.backend!r}): only "
                "'pillow' is supported; use RandomResizedCrop for cv2")
        if self.interpolation not in _PIL_RESAMPLE:
            raise ValueError(
                f'FastRandomResizedCrop(interpolation='
                f'{self.interpolation!r}): Pillow has no such filter; one of '
                f'{sorted(_PIL_RESAMPLE)}')

    def transform(self, results: dict) -> dict:
        img = results['img']
        top, left, h, w = self.rand_crop_params(img)
        im = _pil_crop(img, (left, top, left + w, top + h))
        results['img'] = np.array(
            im.resize(tuple(self.scale[::-1]),
                      _PIL_RESAMPLE[self.interpolation]))
        results['img_shape'] = results['img'].shape
        return results


@TRANSFORMS.register_module()
class JitterFlipResizedCrop(BaseTransform):
    """``FastColorJitter``, ``FastRandomFlip`` and ``FastRandomResizedCrop``
    in that order (CAE v2's official order) as one transform that colours
    only the pixels the crop keeps.

    The colour ops are per pixel, so they commute with cropping and
    flipping, except contrast, which blends with the mean luminance of the
    whole image as it is at that point of the chain. So the ops before
    contrast (in the drawn order) run on the whole image, contrast takes the
    whole image's mean, and it and every later op run on the crop only; the
    flip and the resize follow. The draws are the three transforms' own, in
    their order (jitter, flip, crop box: all from numpy's generator), so
    the output equals the three-transform chain's for the same seeds.

    Args:
        jitter (dict): ``FastColorJitter`` arguments.
        flip_prob (float): horizontal flip probability.
        crop (dict): ``FastRandomResizedCrop`` arguments.
    """

    def __init__(self, jitter: dict, flip_prob: float, crop: dict) -> None:
        super().__init__()
        self.jitter = FastColorJitter(**jitter)
        self.flip = FastRandomFlip(prob=flip_prob, direction='horizontal')
        self.crop = FastRandomResizedCrop(**crop)

    def transform(self, results: dict) -> dict:
        img = _uint8(results['img'])
        order, b, c, s, h = self.jitter._rand_params()
        direction = self.flip._choose_direction()
        top, left, crop_h, crop_w = self.crop.rand_crop_params(img)
        if direction is not None:  # the same box, before the flip
            left = img.shape[1] - left - crop_w
        ops = [(adjust_brightness, b), (adjust_contrast, c),
               (adjust_saturation, s), (adjust_hue, h)]
        todo = [(i, *ops[i]) for i in order if ops[i][1] is not None]
        first = next((k for k, (i, _, _) in enumerate(todo) if i == 1),
                     len(todo))  # ops before contrast see the whole image
        box = (left, top, left + crop_w, top + crop_h)
        if todo:
            im = _rgb_image(img, type(self).__name__)
            for _, fn, factor in todo[:first]:
                im = fn(im, factor)
            mean = contrast_mean(im) if first < len(todo) else None
            im = im.crop(box)
            for i, fn, factor in todo[first:]:
                im = (adjust_contrast(im, factor, mean)
                      if i == 1 else fn(im, factor))
        else:
            im = _pil_crop(img, box)
        if direction is not None:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        im = im.resize(tuple(self.crop.scale[::-1]),
                       _PIL_RESAMPLE[self.crop.interpolation])
        results['img'] = _bgr_array(im) if todo else np.array(im)
        results['img_shape'] = results['img'].shape
        results['flip'] = direction is not None
        results['flip_direction'] = direction
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(jitter={self.jitter!r}, '
                f'flip={self.flip!r}, crop={self.crop!r})')
