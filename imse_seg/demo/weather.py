"""Adverse-condition renderers for the benchmark streams: fog, night, rain and snow.

Each renderer takes a clear RGB frame (``uint8``, H x W x 3), its label map in Cityscapes trainIds (255 =
ignore) and a ``numpy.random.Generator``, and returns a new ``uint8`` RGB frame; the labels never change.
The output depends only on these inputs and the parameters, so a fixed seed gives bit-identical frames.
The strengths are plain dataclass fields. A severity means something only against a model: the defaults
are calibrated on the tuning stream against the published EfficientViT-Seg-B0 Cityscapes model, and
:data:`TINY_SEGFORMER_WEATHER` against the bundled tiny SegFormer (``tools/calibrate_demo.py``,
``docs/demo_data.md``). Rain and snow use albumentations' maintained transforms (streaks, lens drops, snow
cover, blur); only what none provides is written here: the atmospheric scattering model with its depth,
and low light. albumentations is the ``demo`` extra, imported when rain or snow is rendered, so that
``import imse_seg`` (whose CamVid dataset reads this package's label map) needs none.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import albumentations as A

CONDITIONS = ('fog', 'night', 'rain', 'snow')

# Cityscapes trainIds that the renderers look at.
GROUND_IDS = (0, 1, 9)          # road, sidewalk, terrain: the ground plane of the fog depth
SKY_ID = 10
LAMP_IDS = (2, 5, 6, 13)        # building, pole, traffic light, car: where night light sources sit

Range = tuple[float, float]


@dataclass(frozen=True)
class FogParams:
    """Fog by the atmospheric scattering model ``I = J t + A (1 - t)``, ``t = exp(-beta d)``.

    ``beta`` (1/m) and ``airlight`` (A, fraction of white) are drawn uniformly per frame from their ranges;
    meteorological visibility is about ``3 / beta`` (defaults: 30-60 m). The depth ``d`` comes from
    :func:`ground_plane_depth` with the camera below; sky is at infinite depth (pure airlight).
    """
    beta: Range = (0.05, 0.1)
    airlight: Range = (0.75, 0.85)
    horizon: float = 0.46
    camera_height_m: float = 1.2
    hfov_deg: float = 60.0
    max_depth_m: float = 300.0


@dataclass(frozen=True)
class NightParams:
    """Low light: dark sky, re-exposure to a dark mean luma, tint, light sources, shot and read noise.

    The frame is linearised (gamma 2.2); sky pixels (from the labels) are scaled by ``sky_gain``, since a
    night sky is no longer the brightest thing in view; the frame is then scaled so that its mean display
    luma (0-255, BT.601 weights) is ``target_luma`` drawn per frame (any frame, daylight or dusk, ends
    equally dark), tinted by ``tint`` (linear RGB gains), given ``lights`` Gaussian light sources on average
    (Poisson count, centred on buildings, poles, traffic lights and cars; glow sigma ``light_radius`` x
    height, peak linear radiance ``light_gain``), and finally noised with a Poisson-Gaussian sensor model in
    linear light: variance ``shot_noise * x + read_noise**2``.
    """
    target_luma: Range = (33.0, 43.0)
    tint: tuple[float, float, float] = (0.9, 0.95, 1.1)
    lights: float = 10.0
    light_radius: float = 0.012
    light_gain: float = 0.8
    shot_noise: float = 0.002
    read_noise: float = 0.004
    sky_gain: float = 0.3


@dataclass(frozen=True)
class RainParams:
    """Rain: a scattering haze, a wet-windshield blur, ``RandomRain`` streaks and ``Spatter`` lens drops.

    ``haze_beta`` (1/m, per frame range) applies :class:`FogParams`' scattering model (default camera) with
    a grey airlight of 0.6 for the dim, low-contrast look of rain. ``blur_sigma`` (pixels, per frame
    range) blurs the whole view as a film of water on the lens does (albumentations ``GaussianBlur``;
    ``None``: sharp). ``rain_type``, ``drop_length``, ``drop_width``, ``blur`` and ``brightness`` go to
    ``RandomRain`` (``rain_type`` sets the number of streaks: H / 4 for ``drizzle``, H / 3 ``default``,
    H ``heavy``, 2 H ``torrential``; ``slant`` is its ``slant_range``: the horizontal pixel offset of a
    streak). ``lens_drops`` is ``Spatter``'s ``mean`` (mode ``rain``, grey drops): the share of the lens
    covered grows with it, about 1% at 0.58, 2% at 0.59, 3.5% at 0.60, 9% at 0.62 and 18% at 0.64, at
    120 x 160 and 240 x 320 alike; ``None`` renders no lens drops. Pixel sizes refer to the frame as
    rendered (the written size).
    """
    rain_type: Literal['drizzle', 'heavy', 'torrential', 'default'] = 'default'
    drop_length: int = 15
    drop_width: int = 1
    slant: Range = (-5.0, 5.0)
    blur: int = 3
    brightness: float = 0.8
    haze_beta: Range = (0.006, 0.012)
    lens_drops: float | None = 0.59
    blur_sigma: Range | None = (0.5, 1.0)


@dataclass(frozen=True)
class SnowParams:
    """Snow: albumentations ``RandomSnow`` cover (``bleach``), a bright haze and falling flakes.

    ``snow_point`` and ``brightness`` go to ``RandomSnow(method='bleach')``, which lightens the darker
    surfaces as if covered by snow. ``haze_beta`` (1/m, per frame range) applies the scattering model with a
    white airlight of 0.9 for falling-snow visibility. Flakes are short white ``RandomRain`` streaks
    (``flakes`` is the density preset, ``flake_size`` their length and width in pixels of the frame as
    rendered).
    """
    snow_point: Range = (0.2, 0.35)
    brightness: float = 2.0
    flakes: Literal['drizzle', 'heavy', 'torrential', 'default'] = 'heavy'
    flake_size: int = 4
    haze_beta: Range = (0.01, 0.02)


@dataclass(frozen=True)
class WeatherParams:
    """The parameters of all four renderers, as one value to store in a manifest or pass around.

    The defaults are calibrated against the published EfficientViT-Seg-B0 Cityscapes model at 1.5x input
    on CamVid's 240 x 320 frames (preset ``efficientvit``, docs/demo_data.md).
    """
    fog: FogParams = field(default_factory=FogParams)
    night: NightParams = field(default_factory=NightParams)
    rain: RainParams = field(default_factory=RainParams)
    snow: SnowParams = field(default_factory=SnowParams)


TINY_SEGFORMER_WEATHER = WeatherParams(
    fog=FogParams(beta=(0.03, 0.06)),
    night=NightParams(target_luma=(18.0, 28.0), sky_gain=1.0),
    rain=RainParams(rain_type='drizzle', drop_length=10, haze_beta=(0.004, 0.008), lens_drops=0.58,
                    blur_sigma=None),
    snow=SnowParams(flake_size=2, haze_beta=(0.004, 0.008)))
"""The parameters calibrated against the bundled tiny SegFormer on 120 x 160 frames (preset
``tiny_segformer``, docs/demo_source.md)."""


def ground_plane_depth(label: np.ndarray, params: FogParams = FogParams()) -> np.ndarray:
    """Per-pixel depth in metres from the labels alone: flat ground, upright objects, sky at infinity.

    A pinhole camera ``camera_height_m`` above flat ground, looking level with the horizon at row
    ``horizon * H`` and horizontal field of view ``hfov_deg``, sees a ground pixel at row ``v`` at depth
    ``f h / (v - v0)``. Every other pixel stands upright on the nearest ground pixel below it in its column
    (the point where a wall, pole or car meets the road) and takes that depth; a pixel with no ground below
    takes the ground depth of its own row (it can be no farther). Depths are capped at ``max_depth_m``,
    also above the horizon; sky pixels are ``inf``.
    """
    h, w = label.shape
    focal = (w / 2) / math.tan(math.radians(params.hfov_deg) / 2)
    rows = np.arange(h)
    below = rows + 0.5 - params.horizon * h
    row_depth = np.full(h, params.max_depth_m)
    ahead = below > 0
    row_depth[ahead] = np.minimum(focal * params.camera_height_m / below[ahead], params.max_depth_m)
    ground_row = np.where(np.isin(label, GROUND_IDS), rows[:, None], h)
    base = np.minimum.accumulate(ground_row[::-1], axis=0)[::-1]
    base = np.where(base < h, base, rows[:, None])
    depth = row_depth[base]
    depth[label == SKY_ID] = np.inf
    return depth


def _scatter(image: np.ndarray, depth: np.ndarray, beta: float, airlight: float) -> np.ndarray:
    """Apply ``I = J t + A (1 - t)`` to a float image in [0, 1]; ``beta = 0`` is clear air, sky included."""
    if beta == 0:
        return image
    t = np.exp(-beta * depth)[..., None]
    return image * t + airlight * (1.0 - t)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def render_fog(image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
               params: FogParams = FogParams()) -> np.ndarray:
    """Fog from the atmospheric scattering model over :func:`ground_plane_depth` (see :class:`FogParams`)."""
    beta = rng.uniform(*params.beta)
    airlight = rng.uniform(*params.airlight)
    foggy = _scatter(image.astype(np.float64) / 255.0, ground_plane_depth(label, params), beta, airlight)
    return _to_uint8(foggy)


def _display_luma(linear: np.ndarray) -> float:
    display = np.clip(linear, 0.0, 1.0) ** (1 / 2.2)
    return float((display @ np.array([0.299, 0.587, 0.114])).mean() * 255.0)


def _exposure_gain(linear: np.ndarray, target_luma: float) -> float:
    """The gain that brings the mean display luma of ``linear`` to ``target_luma`` (bisection in log)."""
    low, high = -12.0, 6.0
    for _ in range(40):
        mid = (low + high) / 2
        if _display_luma(linear * math.exp(mid)) < target_luma:
            low = mid
        else:
            high = mid
    return math.exp((low + high) / 2)


_LIGHT_COLOURS = np.array([[1.0, 0.72, 0.42],   # sodium street lamp
                           [1.0, 0.97, 0.9],    # white LED / headlight
                           [1.0, 0.15, 0.1]])   # tail light


def _light_sources(label: np.ndarray, rng: np.random.Generator, params: NightParams) -> np.ndarray:
    """Linear radiance of Gaussian light sources placed on lamp-bearing classes (zeros if none)."""
    h, w = label.shape
    glow = np.zeros((h, w, 3))
    ys, xs = np.nonzero(np.isin(label, LAMP_IDS))
    count = int(rng.poisson(params.lights))
    if count == 0 or ys.size == 0:
        return glow
    picks = rng.integers(0, ys.size, size=count)
    sigmas = params.light_radius * h * rng.uniform(0.5, 1.5, size=count)
    colours = _LIGHT_COLOURS[rng.integers(0, len(_LIGHT_COLOURS), size=count)]
    yy, xx = np.mgrid[0:h, 0:w]
    for y, x, sigma, colour in zip(ys[picks], xs[picks], sigmas, colours):
        blob = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma ** 2))
        glow += params.light_gain * blob[..., None] * colour
    return glow


def render_night(image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                 params: NightParams = NightParams()) -> np.ndarray:
    """Low light with a dark sky, light sources and sensor noise (see :class:`NightParams`)."""
    linear = (image.astype(np.float64) / 255.0) ** 2.2
    linear = np.where((label == SKY_ID)[..., None], linear * params.sky_gain, linear)
    linear = linear * np.array(params.tint)
    linear = linear * _exposure_gain(linear, rng.uniform(*params.target_luma))
    linear = linear + _light_sources(label, rng, params)
    std = np.sqrt(params.shot_noise * np.clip(linear, 0.0, None) + params.read_noise ** 2)
    linear = linear + std * rng.standard_normal(linear.shape)
    return _to_uint8(np.clip(linear, 0.0, 1.0) ** (1 / 2.2))


def _albumentations() -> ModuleType:
    """The albumentations module, or a ``ModuleNotFoundError`` that names the extra which installs it."""
    os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')  # albumentations asks PyPI for updates at import
    try:
        import albumentations
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError("rendering rain and snow needs albumentations, the 'demo' extra: "
                                  "pip install -e '.[demo]'") from error
    return albumentations


def _seeded(transform: A.ImageOnlyTransform, rng: np.random.Generator) -> A.ImageOnlyTransform:
    transform.set_random_seed(int(rng.integers(0, 2 ** 31)))
    return transform


def _haze(image: np.ndarray, label: np.ndarray, beta: float, airlight: float) -> np.ndarray:
    hazy = _scatter(image.astype(np.float64) / 255.0, ground_plane_depth(label), beta, airlight)
    return _to_uint8(hazy)


def render_rain(image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                params: RainParams = RainParams()) -> np.ndarray:
    """Haze, wet-lens blur, rain streaks and lens drops, in that order (see :class:`RainParams`)."""
    A = _albumentations()
    out = _haze(image, label, rng.uniform(*params.haze_beta), 0.6)
    if params.blur_sigma is not None:
        wet_lens = A.GaussianBlur(blur_limit=0, sigma_limit=params.blur_sigma, p=1.0)
        out = _seeded(wet_lens, rng)(image=out)['image']
    streaks = A.RandomRain(slant_range=params.slant, drop_length=params.drop_length,
                           drop_width=params.drop_width, blur_value=params.blur,
                           brightness_coefficient=params.brightness, rain_type=params.rain_type, p=1.0)
    out = _seeded(streaks, rng)(image=out)['image']
    if params.lens_drops is not None:
        drops = A.Spatter(mean=(params.lens_drops, params.lens_drops), mode='rain', color=(200, 200, 205),
                          p=1.0)
        out = _seeded(drops, rng)(image=out)['image']
    return out


def render_snow(image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                params: SnowParams = SnowParams()) -> np.ndarray:
    """Snow cover, haze and falling flakes (see :class:`SnowParams`)."""
    A = _albumentations()
    cover = A.RandomSnow(snow_point_range=params.snow_point, brightness_coeff=params.brightness,
                         method='bleach', p=1.0)
    out = _seeded(cover, rng)(image=image)['image']
    out = _haze(out, label, rng.uniform(*params.haze_beta), 0.9)
    flakes = A.RandomRain(slant_range=(-3.0, 3.0), drop_length=params.flake_size,
                          drop_width=params.flake_size, drop_color=(255, 255, 255), blur_value=1,
                          brightness_coefficient=1.0, rain_type=params.flakes, p=1.0)
    return _seeded(flakes, rng)(image=out)['image']


def render(condition: str, image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
           params: WeatherParams = WeatherParams()) -> np.ndarray:
    """Render ``condition`` (one of :data:`CONDITIONS`) on an RGB ``uint8`` frame with its trainId labels."""
    if condition not in CONDITIONS:
        raise ValueError(f'unknown condition {condition!r}; expected one of {CONDITIONS}')
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'expected an H x W x 3 uint8 RGB image, got {image.dtype} {image.shape}')
    if label.shape != image.shape[:2]:
        raise ValueError(f'label shape {label.shape} does not match image shape {image.shape[:2]}')
    renderers = {'fog': render_fog, 'night': render_night, 'rain': render_rain, 'snow': render_snow}
    return renderers[condition](image, label, rng, getattr(params, condition))
