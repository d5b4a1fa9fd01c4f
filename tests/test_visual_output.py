"""Issue 20, item 1: ``tools/adapt.py --show-dir/--out`` (and mmseg's own ``tools/test.py --show-dir``) write one
file per image, segment and round of the stream, drawn by mmseg's visualiser; nothing of round 1 is overwritten."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import cv2
import mmseg
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.visualization import Visualizer
from mmseg.visualization import SegLocalVisualizer
from PIL import Image

from acdc_fixture import CONDITIONS, IMAGE_SHAPE, write_acdc_tree, write_config, write_tiny_checkpoint
from imse_seg.cli import exit_with
from imse_seg.errors import ConfigError
from imse_seg.seg.run import RunOptions, configure
from tool_module import load_tool

ADAPT = load_tool('adapt')
IMAGES = 2
ROUNDS = 2
MMSEG_TEST_SCRIPT = Path(mmseg.__file__).parent / '.mim' / 'tools' / 'test.py'


@pytest.fixture(scope='module')
def stream(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('visual')
    data = write_acdc_tree(root / 'acdc', images_per_condition=IMAGES)
    return dict(root=root, data=data, checkpoint=write_tiny_checkpoint(root / 'tiny.pth'),
                config=write_config(root / 'source.py', data, 'source', rounds=ROUNDS))


def adapt(stream: dict, name: str, *options: str) -> Path:
    """``tools/adapt.py`` on the stream in this process, into ``root/name``; that folder."""
    folder = stream['root'] / name
    status = ADAPT.main([str(stream['config']), '--checkpoint', str(stream['checkpoint']), '--work-dir',
                         str(folder / 'work'), *[option.replace('{}', str(folder)) for option in options]])
    assert status == 0
    return folder


@pytest.fixture(scope='module')
def outputs(stream) -> Path:
    return adapt(stream, 'both', '--show-dir', '{}/show', '--out', '{}/out')


def stems(stream: dict, condition: str) -> list[str]:
    return sorted(path.stem for path in (stream['data'] / 'rgb_anon' / condition).rglob('*_rgb_anon.png'))


def written(folder: Path) -> dict[tuple[int, str], list[str]]:
    """``{(round, segment): [image stems]}`` of ``folder/round_<r>/<segment>/*.png``."""
    found: dict[tuple[int, str], list[str]] = {}
    for path in sorted(folder.glob('round_*/*/*.png')):
        found.setdefault((int(path.parent.parent.name.split('_')[1]), path.parent.name), []).append(path.stem)
    return found


def test_show_dir_draws_ground_truth_and_prediction_of_every_image_of_every_round(stream, outputs) -> None:
    expected = {(r, c): stems(stream, c) for r in range(1, ROUNDS + 1) for c in CONDITIONS}
    assert written(outputs / 'show') == expected
    height, width = IMAGE_SHAPE
    for path in (outputs / 'show').rglob('*.png'):
        drawing = cv2.imread(str(path))
        assert drawing.shape == (height, 2 * width, 3), 'mmseg draws the ground truth and the prediction side by side'
        source = cv2.imread(str(next(stream['data'].rglob(f'{path.stem}.png'))))
        assert not np.array_equal(drawing[:, :width], source), 'the ground truth is overlaid'


def test_out_writes_each_prediction_as_a_label_index_map(stream, outputs) -> None:
    maps = outputs / 'out'
    assert written(maps) == {(r, c): stems(stream, c) for r in range(1, ROUNDS + 1) for c in CONDITIONS}
    for path in maps.glob('round_1/*/*.png'):
        first = np.array(Image.open(path))
        assert first.shape == IMAGE_SHAPE and first.dtype == np.uint8
        assert set(np.unique(first).tolist()) <= set(range(19)) | {255}
        second = np.array(Image.open(maps / 'round_2' / path.parent.name / path.name))
        assert np.array_equal(first, second), 'the source model predicts the same in both rounds'


def test_show_interval_draws_every_kth_batch_of_each_segment(stream) -> None:
    folder = adapt(stream, 'half', '--show-dir', '{}/show', '--show-interval', '2')
    assert written(folder / 'show') == {(r, c): stems(stream, c)[1::2] for r in range(1, ROUNDS + 1)
                                        for c in CONDITIONS}


def test_mmseg_test_script_show_dir_names_drawings_by_segment_and_round(stream, monkeypatch) -> None:
    if not MMSEG_TEST_SCRIPT.is_file():
        pytest.skip(f'mmseg installed without its tools ({MMSEG_TEST_SCRIPT})')
    show = stream['root'] / 'mmseg_show'
    # In this process, as `python tools/test.py ...` runs it; the visualiser gets a name of its own, since
    # mmengine hands a second runner the first one's visualiser (and save dir) of the same name.
    monkeypatch.setattr(sys, 'argv', [str(MMSEG_TEST_SCRIPT), str(stream['config']), str(stream['checkpoint']),
                                      '--work-dir', str(stream['root'] / 'mmseg_work'), '--show-dir', str(show),
                                      '--cfg-options', 'default_hooks.visualization.interval=1',
                                      'visualizer.name=mmseg_test_script'])
    try:
        runpy.run_path(str(MMSEG_TEST_SCRIPT), run_name='__main__')
    finally:   # later runners in this process draw with their own visualiser again
        for manager in (Visualizer, SegLocalVisualizer):
            manager._instance_dict.pop('mmseg_test_script', None)
    names = sorted(path.name for path in (show / 'vis_data' / 'vis_image').glob('*.png'))
    assert names == sorted(f'{c}_{stem}_{r}.png' for r in range(1, ROUNDS + 1) for c in CONDITIONS
                           for stem in stems(stream, c))


def test_show_interval_without_show_dir_is_one_line(stream, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        exit_with(lambda: ADAPT.main([str(stream['config']), '--dry-run', '--show-interval', '2']))
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == \
        'error: --show-interval needs --show-dir: it says which images are drawn there'


def test_mmseg_visualisation_hook_that_would_overwrite_rounds_is_refused(stream) -> None:
    cfg = Config.fromfile(str(stream['config']))
    cfg.default_hooks.visualization = dict(type='SegVisualizationHook')
    with pytest.raises(ConfigError, match="needs default_hooks.visualization to be a StreamVisualizationHook, not "
                                          "SegVisualizationHook, which would overwrite each round's drawings"):
        configure(cfg, 'source', RunOptions(show_dir='show'))
