"""The named trees the generator writes: which frames go where, how they are rendered, at which size.

A preset ties a frame plan to the renderer parameters calibrated for one source model, since a severity
is only meaningful against the model it was calibrated on (``tools/calibrate_demo.py``). The generator and
the calibration tool select one by name (``--preset``) from :data:`PRESETS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .camvid import CamVidFrame, DemoItem, plan_camvid_stream, plan_demo
from .weather import TINY_SEGFORMER_WEATHER, WeatherParams


@dataclass(frozen=True)
class DemoPreset:
    """One benchmark tree.

    ``plan`` assigns CamVid frames to splits and conditions for ``frames_per_condition``; ``weather`` holds
    the renderer parameters; ``size`` (H, W) is the written frame size (None: CamVid's own 240 x 320);
    ``out`` the default folder; ``config`` the adaptation config whose source model and pipeline the
    severities were calibrated with (its ``_source`` variant).
    """
    name: str
    plan: Callable[[list[CamVidFrame], int], list[DemoItem]]
    weather: WeatherParams
    frames_per_condition: int
    size: tuple[int, int] | None
    out: str
    config: str


PRESETS: dict[str, DemoPreset] = {
    preset.name: preset for preset in (
        DemoPreset('efficientvit', plan_camvid_stream, WeatherParams(), 100, None, 'data/camvid_stream',
                   'configs/efficientvit_camvid_ctta_source.py'),
        DemoPreset('tiny_segformer', plan_demo, TINY_SEGFORMER_WEATHER, 25, (120, 160), 'data/demo',
                   'configs/demo_ctta_source.py'),
    )
}
"""The presets by name: ``efficientvit`` (the benchmark of the published EfficientViT-Seg-B0 Cityscapes
model, docs/demo_data.md) and ``tiny_segformer`` (the bundled tiny-SegFormer demo, docs/demo_source.md)."""
