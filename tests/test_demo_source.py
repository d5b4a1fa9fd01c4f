"""The bundled demo source model: its checkpoint loads into the config's model, segments clear frames
well and loses accuracy under fog and night.

The frames come from the shipped CamVid copy, rendered in memory as ``tools/make_demo_data.py`` renders
the tuning stream, so the generated tree is not needed. The margins are measured ones with room to spare,
not exact scores (docs/demo_source.md has those).
"""
from pathlib import Path

import pytest
import torch

import imse_seg  # noqa: F401  (before mmseg)
from imse_seg.demo import WeatherParams, list_camvid, plan_demo
from mmengine.config import Config
from tool_module import load_tool

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / 'data' / 'demo_source' / 'segformer_tiny_camvid.pth'
MODEL_CONFIG = REPO / 'configs' / 'demo' / '_base_' / 'segformer_tiny.py'
FRAMES = 10


calibrate_demo = load_tool('calibrate_demo')


@pytest.fixture(scope='module')
def model() -> torch.nn.Module:
    return calibrate_demo.load_source_model(str(CHECKPOINT), str(MODEL_CONFIG))


@pytest.fixture(scope='module')
def items() -> list:
    return plan_demo(list_camvid(REPO / 'data' / 'camvid'), 25)


def test_checkpoint_is_small_plain_and_matches_the_config() -> None:
    assert CHECKPOINT.stat().st_size < 10 * 2 ** 20
    checkpoint = torch.load(CHECKPOINT, map_location='cpu', weights_only=True)
    meta = checkpoint['meta']
    assert len(meta['dataset_meta']['classes']) == 19 and meta['dataset_meta']['classes'][0] == 'road'
    assert meta['trained_by'].startswith('python tools/train_source.py')
    assert 0 < meta['clear_val_mIoU'] <= 100
    assert Config.fromfile(str(MODEL_CONFIG)).model.decode_head.num_classes == 19
    assert checkpoint['state_dict']['decode_head.conv_seg.weight'].shape[0] == 19


def test_source_segments_clear_frames_and_loses_under_fog_and_night(model: torch.nn.Module,
                                                                    items: list) -> None:
    for condition, margin in (('fog', 4.0), ('night', 15.0)):
        chosen = calibrate_demo.stream(items, 'val', condition)[:FRAMES]
        clear = calibrate_demo.miou(model, calibrate_demo.clear_frames(chosen))
        adverse = calibrate_demo.miou(model, calibrate_demo.rendered_frames(chosen, 0, WeatherParams()))
        assert clear > 35.0, f'clear mIoU {clear:.1f} on the {condition} tuning frames'
        assert adverse < clear - margin, f'{condition}: {adverse:.1f} against clear {clear:.1f}'
