"""CIFAR-10-C's corruptions at CIFAR-10-C's own severities, for 32x32 RGB images (no torch).

Hendrycks & Dietterich (ICLR 2019) made CIFAR-10-C with ``make_cifar_c.py`` (github.com/hendrycks/robustness,
folder ``ImageNet-C/create_c/``, read at commit ca36008). Its severity parameters are CIFAR's own: those of
ImageNet-C (the ``imagecorruptions`` package) are tuned for 224x224 and far too strong at 32x32. Every table
below is that file's, per corruption; the operations follow it but are written here anew. Where the maintained
``imagecorruptions`` package (imagecorruptions-imaug) has a helper that takes the parameters, it is used:
``disk`` (defocus kernel), ``clipped_zoom`` (zoom blur, snow), ``_motion_blur`` (its numpy replacement for the
ImageMagick motion blur make_cifar_c.py calls through Wand), and the frost pictures it ships.

Every random draw comes from the ``numpy.random.Generator`` passed to :func:`corrupt` (NumPy's global state is
never touched), so a corrupted image is a function of (image, corruption, severity, generator state). Images are
uint8 32x32x3 RGB in and out; as in make_cifar_c.py, results in [0, 1] are clipped, scaled by 255 and cast with
truncation (``np.uint8``), except where noted.

Where the result differs from make_cifar_c.py, on purpose:

- motion_blur and snow's streaks: ``imagecorruptions``' numpy emulation of ImageMagick's MotionBlurImage, not
  ImageMagick itself (not installed, and a system library); rounded to the nearest integer as ImageMagick's
  8-bit output is.
- spatter (water, severities 1-3): the liquid layer is clipped to [0, 1] before its uint8 cast (make_cifar_c.py
  casts values above 1, rare, with wrap-around), and an image whose layer is empty after thresholding is
  returned unchanged (make_cifar_c.py would divide by zero).
- glass_blur reproduces what make_cifar_c.py's pixel "swap" does with numpy: ``x[a], x[b] = x[b], x[a]`` on
  row views copies the neighbour ``b`` into ``a`` and leaves ``b`` as it was. The published data was made so.
"""
from __future__ import annotations

import functools
import importlib.resources
import io
from types import MappingProxyType
from typing import Callable, Mapping

import cv2
import numpy as np
from imagecorruptions.corruptions import _motion_blur, clipped_zoom, disk
from PIL import Image
from scipy.ndimage import map_coordinates
from skimage.color import hsv2rgb, rgb2hsv
from skimage.filters import gaussian
from skimage.util import random_noise

GENERATOR_VERSION = '1'
"""Changes whenever the same (image, corruption, severity, generator) would give other pixels."""

CORRUPTIONS = (
    'gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur', 'glass_blur', 'motion_blur', 'zoom_blur',
    'snow', 'frost', 'fog', 'brightness', 'contrast', 'elastic_transform', 'pixelate', 'jpeg_compression')
"""The 15 CIFAR-10-C test corruptions, in the standard (RobustBench, CoTTA) order."""
EXTRA_CORRUPTIONS = ('speckle_noise', 'gaussian_blur', 'spatter', 'saturate')
"""The 4 held-out corruptions CIFAR-10-C also ships (for tuning hyper-parameters)."""
SEVERITIES = (1, 2, 3, 4, 5)
SIZE = 32

PARAMETERS: Mapping[str, tuple] = MappingProxyType({
    # make_cifar_c.py's list ``c`` of each function, severities 1-5; the tuple fields are named per function.
    'gaussian_noise': (0.04, 0.06, 0.08, 0.09, 0.10),           # noise std, on [0, 1]
    'shot_noise': (500, 250, 100, 75, 50),                     # photons at full intensity
    'impulse_noise': (0.01, 0.02, 0.03, 0.05, 0.07),           # salt-and-pepper fraction per channel value
    'defocus_blur': ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # disk radius, anti-alias sigma
    'glass_blur': ((0.05, 1), (0.25, 1), (0.4, 1), (0.25, 2), (0.4, 2)),          # sigma, iterations (max_delta 1)
    'motion_blur': ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),                  # radius, sigma
    'zoom_blur': (1.06, 1.11, 1.15, 1.20, 1.25),               # largest zoom factor (factors step by 0.01 from 1)
    'snow': ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    # snow: flake mean, flake std, zoom, threshold, streak radius, streak sigma, image weight
    'frost': ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),         # image weight, frost weight
    'fog': ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),                # fog strength, fractal decay
    'brightness': (0.05, 0.1, 0.15, 0.2, 0.3),                 # added to HSV value
    'contrast': (0.75, 0.5, 0.4, 0.3, 0.15),                   # factor on the deviation from the channel means
    'elastic_transform': tuple((SIZE * alpha, SIZE * sigma, SIZE * affine) for alpha, sigma, affine in (
        (0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))),
    # elastic: displacement scale, displacement smoothing sigma, affine corner jitter (pixels, as fractions of 32)
    'pixelate': (0.95, 0.9, 0.85, 0.75, 0.65),                 # downscale factor
    'jpeg_compression': (80, 65, 58, 50, 40),                  # JPEG quality
    'speckle_noise': (0.06, 0.1, 0.12, 0.16, 0.2),             # multiplicative noise std
    'gaussian_blur': (0.4, 0.6, 0.7, 0.8, 1),                  # sigma
    'spatter': ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
                (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
    # spatter: liquid mean, liquid std, liquid sigma, threshold, intensity (water) or sigma (mud), mud?
    'saturate': ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),            # saturation factor, offset
})
"""Severity parameters of every corruption (index ``severity - 1``), from make_cifar_c.py."""

FROST_FILES = ('frost1.png', 'frost2.png', 'frost3.png', 'frost4.jpg', 'frost5.jpg')
"""make_cifar_c.py draws among the first five of its six frost pictures (``np.random.randint(5)``)."""
FROST_SCALE = 0.2
"""make_cifar_c.py shrinks the frost pictures to a fifth (``cv2.resize(..., fx=0.2, fy=0.2)``) before cropping."""
WATER_RGB = np.array([175, 238, 238]) / 255.0
MUD_RGB = np.array([63, 42, 20]) / 255.0
EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)
"""The kernel make_cifar_c.py's spatter shades the water's distance map with."""


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    """make_cifar_c.py's ending: clip to [0, 1], scale to [0, 255], cast with truncation."""
    return (np.clip(unit, 0, 1) * 255).astype(np.uint8)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """skimage's Gaussian over the two spatial axes (make_cifar_c.py's ``gaussian(..., multichannel=True)``)."""
    return gaussian(image, sigma=sigma, channel_axis=-1 if image.ndim == 3 else None)


def _rounded(blurred: np.ndarray) -> np.ndarray:
    """A motion-blurred uint8 picture as ImageMagick's 8-bit output gives it: rounded to the nearest level."""
    return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)


def _centre_zoom(image: np.ndarray, factor: float) -> np.ndarray:
    """``clipped_zoom`` (centre crop of side ceil(32 / factor), bilinear zoom back), trimmed to 32x32 around the
    centre as make_cifar_c.py trims it (imagecorruptions' version returns the zoomed crop untrimmed)."""
    zoomed = clipped_zoom(image, factor)
    top = (zoomed.shape[0] - SIZE) // 2
    return zoomed[top:top + SIZE, top:top + SIZE]


def plasma_fractal(rng: np.random.Generator, decay: float, size: int = SIZE) -> np.ndarray:
    """A ``size`` x ``size`` diamond-square height map on a torus, scaled to [0, 1] (fog's cloud).

    make_cifar_c.py's ``plasma_fractal`` at CIFAR's map size 32 (adapted there from FLHerne/mapgen's
    diamondsquare.py): each new point is the mean of its four neighbours plus ``wibble * U(-wibble, wibble)``,
    ``wibble`` starting at 100 and divided by ``decay`` per level. Written here to draw from ``rng``
    (imagecorruptions' copy draws from NumPy's global generator).
    """
    if size & (size - 1):
        raise ValueError(f'the plasma fractal needs a power-of-two size, not {size}')
    height = np.zeros((size, size))
    step, wibble = size, 100.0

    def noisy_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = height[::step, ::step]
        around = corners + np.roll(corners, -1, axis=0)
        height[half::step, half::step] = noisy_mean(around + np.roll(around, -1, axis=1))
        centres = height[half::step, half::step]
        height[::step, half::step] = noisy_mean(corners + np.roll(corners, -1, axis=1)
                                                + centres + np.roll(centres, 1, axis=0))
        height[half::step, ::step] = noisy_mean(corners + np.roll(corners, -1, axis=0)
                                                + centres + np.roll(centres, 1, axis=1))
        step = half
        wibble /= decay
    height -= height.min()
    return height / height.max()


def glass_shuffle(image: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """One pass of glass blur's local pixel shuffle, as make_cifar_c.py's loop behaves with numpy arrays.

    The loop visits (h, w) from (31, 31) down to (2, 2) and does ``x[h, w], x[h', w'] = x[h', w'], x[h, w]``
    with (h', w') = (h + dy, w + dx), dy and dx drawn from {-1, 0}: on row views that copies the neighbour into
    (h, w) and leaves the neighbour unchanged. The neighbour is never a pixel visited before, so the pass is one
    gather from the image as it was: ``offsets`` is (2, 30, 30) of dy, dx in {-1, 0}.
    """
    rows = np.arange(2, SIZE)[:, None] + offsets[0]
    cols = np.arange(2, SIZE)[None, :] + offsets[1]
    shuffled = image.copy()
    shuffled[2:, 2:] = image[rows, cols]
    return shuffled


def _gaussian_noise(x: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    unit = x / 255.0
    return _to_uint8(unit + rng.normal(size=unit.shape, scale=std))


def _shot_noise(x: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    return _to_uint8(rng.poisson(x / 255.0 * photons) / photons)


def _impulse_noise(x: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    return _to_uint8(random_noise(x / 255.0, mode='s&p', rng=rng, amount=amount))


def _speckle_noise(x: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    unit = x / 255.0
    return _to_uint8(unit + unit * rng.normal(size=unit.shape, scale=std))


def _gaussian_blur(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return _to_uint8(_blur(x / 255.0, sigma))


def _defocus_blur(x: np.ndarray, params: tuple, rng: np.random.Generator) -> np.ndarray:
    radius, alias_blur = params
    return _to_uint8(cv2.filter2D(x / 255.0, -1, disk(radius=radius, alias_blur=alias_blur)))


def _glass_blur(x: np.ndarray, params: tuple, rng: np.random.Generator) -> np.ndarray:
    sigma, iterations = params
    shuffled = (_blur(x / 255.0, sigma) * 255).astype(np.uint8)
    for _ in range(iterations):
        shuffled = glass_shuffle(shuffled, rng.integers(-1, 1, size=(2, SIZE - 2, SIZE - 2)))
    return _to_uint8(_blur(shuffled / 255.0, sigma))


def _motion_blur_image(x: np.ndarray, params: tuple, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = params
    return _rounded(_motion_blur(x, radius=radius, sigma=sigma, angle=rng.uniform(-45, 45)))


def _zoom_blur(x: np.ndarray, largest: float, rng: np.random.Generator) -> np.ndarray:
    # make_cifar_c.py's np.arange(1, stop, 0.01) with stops 1.06, 1.11, 1.16, 1.21, 1.26: float rounding keeps
    # the stop in the first two lists only, hence the largest factors of PARAMETERS.
    factors = 1 + 0.01 * np.arange(round((largest - 1) / 0.01) + 1)
    unit = (x / 255.0).astype(np.float32)
    zooms = np.zeros_like(unit)
    for factor in factors:
        zooms += _centre_zoom(unit, factor)
    return _to_uint8((unit + zooms) / (len(factors) + 1))


def _snow(x: np.ndarray, params: tuple, rng: np.random.Generator) -> np.ndarray:
    mean, std, zoom, threshold, radius, sigma, keep = params
    unit = x.astype(np.float32) / 255.0
    flakes = _centre_zoom(rng.normal(size=(SIZE, SIZE, 1), loc=mean, scale=std), zoom)[..., 0]
    flakes[flakes < threshold] = 0
    flakes = (np.clip(flakes, 0, 1) * 255).astype(np.uint8)
    streaks = _rounded(_motion_blur(flakes, radius=radius, sigma=sigma, angle=rng.uniform(-135, -45)))
    streaks = streaks[..., None] / 255.0
    grey = cv2.cvtColor(unit, cv2.COLOR_RGB2GRAY)[..., None]
    whitened = keep * unit + (1 - keep) * np.maximum(unit, grey * 1.5 + 0.5)
    return _to_uint8(whitened + streaks + np.rot90(streaks, k=2))


@functools.lru_cache(maxsize=1)
def frost_pictures() -> tuple[np.ndarray, ...]:
    """make_cifar_c.py's five frost pictures, RGB, shrunk by :data:`FROST_SCALE` (bilinear, as ``cv2.resize``),
    read from the installed ``imagecorruptions`` package."""
    folder = importlib.resources.files('imagecorruptions') / 'frost'
    pictures = []
    for name in FROST_FILES:
        with importlib.resources.as_file(folder / name) as path:
            bgr = cv2.imread(str(path))
        if bgr is None:
            raise FileNotFoundError(f"imagecorruptions' frost picture {name} is missing from {folder}")
        pictures.append(cv2.resize(bgr, (0, 0), fx=FROST_SCALE, fy=FROST_SCALE)[..., ::-1])
    return tuple(pictures)


def _frost(x: np.ndarray, params: tuple, rng: np.random.Generator) -> np.ndarray:
    image_weight, frost_weight = params
    picture = frost_pictures()[rng.integers(len(FROST_FILES))]
    top = rng.integers(0, picture.shape[0] - SIZE)
    left = rng.integers(0, picture.shape[1] - SIZE)
    crop = picture[top:top + SIZE, left:left + SIZE]
    return np.clip(image_weight * x + frost_weight * crop, 0, 255).astype(np.uint8)


def _fog(x: np.ndarray, params: tuple, rng: np.random.Generator) -> np.ndarray:
    strength, decay = params
    unit = x / 255.0
    brightest = unit.max()
    foggy = unit + strength * plasma_fractal(rng, decay)[..., None]
    return _to_uint8(foggy * brightest / (brightest + strength))


def _brightness(x: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
    hsv = rgb2hsv(x / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + shift, 0, 1)
    return _to_uint8(hsv2rgb(hsv))


def _saturate(x: np.ndarray, params: tuple, rng: np.random.Generator) -> np.ndarray:
    factor, offset = params
    hsv = rgb2hsv(x / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * factor + offset, 0, 1)
    return _to_uint8(hsv2rgb(hsv))


def _contrast(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    unit = x / 255.0
    means = unit.mean(axis=(0, 1), keepdims=True)
    return _to_uint8((unit - means) * factor + means)


def _elastic_transform(x: np.ndarray, params: tuple, rng: np.random.Generator) -> np.ndarray:
    alpha, sigma, jitter = params
    unit = x.astype(np.float32) / 255.0
    # Random affine: three points around the centre (16 +- 32 // 3) moved by up to `jitter` pixels each.
    centre, reach = SIZE // 2, SIZE // 3
    anchors = np.float32([[centre + reach, centre + reach], [centre + reach, centre - reach],
                          [centre - reach, centre - reach]])
    moved = anchors + rng.uniform(-jitter, jitter, size=anchors.shape).astype(np.float32)
    warped = cv2.warpAffine(unit, cv2.getAffineTransform(anchors, moved), (SIZE, SIZE),
                            borderMode=cv2.BORDER_REFLECT_101)
    # Elastic part: a smoothed uniform displacement field per axis.
    dx, dy = ((gaussian(rng.uniform(-1, 1, size=(SIZE, SIZE)), sigma, mode='reflect', truncate=3) * alpha)
              .astype(np.float32) for _ in range(2))
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    coordinates = np.stack([rows + dy, cols + dx])
    channels = [map_coordinates(warped[..., channel], coordinates, order=1, mode='reflect') for channel in range(3)]
    return _to_uint8(np.stack(channels, axis=-1))


def _pixelate(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    small = int(SIZE * factor)
    picture = Image.fromarray(x).resize((small, small), Image.Resampling.BOX)
    return np.array(picture.resize((SIZE, SIZE), Image.Resampling.BOX))


def _jpeg_compression(x: np.ndarray, quality: int, rng: np.random.Generator) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, 'JPEG', quality=quality)
    return np.array(Image.open(buffer).convert('RGB'))


def _spatter(x: np.ndarray, params: tuple, rng: np.random.Generator) -> np.ndarray:
    mean, std, sigma, threshold, strength, mud = params
    unit = x.astype(np.float32) / 255.0
    liquid = gaussian(rng.normal(size=(SIZE, SIZE), loc=mean, scale=std), sigma=sigma)
    liquid[liquid < threshold] = 0
    if mud:
        # Mud: the thresholded blobs, smoothed, cut at 0.8, paint the image brown.
        cover = gaussian((liquid > threshold).astype(np.float32), sigma=strength)
        cover[cover < 0.8] = 0
        cover = cover[..., None]
        return _to_uint8(unit * (1 - cover) + MUD_RGB * cover)
    # Water: the blobs, shaded by an embossed distance-to-edge map, add pale turquoise.
    layer = (np.clip(liquid, 0, 1) * 255).astype(np.uint8)
    distance = cv2.distanceTransform(255 - cv2.Canny(layer, 50, 150), cv2.DIST_L2, 5)
    _, distance = cv2.threshold(distance, 20, 20, cv2.THRESH_TRUNC)
    distance = cv2.equalizeHist(cv2.blur(distance, (3, 3)).astype(np.uint8))
    distance = cv2.blur(cv2.filter2D(distance, cv2.CV_8U, EMBOSS), (3, 3)).astype(np.float32)
    shade = layer * distance
    if shade.max() == 0:
        return x.copy()
    shade = (shade / shade.max() * strength)[..., None]
    return _to_uint8(unit + shade * WATER_RGB)


_FUNCTIONS: Mapping[str, Callable[[np.ndarray, object, np.random.Generator], np.ndarray]] = MappingProxyType({
    'gaussian_noise': _gaussian_noise, 'shot_noise': _shot_noise, 'impulse_noise': _impulse_noise,
    'defocus_blur': _defocus_blur, 'glass_blur': _glass_blur, 'motion_blur': _motion_blur_image,
    'zoom_blur': _zoom_blur, 'snow': _snow, 'frost': _frost, 'fog': _fog, 'brightness': _brightness,
    'contrast': _contrast, 'elastic_transform': _elastic_transform, 'pixelate': _pixelate,
    'jpeg_compression': _jpeg_compression, 'speckle_noise': _speckle_noise, 'gaussian_blur': _gaussian_blur,
    'spatter': _spatter, 'saturate': _saturate})


def corrupt(image: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``image`` (uint8 32x32x3 RGB) corrupted by ``name`` at ``severity`` (1-5), CIFAR-10-C's parameters.

    All randomness is drawn from ``rng``; the result is a new uint8 32x32x3 array.
    """
    if name not in _FUNCTIONS:
        raise ValueError(f'unknown corruption {name!r}; the corruptions are {", ".join(CORRUPTIONS)} and the '
                         f'extra {", ".join(EXTRA_CORRUPTIONS)}')
    if not isinstance(severity, (int, np.integer)) or isinstance(severity, bool) or severity not in SEVERITIES:
        raise ValueError(f'unknown severity {severity!r}; the severities are {", ".join(map(str, SEVERITIES))}')
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f'rng must be a numpy.random.Generator, not {type(rng).__name__}')
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.shape != (SIZE, SIZE, 3):
        raise ValueError(f'CIFAR-10-C corrupts uint8 {SIZE}x{SIZE}x3 RGB images, not {image.dtype} '
                         f'{"x".join(map(str, image.shape))}')
    return _FUNCTIONS[name](image, PARAMETERS[name][severity - 1], rng)
