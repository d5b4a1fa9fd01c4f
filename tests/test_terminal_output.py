"""What a run prints and logs (issue 20, item 6): segment-named progress lines, the per-class table once,
no metric-prefix warning, bank events placed in the stream, no duplicate round column for one round."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from acdc_fixture import CONDITIONS, IMAGES_PER_CONDITION, write_acdc_tree, write_config, write_tiny_checkpoint
from checkout import checkout_env
from imse_seg.reporting import format_class_table
from imse_seg.reporting.comparison import format_comparison

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def run(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp('terminal')
    config = write_config(root / 'imse_stag.py', write_acdc_tree(root / 'acdc'), 'imse_stag', rounds=1,
                          extra='default_hooks = dict(logger=dict(interval=1))')
    work_dir = root / 'work'
    result = subprocess.run([sys.executable, 'tools/adapt.py', str(config), '--checkpoint',
                             str(write_tiny_checkpoint(root / 'tiny.pth')), '--work-dir', str(work_dir)],
                            cwd=REPO, capture_output=True, text=True, env=checkout_env(OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir, result.stdout + result.stderr


def test_progress_lines_name_the_segment_and_round(run) -> None:
    _, log = run
    for condition in CONDITIONS:
        assert f'{condition} round 1 | Iter(test) [1/{IMAGES_PER_CONDITION}]' in log


def test_per_class_table_is_logged_once_and_no_prefix_warning(run) -> None:
    _, log = run
    assert 'per class results' not in log, "mmseg's per-segment table is at debug level"
    assert log.count('IoU per class and condition, mean over rounds:') == 1
    assert 'The prefix is not set in metric class' not in log


def test_bank_events_record_round_segment_and_images(run) -> None:
    work_dir, _ = run
    events = [json.loads(line) for line in (work_dir / 'bank_events.jsonl').read_text().splitlines()]
    assert len(events) == len(CONDITIONS) * IMAGES_PER_CONDITION
    assert [event['batch_index'] for event in events] == list(range(len(events)))
    assert [event['segment'] for event in events[::IMAGES_PER_CONDITION]] == list(CONDITIONS)
    assert {event['round'] for event in events} == {1}
    assert all(len(event['images']) == 1 and event['images'][0].endswith('_rgb_anon.png') for event in events)
    assert Path(events[0]['images'][0]).parent.parent.name == 'train' and 'fog' in events[0]['images'][0]


def _records(rounds: int) -> list[dict]:
    return [dict(key=dict(condition=c, round=r), metrics=dict(mIoU=10.0 * r), num_images=1, seconds=1.0,
                 per_class=dict(road=50.0 + r, car=None)) for r in range(1, rounds + 1) for c in ('fog', 'night')]


def test_comparison_shows_round_columns_only_for_several_rounds() -> None:
    assert format_comparison({'tent': _records(1)}).splitlines()[0] == '| method | fog | night | mean | s/image |'
    assert format_comparison({'tent': _records(3)}).splitlines()[0] == \
        '| method | fog | night | round 1 | round 3 | mean | s/image |'


def test_class_table_means_over_rounds() -> None:
    lines = format_class_table(_records(2)).splitlines()
    assert lines[0].split() == ['class', 'fog', 'night', 'mean']
    assert lines[1].split() == ['road', '51.5', '51.5', '51.5'] and lines[2].split() == ['car', '-', '-', '-']
