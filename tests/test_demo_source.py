"""The bundled demo source model: its checkpoint loads into the config's model, segments clear frames
well and loses accuracy under fog and night; and the calibration tool measures what tools/adapt.py reports.

The frames come from the shared CamVid folder, rendered as ``tools/make_demo_data.py --preset
tiny_segformer`` renders the tuning stream (``tools/calibrate_demo.py`` does it in memory), so no generated
tree is needed except for the comparison with ``tools/adapt.py``. The margins are measured ones with room to
spare, not exact scores (docs/demo_source.md has those).
"""
import json
from pathlib import Path

import pytest
import torch

import imse_seg  # noqa: F401  (before mmseg)
from imse_seg.demo import PRESETS, list_camvid
from imse_seg.third_party import CAMVID
from camvid_fixture import reduce_camvid
from mmengine.config import Config
from shared_files import shared_path
from tool_module import load_tool

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / 'data' / 'demo_source' / 'segformer_tiny_camvid.pth'
MODEL_CONFIG = REPO / 'configs' / 'demo' / '_base_' / 'segformer_tiny.py'
PRESET = PRESETS['tiny_segformer']
FRAMES = 10


calibrate_demo = load_tool('calibrate_demo')


@pytest.fixture(scope='module')
def evaluator(tmp_path_factory: pytest.TempPathFactory):
    cfg = Config.fromfile(REPO / PRESET.config)
    cfg.load_from = str(CHECKPOINT)
    return calibrate_demo.Evaluator(cfg, tmp_path_factory.mktemp('scratch'))


def test_checkpoint_is_small_plain_and_matches_the_config() -> None:
    assert CHECKPOINT.stat().st_size < 10 * 2 ** 20
    checkpoint = torch.load(CHECKPOINT, map_location='cpu', weights_only=True)
    meta = checkpoint['meta']
    assert len(meta['dataset_meta']['classes']) == 19 and meta['dataset_meta']['classes'][0] == 'road'
    assert meta['trained_by'].startswith('python tools/train_source.py')
    assert 0 < meta['clear_val_mIoU'] <= 100
    assert Config.fromfile(str(MODEL_CONFIG)).model.decode_head.num_classes == 19
    assert checkpoint['state_dict']['decode_head.conv_seg.weight'].shape[0] == 19


def test_source_segments_clear_frames_and_loses_under_fog_and_night(evaluator) -> None:
    items = PRESET.plan(list_camvid(shared_path(CAMVID)), PRESET.frames_per_condition)
    for condition, margin in (('fog', 4.0), ('night', 15.0)):
        chosen = calibrate_demo.stream(items, 'val', condition)[:FRAMES]
        clear_chosen = calibrate_demo.clear_items(items, 'val', condition)[:FRAMES]
        clear = evaluator.miou(clear_chosen, 0, PRESET.weather, PRESET.size, f'clear_{condition}')
        adverse = evaluator.miou(chosen, 0, PRESET.weather, PRESET.size, condition)
        assert clear > 35.0, f'clear mIoU {clear:.1f} on the {condition} tuning frames'
        assert adverse < clear - margin, f'{condition}: {adverse:.1f} against clear {clear:.1f}'


def test_calibration_measures_what_adapt_reports_on_the_generated_tree(evaluator, tmp_path: Path) -> None:
    reduced = reduce_camvid(shared_path(CAMVID), tmp_path / 'camvid')
    data = tmp_path / 'demo'
    assert load_tool('make_demo_data').main(['--preset', 'tiny_segformer', '--camvid', str(reduced), '--out',
                                             str(data), '--frames-per-condition', '2']) == 0
    assert load_tool('adapt').main([str(REPO / PRESET.config), '--checkpoint', str(CHECKPOINT), '--work-dir',
                                    str(tmp_path / 'run'), '--cfg-options', 'test_cfg.rounds=1',
                                    f'test_dataloader.dataset.data_root={data}']) == 0
    records = [json.loads(line) for line in (tmp_path / 'run' / 'results.jsonl').read_text().splitlines()]
    reported = {record['key']['condition']: record['metrics']['mIoU'] for record in records}
    items = PRESET.plan(list_camvid(reduced), 2)
    for condition in ('fog', 'night'):
        measured = evaluator.miou(calibrate_demo.stream(items, 'train', condition), 0, PRESET.weather,
                                  PRESET.size, condition)
        assert measured == reported[condition]
