"""The real benchmark configs (issues 5, 12): SegFormer-B5 and its pipeline build and adapt, without data."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

REPO = Path(__file__).resolve().parents[1]
METHOD_CONFIGS = sorted(p.name for p in (REPO / 'configs').glob('acdc_ctta*.py'))


@pytest.mark.parametrize('config', ['acdc_ctta.py', 'acdc_ctta_cotta_published.py'])
def test_dry_run_builds_b5_and_adapts(config) -> None:
    result = subprocess.run([sys.executable, 'tools/adapt.py', f'configs/{config}', '--dry-run'],
                            capture_output=True, text=True, cwd=REPO, check=False, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "'pipeline_output': (3, 540, 960)" in log        # 1920x1080 resized to 960x540, keep ratio
    assert "'adapted': True" in log


@pytest.mark.parametrize('config', METHOD_CONFIGS)
def test_protocol_settings(config) -> None:
    cfg = Config.fromfile(REPO / 'configs' / config)
    assert cfg.model.type == 'AdaptiveSegmentor'
    assert cfg.model.module.backbone.num_layers == [3, 6, 40, 3]          # SegFormer-B5
    assert cfg.test_dataloader.batch_size == 1
    assert cfg.test_dataloader.dataset.split == 'train'
    assert [s['name'] for s in cfg.test_cfg.segments] == ['fog', 'night', 'rain', 'snow']
    assert cfg.test_cfg.rounds == 10
    resize = next(t for t in cfg.test_dataloader.dataset.pipeline if t['type'] == 'Resize')
    assert resize['scale'] == (960, 540) and resize['keep_ratio']
    (hook,) = [h for h in cfg.custom_hooks if h['type'] == 'AdaptationSetupHook']
    assert hook['method']['type'] in ('Source', 'EntropyAdaptation', 'CoTTA', 'NormStatisticsAdaptation', 'SAR',
                                      'ViDA')
    assert hook['method'].get('reset_each_segment', False) == config.endswith('_published.py')
