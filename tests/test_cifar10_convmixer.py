"""The CIFAR-10 benchmark's pieces: the published ConvMixer read strictly into timm's, its clean accuracy
through the project's pipeline, the CIFAR-10-C array source, BN statistics beating the source on noise,
and CoTTA's classification code (views, teacher rule, EMA)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from imse_seg.checkpoint import CheckpointError
from imse_seg.cls.cifar10c_writer import corrupt_images, read_cifar10_test
from imse_seg.cls.convmixer import SequentialConvMixerKeys
from imse_seg.cls.cotta import ClassificationCoTTA, CoTTAViews
from imse_seg.cls.data import CorruptionArrays
from imse_seg.cls.model import build_classifier
from imse_seg.cls.runner import run_classification
from imse_seg.cls.adaptive_classifier import classifier_logits
from imse_seg.reporting import load_results
from imse_seg.third_party import CIFAR10_TEST, CONVMIXER_CIFAR10
from shared_files import shared_path

REPO = Path(__file__).resolve().parents[1]
MODEL = dict(name='convmixer_256_8_k9_p4', num_classes=10, checkpoint_keys=dict(type='SequentialConvMixerKeys'))


@pytest.fixture(scope='module')
def published() -> Path:
    return shared_path(CONVMIXER_CIFAR10)


def test_the_published_sequential_checkpoint_maps_onto_timm_strictly(published: Path) -> None:
    state = torch.load(published, map_location='cpu', weights_only=True)
    renamed = SequentialConvMixerKeys(depth=8)(state)
    model = build_classifier(**MODEL, checkpoint=str(published))
    assert set(renamed) == set(model.state_dict())            # every key placed, none left over
    assert torch.equal(model.state_dict()['blocks.3.1.weight'], state['module.6.1.weight'])
    assert torch.equal(model.state_dict()['head.weight'], state['module.13.weight'])
    with pytest.raises(CheckpointError, match=r"not those of a sequential ConvMixer of depth 8 .*: module\.11\.w"):
        SequentialConvMixerKeys(depth=8)({**state, 'module.11.weight': torch.zeros(1)})
    with pytest.raises(CheckpointError, match='stem.0.weight'):   # a timm-named file is not this layout
        SequentialConvMixerKeys(depth=8)(renamed)


def test_the_clean_accuracy_through_the_pipeline_is_the_published_models(tmp_path: Path) -> None:
    """86.85 % on the JPEG copies of the CIFAR-10 test set (measured with ToTensor + Normalize(0.5, 0.5),
    the shared folder's README), here through the config, the data source, timm's transform and the loop."""
    shared_path(CIFAR10_TEST)
    cfg = Config.fromfile(REPO / 'configs/cls/cifar10_clean_source.py')
    summary = run_classification(cfg, tmp_path / 'clean')
    assert summary['accuracy'] == pytest.approx(86.85, abs=0.1)
    assert [r['num_images'] for r in load_results(tmp_path / 'clean')] == [10000]


def write_arrays(root: Path, corruptions: dict[str, np.ndarray], labels: np.ndarray) -> Path:
    """``corruptions``' (N, H, W, 3) images as 5 identical severities in RobustBench's layout."""
    root.mkdir(parents=True, exist_ok=True)
    for name, images in corruptions.items():
        np.save(root / f'{name}.npy', np.concatenate([images] * 5))
    np.save(root / 'labels.npy', np.concatenate([labels] * 5).astype(np.uint8))
    return root


def test_the_array_source_checks_its_files_and_spaces_a_subset_evenly(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(10), 10)                      # class-sorted, as the generated files
    images = np.zeros((100, 4, 4, 3), dtype=np.uint8) + labels[:, None, None, None].astype(np.uint8)
    root = write_arrays(tmp_path / 'c', {'fog': images}, labels)
    with pytest.raises(FileNotFoundError, match=r'1 array file\(s\) missing .*tools/make_cifar10c.py.*snow\.npy'):
        CorruptionArrays(root, [('fog', 5), ('snow', 5)])
    with pytest.raises(ValueError, match='severities are 1-5'):
        CorruptionArrays(root, [('fog', 0)])
    np.save(root / 'bad.npy', np.zeros((10, 4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r'bad\.npy is uint8 \(10, 4, 4, 3\), expected uint8 \(500, H, W, 3\)'):
        CorruptionArrays(root, [('bad', 1)])
    source = CorruptionArrays(root, [('fog', 3)], images_per_severity=20)
    samples = source('fog', 3)
    assert [label for _, label in samples] == [k for k in range(10) for _ in range(2)]   # balanced subset
    assert samples[0][0] == 'fog:200' and source.classes == [str(k) for k in range(10)]
    item, label = samples[7]
    assert np.asarray(source.load(item))[0, 0, 0] == label


def noisy_cifar(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` shuffled CIFAR-10 test images with CIFAR-10-C's severity-5 Gaussian noise (the generator's)."""
    images, labels = read_cifar10_test(shared_path(CIFAR10_TEST))
    chosen = np.random.default_rng(seed).permutation(len(labels))[:count]
    return corrupt_images(images[chosen], 'gaussian_noise', 5, seed), labels[chosen]


def test_test_batch_moments_beat_the_source_on_noise(tmp_path: Path) -> None:
    """The literature's first CTTA finding, on the published model: with BatchNorm normalising by the test
    batch's moments, severity-5 Gaussian noise costs far less accuracy (issue 22's probe: 50.0 -> 67.2)."""
    images, labels = noisy_cifar(400)
    root = write_arrays(tmp_path / 'c10c', {'gaussian_noise': images}, labels)
    accuracy = {}
    for method in ('source', 'bn_stats'):
        cfg = Config.fromfile(REPO / f'configs/cls/cifar10c_{method}.py')
        cfg.data.source.root = str(root)
        cfg.stream.corruptions = ['gaussian_noise']
        accuracy[method] = run_classification(cfg, tmp_path / method)['accuracy']
    assert accuracy['bn_stats'] > accuracy['source'] + 8, accuracy


IDENTITY = dict(brightness=(1, 1), contrast=(1, 1), saturation=(1, 1), hue=(0, 0), gamma=(1, 1), degrees=0.0,
                translate=0.0, scale=(1, 1), blur_sigma=(1e-6, 1e-6), flip_probability=0.0, noise_std=0.0)


def test_cotta_views_are_random_per_generator_and_the_identity_when_their_ranges_are() -> None:
    images = torch.rand(4, 3, 32, 32)
    assert torch.allclose(CoTTAViews(**IDENTITY)(images, torch.Generator().manual_seed(0)), images, atol=1e-5)
    views = CoTTAViews()
    first = views(images, torch.Generator().manual_seed(1))
    assert torch.equal(first, views(images, torch.Generator().manual_seed(1)))
    assert not torch.allclose(first, views(images, torch.Generator().manual_seed(2)))
    assert first.shape == images.shape and (first - images).abs().mean() > 0.01


def tiny_model() -> torch.nn.Module:
    return build_classifier('convmixer_256_8_k9_p4', 10, dim=16, depth=2).eval()


def cotta(model: torch.nn.Module, **kwargs) -> ClassificationCoTTA:
    method = ClassificationCoTTA(optimizer=dict(type='Adam', lr=1e-2), statistics=dict(type='TestStatistics'),
                                 **kwargs)
    method.setup(model, classifier_logits)
    return method


def test_cotta_uses_the_views_only_when_the_anchor_is_unsure() -> None:
    torch.manual_seed(0)
    inputs = torch.rand(8, 3, 32, 32) * 2 - 1                  # images in [0, 1], normalised by 0.5, 0.5
    sure = cotta(tiny_model(), confidence=0.0)                  # any confidence clears the threshold
    assert torch.equal(sure.teacher_logits(inputs), classifier_logits(sure.teacher, inputs))
    unsure = cotta(tiny_model(), confidence=1.01, num_views=3)
    averaged = unsure.teacher_logits(inputs)
    assert not torch.allclose(averaged, classifier_logits(unsure.teacher, inputs))
    identity = cotta(tiny_model(), confidence=1.01, num_views=3, views=IDENTITY)
    assert torch.allclose(identity.teacher_logits(inputs), classifier_logits(identity.teacher, inputs), atol=1e-4)


def test_cotta_scores_the_teacher_and_the_teacher_follows_the_student_by_ema() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    method = cotta(model, confidence=0.0, restore_probability=0.0, ema=0.9)
    source = {name: p.detach().clone() for name, p in model.named_parameters()}
    inputs = torch.randn(8, 3, 32, 32)
    expected = classifier_logits(method.teacher, inputs).softmax(dim=1).log()
    scored = method.adapt(model, inputs)
    assert torch.allclose(scored, expected, atol=1e-6)
    student = dict(model.named_parameters())
    assert any(not torch.equal(student[name], source[name]) for name in source)
    for name, teacher in method.teacher.named_parameters():
        assert torch.allclose(teacher, 0.9 * source[name] + 0.1 * student[name], atol=1e-6)
