"""Measure how much a preset's weather costs its source model, and calibrate the severities.

    python tools/calibrate_demo.py [--preset efficientvit|tiny_segformer] [--search] [--split val train]
        [--config CONFIG] [--checkpoint CKPT] [--camvid DIR] [--cfg-options KEY=VALUE ...]

The source model, its input pipeline and the metric come from an adaptation config (default: the preset's
``_source`` config, e.g. ``configs/efficientvit_camvid_ctta_source.py``: the published EfficientViT-Seg-B0
at 1.5x bicubic input, scored over CamVid's 11 classes by ``StreamIoUMetric`` with ``class_merge``), so
the figures are those ``tools/adapt.py`` reports on the generated tree: frames are rendered exactly as
``tools/make_demo_data.py`` renders them (the same ``make_frame``, seed and size), written to a temporary
ACDC-layout folder and read back through the config's dataset class and pipeline; the model predicts each
with ``test_step`` at batch 1. ``--cfg-options`` edits the config as in ``tools/adapt.py``, e.g.
``test_dataloader.dataset.pipeline.1.scale_factor=2.0`` for 2x input.

The ratio of a condition's mIoU to the mIoU of the same frames clear is what the renderers are calibrated
on, towards what a Cityscapes model keeps on ACDC: fog 0.84, night 0.49, rain 0.73, snow 0.70.
``--search`` runs, on the tuning stream (ACDC split ``val``) only, a grid over each condition's strength
and names the point closest to the target; the preset's parameters are then set by hand. Without it the
tool reports the preset's parameters on the splits asked for (default: tuning, then reported; the
reported stream is never used to choose anything). docs/demo_data.md holds the results.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# OpenMP threads that sleep instead of spinning while they wait (see tools/train_source.py).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import imse_seg  # noqa: E402,F401  (before mmseg: installs the mmcv.ops stand-in)
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402
from mmseg.registry import DATASETS, METRICS, MODELS  # noqa: E402

import imse_seg.seg  # noqa: E402,F401  (registers ACDCDataset, StreamIoUMetric, the EfficientViT modules)
from imse_seg.cli import exit_with  # noqa: E402
from imse_seg.demo import (CLEAR_PREFIX, CONDITIONS, PRESETS, DemoItem, DemoPreset,  # noqa: E402
                           WeatherParams, acdc_paths, list_camvid, make_frame)
from imse_seg.demo.camvid import TARGET_SPLIT, TUNING_SPLIT, write_png  # noqa: E402

TARGET_RATIO = {'fog': 0.84, 'night': 0.49, 'rain': 0.73, 'snow': 0.70}


@dataclass(frozen=True)
class Strength:
    """One condition's severity knob for ``--search``: what ``s`` sets, how, and the grid searched."""
    meaning: str
    apply: Callable[[WeatherParams, float], WeatherParams]
    grid: tuple[float, ...]


def _replace(params: WeatherParams, condition: str, **fields) -> WeatherParams:
    """``params`` with some fields of one condition's parameters replaced."""
    changed = dataclasses.replace(getattr(params, condition), **fields)
    return dataclasses.replace(params, **{condition: changed})


SEARCH: dict[str, dict[str, Strength]] = {
    'efficientvit': {
        'fog': Strength('FogParams.beta = (s, 2s) 1/m', lambda p, s: _replace(p, 'fog', beta=(s, 2 * s)),
                        (0.04, 0.045, 0.05, 0.055, 0.06)),
        'night': Strength('NightParams.target_luma = (s - 5, s + 5)',
                          lambda p, s: _replace(p, 'night', target_luma=(s - 5, s + 5)),
                          (30, 34, 38, 42, 46)),
        'rain': Strength('RainParams.lens_drops = s', lambda p, s: _replace(p, 'rain', lens_drops=s),
                         (0.58, 0.59, 0.6, 0.61, 0.62)),
        'snow': Strength('SnowParams.brightness = s', lambda p, s: _replace(p, 'snow', brightness=s),
                         (2.0, 2.5, 3.0, 3.5)),
    },
    'tiny_segformer': {
        'fog': Strength('FogParams.beta = (s, 2s) 1/m', lambda p, s: _replace(p, 'fog', beta=(s, 2 * s)),
                        (0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05)),
        'night': Strength('NightParams.target_luma = (s - 5, s + 5)',
                          lambda p, s: _replace(p, 'night', target_luma=(s - 5, s + 5)),
                          (18, 20, 22, 23, 24, 26, 28)),
        'rain': Strength('RainParams.lens_drops = s', lambda p, s: _replace(p, 'rain', lens_drops=s),
                         (0.5, 0.56, 0.58, 0.59, 0.6, 0.61, 0.62)),
        'snow': Strength('SnowParams.haze_beta = (s, 2s) 1/m',
                         lambda p, s: _replace(p, 'snow', haze_beta=(s, 2 * s)),
                         (0.0, 0.002, 0.004, 0.006, 0.009, 0.013)),
    },
}
"""Per preset, per condition: the strength ``--search`` varies (the other parameters stay the preset's)."""


class Evaluator:
    """A config's source model, dataset pipeline and metric, applied to frames rendered in memory."""

    def __init__(self, cfg: Config, scratch: Path) -> None:
        init_default_scope('mmseg')
        self.cfg = cfg
        self.scratch = scratch
        self.model = MODELS.build(cfg.model.module)
        load_checkpoint(self.model, cfg.load_from, map_location='cpu', strict=True, logger='silent')
        self.model.eval()

    def miou(self, items: list[DemoItem], seed: int, params: WeatherParams, size: tuple[int, int] | None,
             folder: str) -> float:
        """mIoU (percent) over ``items`` made by ``make_frame``, read back as ACDC condition ``folder``."""
        root = Path(tempfile.mkdtemp(dir=self.scratch))
        try:
            for item in items:
                frame = item.frame
                paths = acdc_paths(root, folder, item.split, frame.sequence, frame.stem)
                for path, array in zip(paths, make_frame(item, seed, params, size)):
                    write_png(path, array)
            dataset_cfg = self.cfg.test_dataloader.dataset.copy()
            dataset_cfg.update(data_root=str(root), condition=folder, split=items[0].split)
            dataset = DATASETS.build(dataset_cfg)
            metric = METRICS.build(self.cfg.test_evaluator)
            metric.dataset_meta = dataset.metainfo
            for index in range(len(dataset)):
                data = pseudo_collate([dataset[index]])
                with torch.no_grad():
                    outputs = self.model.test_step(data)
                metric.process(data, [output.to_dict() for output in outputs])
            return float(metric.evaluate(len(dataset))['mIoU'])
        finally:
            shutil.rmtree(root)


def stream(items: list[DemoItem], split: str, condition: str) -> list[DemoItem]:
    """The items of one ACDC-layout condition folder and split, in stream order."""
    return [item for item in items if item.layout == 'acdc' and item.split == split
            and item.condition == condition]


def clear_items(items: list[DemoItem], split: str, condition: str) -> list[DemoItem]:
    """The clear originals of ``condition``'s frames: its ``clear_<condition>`` items, else (a plan that
    writes none) the same frames unrendered."""
    clear = stream(items, split, f'{CLEAR_PREFIX}{condition}')
    return clear or [dataclasses.replace(item, condition=f'{CLEAR_PREFIX}{condition}')
                     for item in stream(items, split, condition)]


def search(evaluator: Evaluator, preset: DemoPreset, items: list[DemoItem], seed: int) -> None:
    """Grid over each condition's strength on the tuning stream; print every point and the closest."""
    for condition in CONDITIONS:
        chosen = stream(items, TUNING_SPLIT, condition)
        clear = evaluator.miou(clear_items(items, TUNING_SPLIT, condition), seed, preset.weather, preset.size,
                               f'{CLEAR_PREFIX}{condition}')
        strength = SEARCH[preset.name][condition]
        target = TARGET_RATIO[condition]
        print(f'{condition}: {strength.meaning}; clear {clear:.1f} on the same {len(chosen)} tuning frames; '
              f'target ratio {target:.2f}', flush=True)
        results = []
        for s in strength.grid:
            score = evaluator.miou(chosen, seed, strength.apply(preset.weather, s), preset.size, condition)
            results.append((abs(score / clear - target), s))
            print(f'  s = {s:<7g} mIoU {score:5.1f}  ratio {score / clear:.2f}', flush=True)
        print(f'  closest: s = {min(results)[1]:g}', flush=True)


def report(evaluator: Evaluator, preset: DemoPreset, items: list[DemoItem], seed: int,
           splits: list[str]) -> None:
    """Source mIoU per condition with the preset's parameters, on the same frames clear, and the ratio."""
    names = {TUNING_SPLIT: 'tuning', TARGET_SPLIT: 'reported'}
    print('| condition | stream (ACDC split) | frames | clear | rendered | ratio | target |')
    print('| --- | --- | ---: | ---: | ---: | ---: | ---: |')
    for split in splits:
        for condition in CONDITIONS:
            chosen = stream(items, split, condition)
            clear = evaluator.miou(clear_items(items, split, condition), seed, preset.weather, preset.size,
                                   f'{CLEAR_PREFIX}{condition}')
            score = evaluator.miou(chosen, seed, preset.weather, preset.size, condition)
            print(f'| {condition} | {names[split]} ({split}) | {len(chosen)} | {clear:.1f} | {score:.1f} | '
                  f'{score / clear:.2f} | {TARGET_RATIO[condition]:.2f} |', flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--preset', choices=sorted(PRESETS), default='efficientvit',
                        help='the tree whose frames and renderer parameters are measured '
                             '(default efficientvit)')
    parser.add_argument('--config', help="adaptation config of the source model (default: the preset's)")
    parser.add_argument('--checkpoint', help="source checkpoint (default: the config's load_from)")
    parser.add_argument('--camvid', type=Path, default=None,
                        help='the CamVid folder (default: $IMSE_SEG_CAMVID or ../shared/data/camvid)')
    parser.add_argument('--seed', type=int, default=0, help='the generator seed (default 0)')
    parser.add_argument('--frames-per-condition', type=int, default=None, help="default: the preset's")
    parser.add_argument('--split', nargs='+', choices=[TUNING_SPLIT, TARGET_SPLIT],
                        default=[TUNING_SPLIT, TARGET_SPLIT],
                        help=f'streams to report: {TUNING_SPLIT} = tuning, {TARGET_SPLIT} = reported')
    parser.add_argument('--search', action='store_true', help='search the strengths on the tuning stream')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. '
                             'test_dataloader.dataset.pipeline.1.scale_factor=2.0')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    MMLogger.get_instance('calibrate_demo', log_level='WARNING')  # mmseg's per-class tables stay quiet
    started = time.perf_counter()
    preset = PRESETS[args.preset]
    cfg = Config.fromfile(args.config or preset.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.checkpoint:
        cfg.load_from = args.checkpoint
    items = preset.plan(list_camvid(args.camvid), args.frames_per_condition or preset.frames_per_condition)
    with tempfile.TemporaryDirectory(prefix='calibrate_demo.') as scratch:
        evaluator = Evaluator(cfg, Path(scratch))
        if args.search:
            search(evaluator, preset, items, args.seed)
        else:
            report(evaluator, preset, items, args.seed, args.split)
    print(f'done in {time.perf_counter() - started:.0f} s', flush=True)
    return 0


if __name__ == '__main__':
    exit_with(main)
