"""The demo benchmark generator: layouts, labels, determinism, renderer directions and CLI errors.

Most tests run the generator on a reduced copy of ``data/camvid`` (a few frames of every sequence, two
frames per condition), so the whole module takes seconds.
"""
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import imse_seg  # noqa: F401  (before mmseg)
from imse_seg.demo import (CAMVID_TO_TRAINID, CONDITIONS, FogParams, NightParams, RainParams,
                           WeatherParams, ground_plane_depth, list_camvid, plan_demo, read_frame, render,
                           to_train_ids)
from mmseg.datasets import CityscapesDataset
from tool_module import load_tool

REPO = Path(__file__).resolve().parents[1]
CAMVID = REPO / 'data' / 'camvid'
TOOL = REPO / 'tools' / 'make_demo_data.py'
VALID_LABELS = set(CAMVID_TO_TRAINID.values()) | {255}
# (split, sequence) -> frames copied into the reduced CamVid folder
REDUCED = {('train', '0006R0'): 3, ('train', '0016E5'): 3, ('train', '0001TP'): 2, ('val', '0016E5'): 8,
           ('test', 'Seq05VD'): 6, ('test', '0001TP'): 2}
N = 2  # frames per condition on the reduced folder


make_demo_data = load_tool('make_demo_data')


def _reduce(dst: Path) -> Path:
    for split in ('train', 'val', 'test'):
        (dst / split).mkdir(parents=True)
        (dst / f'{split}annot').mkdir()
    for (split, sequence), count in REDUCED.items():
        for image in sorted((CAMVID / split).glob(f'{sequence}_*.jpg'))[:count]:
            shutil.copy(image, dst / split / image.name)
            shutil.copy(CAMVID / f'{split}annot' / f'{image.stem}.png', dst / f'{split}annot')
    return dst


@pytest.fixture(scope='module')
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _reduce(tmp_path_factory.mktemp('camvid'))


@pytest.fixture(scope='module')
def tree(camvid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp('demo') / 'demo'
    assert make_demo_data.main(['--camvid', str(camvid), '--out', str(out), '--seed', '0',
                                '--frames-per-condition', str(N)]) == 0
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)


@pytest.fixture(scope='module')
def street() -> tuple[np.ndarray, np.ndarray]:
    """A daylight Seq05VD frame with road, sidewalk, buildings, cars and sky, and its trainIds."""
    frame = next(f for f in list_camvid(CAMVID) if f.stem == 'Seq05VD_f00030')
    return read_frame(frame)


def test_shipped_camvid_copy_is_complete() -> None:
    frames = list_camvid(CAMVID)
    counts = {split: sum(f.split == split for f in frames) for split in ('train', 'val', 'test')}
    assert counts == {'train': 367, 'val': 101, 'test': 233}
    for frame in frames:  # every pair decodes, at 120 x 160, with CamVid ids only
        image, label = read_frame(frame)
        assert image.shape == (120, 160, 3) and label.shape == (120, 160)
    assert (CAMVID / 'README.md').is_file() and (CAMVID / 'NOTICE.md').is_file()


def test_class_mapping_to_cityscapes_train_ids() -> None:
    mapped = to_train_ids(np.arange(12, dtype=np.uint8))
    # Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist, void
    assert mapped.tolist() == [10, 2, 5, 0, 1, 8, 7, 4, 13, 11, 12, 255]


def test_regeneration_with_the_same_seed_is_bit_identical(camvid: Path, tree: Path, tmp_path: Path) -> None:
    again = tmp_path / 'again'
    command = [sys.executable, str(TOOL), '--camvid', str(camvid), '--out', str(again), '--seed', '0',
               '--frames-per-condition', str(N)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'acdc/train/fog: 2 frames' in result.stdout
    assert _files(again) == _files(tree)


def test_another_seed_changes_only_the_rendered_frames(camvid: Path, tree: Path, tmp_path: Path) -> None:
    other = tmp_path / 'other'
    assert make_demo_data.main(['--camvid', str(camvid), '--out', str(other), '--seed', '1',
                                '--frames-per-condition', str(N)]) == 0
    first, second = _files(tree), _files(other)
    assert first.keys() == second.keys()
    changed = {name for name in first if first[name] != second[name]}
    rendered = {name for name in first if name.startswith('rgb_anon/')}
    assert changed == rendered | {'manifest.json'}


def test_source_domain_reads_with_mmseg_cityscapes_dataset(tree: Path) -> None:
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
    sizes = {}
    for split in ('train', 'val', 'test'):
        dataset = CityscapesDataset(data_root=str(tree), pipeline=pipeline,
                                    data_prefix=dict(img_path=f'leftImg8bit/{split}',
                                                     seg_map_path=f'gtFine/{split}'))
        sizes[split] = len(dataset)
        sample = dataset[0]
        assert sample['img'].shape == (120, 160, 3)
        assert set(np.unique(sample['gt_seg_map'])) <= VALID_LABELS
    # train: 0006R0 + 0016E5 train frames only (no dusk); val: all val; test: clear fog/rain/snow frames
    assert sizes == {'train': 6, 'val': 8, 'test': 3 * N}
    assert not list((tree / 'leftImg8bit').rglob('0001TP_*'))


def test_target_and_tuning_streams_have_the_acdc_layout(tree: Path) -> None:
    manifest = json.loads((tree / 'manifest.json').read_text())
    assert (manifest['target_split'], manifest['tuning_split']) == ('train', 'val')
    for split, sequences in (('train', {'fog': 'Seq05VD', 'night': '0001TP', 'rain': 'Seq05VD',
                                        'snow': 'Seq05VD'}),
                             ('val', dict.fromkeys(CONDITIONS, '0016E5'))):
        for condition in CONDITIONS:
            images = sorted((tree / 'rgb_anon' / condition / split).glob('*/*_rgb_anon.png'))
            assert len(images) == N
            assert {p.parent.name for p in images} == {sequences[condition]}
            for image in images:
                name = image.name.replace('_rgb_anon.png', '_gt_labelTrainIds.png')
                gt = tree / 'gt' / condition / split / image.parent.name / name
                assert gt.is_file()
                assert cv2.imread(str(gt), cv2.IMREAD_UNCHANGED).shape == (120, 160)
            stems = [p.name.replace('_rgb_anon.png', '') for p in images]
            assert manifest['streams'][f'acdc/{split}/{condition}'] == stems


def test_streams_use_frames_the_source_never_saw(tree: Path) -> None:
    source = {p.name.replace('_leftImg8bit.png', '') for p in (tree / 'leftImg8bit' / 'train').rglob('*.png')}
    target = {p.name.replace('_rgb_anon.png', '') for p in (tree / 'rgb_anon').glob('*/train/*/*.png')}
    tuning = [p.name for p in (tree / 'rgb_anon').glob('*/val/*/*.png')]
    assert target and not source & target
    assert len(tuning) == len(set(tuning)) == 4 * N  # 8 val frames: each condition gets its own


def test_labels_hold_only_valid_train_ids(tree: Path) -> None:
    labels = list(tree.rglob('*_labelTrainIds.png'))
    assert len(labels) == 6 + 8 + 3 * N + 8 * N
    values = set()
    for path in labels:
        values |= set(np.unique(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)).tolist())
    assert values <= VALID_LABELS and 255 in values and {0, 2, 10, 13} <= values


def test_manifest_hashes_every_file(tree: Path) -> None:
    manifest = json.loads((tree / 'manifest.json').read_text())
    files = {name: data for name, data in _files(tree).items() if name != 'manifest.json'}
    assert manifest['files'] == {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def test_size_shrinks_frames_and_labels(camvid: Path, tmp_path: Path) -> None:
    out = tmp_path / 'small'
    assert make_demo_data.main(['--camvid', str(camvid), '--out', str(out), '--size', '60x80',
                                '--frames-per-condition', '1']) == 0
    image = cv2.imread(str(next((out / 'rgb_anon' / 'fog').rglob('*.png'))))
    label = cv2.imread(str(next((out / 'gtFine').rglob('*.png'))), cv2.IMREAD_UNCHANGED)
    assert image.shape == (60, 80, 3) and label.shape == (60, 80)
    assert set(np.unique(label)) <= VALID_LABELS


def test_plan_interleaves_conditions_over_the_sequence() -> None:
    items = plan_demo(list_camvid(CAMVID), 25)
    target = [i for i in items if i.layout == 'acdc' and i.split == 'train']
    fog = [i.frame.stem for i in target if i.condition == 'fog']
    rain = [i.frame.stem for i in target if i.condition == 'rain']
    assert len(fog) == len(rain) == 25 and not set(fog) & set(rain)
    assert fog == sorted(fog) and fog[0] == 'Seq05VD_f00000' and fog[-1] == 'Seq05VD_f04920'  # of f05100


# --- renderers: each changes the frame measurably and in the intended direction ---------------------

def test_ground_plane_depth_geometry() -> None:
    label = np.full((12, 4), 2, dtype=np.uint8)        # building
    label[:3] = 10                                      # sky on top
    label[8:] = 0                                       # road below row 8
    label[10:, 3] = 13                                  # a car at the bottom of the last column
    depth = ground_plane_depth(label, FogParams(horizon=0.5, max_depth_m=1000.0))
    assert np.isinf(depth[:3]).all()
    assert np.all(np.diff(depth[8:, 0]) < 0)                # the road nears the camera downwards
    assert np.allclose(depth[3:8, 0], depth[8, 0])          # the building stands where it meets the road
    assert np.allclose(depth[10:, 3], depth[10:, 0])        # nothing below the car: its own row's depth


def test_fog_brightens_lowers_contrast_and_grows_with_depth(street: tuple) -> None:
    image, label = street
    foggy = render('fog', image, label, np.random.default_rng(0))
    assert _luma(foggy).mean() > _luma(image).mean() + 5
    assert _luma(foggy).std() < 0.8 * _luma(image).std()
    depth = ground_plane_depth(label)
    change = np.abs(foggy.astype(float) - image).mean(axis=2)
    near, far = depth < np.percentile(depth, 25), np.isfinite(depth) & (depth > 50)
    assert change[far].mean() > 2 * change[near].mean()


def test_night_darkens_to_the_target_luma_with_noise_and_lights(street: tuple) -> None:
    image, label = street
    params = NightParams(target_luma=(30.0, 30.0), lights=0.0, shot_noise=0.0, read_noise=0.0)
    dark = render('night', image, label, np.random.default_rng(0), WeatherParams(night=params))
    assert abs(_luma(dark).mean() - 30.0) < 1.5 and _luma(image).mean() > 90
    noisy = render('night', image, label, np.random.default_rng(0),
                   WeatherParams(night=NightParams(target_luma=(30.0, 30.0))))
    lit_pixels = (_luma(noisy) > 200).sum()
    assert lit_pixels > 0 and (_luma(dark) > 200).sum() == 0
    flat = np.full((60, 80, 3), 120, dtype=np.uint8)
    grain = render('night', flat, np.full((60, 80), 0, dtype=np.uint8), np.random.default_rng(0))
    assert _luma(grain).std() > 2


def test_rain_adds_streaks_and_dims(street: tuple) -> None:
    image, label = street
    streaks_only = RainParams(haze_beta=(0.0, 0.0), lens_drops=None, blur=1, brightness=1.0)
    rainy = render('rain', image, label, np.random.default_rng(0), WeatherParams(rain=streaks_only))
    changed = np.abs(rainy.astype(int) - image).max(axis=2) > 0
    assert 0.01 < changed.mean() < 0.5 and (rainy[changed] >= image[changed]).all()
    dimmed = render('rain', image, label, np.random.default_rng(0),
                    WeatherParams(rain=RainParams(brightness=0.7, lens_drops=None)))
    assert np.median(_luma(dimmed)) < np.median(_luma(image))
    full = render('rain', image, label, np.random.default_rng(0))
    assert np.abs(full.astype(float) - image).mean() > 8


def test_snow_whitens(street: tuple) -> None:
    image, label = street
    snowy = render('snow', image, label, np.random.default_rng(0))
    assert _luma(snowy).mean() > _luma(image).mean() + 20
    white = (snowy.min(axis=2) > 240).mean()
    assert white > (image.min(axis=2) > 240).mean() + 0.02


def test_renderers_are_deterministic_and_keep_shape(street: tuple) -> None:
    image, label = street
    for condition in CONDITIONS:
        first = render(condition, image, label, np.random.default_rng(7))
        second = render(condition, image, label, np.random.default_rng(7))
        assert first.dtype == np.uint8 and first.shape == image.shape
        assert np.array_equal(first, second)
        assert not np.array_equal(first, render(condition, image, label, np.random.default_rng(8)))


def test_render_rejects_bad_input(street: tuple) -> None:
    image, label = street
    with pytest.raises(ValueError, match='unknown condition'):
        render('hail', image, label, np.random.default_rng(0))
    with pytest.raises(ValueError, match='uint8'):
        render('fog', image.astype(np.float32), label, np.random.default_rng(0))
    with pytest.raises(ValueError, match='does not match'):
        render('fog', image, label[:-1], np.random.default_rng(0))


# --- CLI errors -------------------------------------------------------------------------------------

def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    status = make_demo_data.main(list(argv))
    return status, capsys.readouterr().err


def test_missing_camvid_folder_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status, err = _run(capsys, '--camvid', str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'out'))
    assert status == 2 and 'nowhere does not exist' in err
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('damage, message', [
    (lambda root: shutil.rmtree(root / 'valannot'), 'no valannot folder'),
    (lambda root: next((root / 'test').glob('*.jpg')).unlink(), 'lack an image or a label'),
    (lambda root: [p.unlink() for p in root.glob('test*/Seq05VD_*')], 'no frame of Seq05VD'),
])
def test_incomplete_camvid_folder_is_a_clear_error(camvid: Path, tmp_path: Path, capsys, damage,
                                                   message) -> None:
    broken = tmp_path / 'camvid'
    shutil.copytree(camvid, broken)
    damage(broken)
    status, err = _run(capsys, '--camvid', str(broken), '--out', str(tmp_path / 'out'))
    assert status == 2 and message in err
    assert not (tmp_path / 'out').exists()


def test_undecodable_image_is_named_and_leaves_nothing(camvid: Path, tmp_path: Path, capsys) -> None:
    broken = tmp_path / 'camvid'
    shutil.copytree(camvid, broken)
    bad = sorted((broken / 'val').glob('*.jpg'))[0]
    bad.write_bytes(b'not a jpeg')
    status, err = _run(capsys, '--camvid', str(broken), '--out', str(tmp_path / 'out'),
                       '--frames-per-condition', '1')
    assert status == 2 and f'cannot decode {bad}' in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['camvid']


def test_bad_arguments_are_refused(camvid: Path, tmp_path: Path, capsys) -> None:
    status, err = _run(capsys, '--camvid', str(camvid), '--out', str(tmp_path / 'a'),
                       '--frames-per-condition', '7')
    assert status == 2 and 'cannot take 7 frames per condition from the 6 frames of Seq05VD' in err
    status, err = _run(capsys, '--camvid', str(camvid), '--out', str(tmp_path / 'b'), '--size', '240x320',
                       '--frames-per-condition', '1')
    assert status == 2 and 'exceeds the copied frames' in err
    with pytest.raises(SystemExit):
        make_demo_data.main(['--size', '120by160'])
    assert 'expected HxW' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        make_demo_data.main(['--seed', '-1'])
    assert 'non-negative' in capsys.readouterr().err


def test_non_empty_out_needs_force_and_a_manifest(camvid: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / 'demo'
    out.mkdir()
    (out / 'keep.txt').write_text('mine')
    args = ['--camvid', str(camvid), '--out', str(out), '--frames-per-condition', '1']
    status, err = _run(capsys, *args)
    assert status == 2 and 'pass --force' in err
    status, err = _run(capsys, *args, '--force')
    assert status == 2 and 'no manifest.json' in err
    assert (out / 'keep.txt').read_text() == 'mine'
    (out / 'keep.txt').unlink()
    assert _run(capsys, *args)[0] == 0                        # an empty folder is filled
    status, err = _run(capsys, *args)
    assert status == 2 and 'pass --force' in err
    (out / 'stale.txt').write_text('old')
    assert _run(capsys, *args, '--force')[0] == 0             # a previous tree is replaced whole
    assert not (out / 'stale.txt').exists() and (out / 'manifest.json').is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['demo']
