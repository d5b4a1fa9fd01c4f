"""The classification demo: shipped source checkpoint, digits splits and the ImageNet-C-layout writer."""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image
from timm.data import create_transform, resolve_model_data_config

from imse_seg.cls.adaptive_classifier import AdaptiveClassifier
from imse_seg.cls.cifar10c import CORRUPTIONS, EXTRA_CORRUPTIONS
from imse_seg.cls.data import CorruptionFolders
from imse_seg.cls.demo_digits import CLASS_NAMES, SPLITS, digits_split, write_imagenet_c
from imse_seg.cls.model import build_classifier
from imse_seg.cls.runner import run_classification, with_bank_batch_size
from imse_seg.cls.streams import build_stream
from imse_seg.registry import build_adaptation
from imse_seg.reporting import load_results

REPO = Path(__file__).resolve().parents[1]
MODEL = Config.fromfile(REPO / 'configs/cls/_base_/models/vit_digits.py')


def demo_model() -> torch.nn.Module:
    return build_classifier(**dict(MODEL.model, checkpoint=str(REPO / MODEL.model.checkpoint)))


def test_splits_are_disjoint_and_cover_the_bundled_digits():
    sizes = {name: len(digits_split(name)[1]) for name in SPLITS}
    assert sizes == {'train': 1000, 'tune': 300, 'test': 497}
    images, labels = digits_split('test')
    assert images.shape == (497, 32, 32, 3) and images.dtype == np.uint8
    assert set(labels.tolist()) == set(range(10))


def test_shipped_checkpoint_is_small_and_accurate_on_clean_test_digits():
    path = REPO / MODEL.model.checkpoint
    assert path.stat().st_size < 5e6
    model = demo_model()
    transform = create_transform(**resolve_model_data_config(model, args=dict(MODEL.transform)))
    images, labels = (part[:200] for part in digits_split('test'))
    inputs = torch.stack([transform(Image.fromarray(image)) for image in images])
    with torch.no_grad():
        accuracy = (model(inputs).argmax(1).numpy() == labels).mean()
    assert accuracy > 0.95


def test_writer_produces_the_imagenet_c_layout(tmp_path):
    count = write_imagenet_c(tmp_path, 'tune', ['gaussian_noise', 'fog'], [1, 5])
    assert count == 2 * 2 * 300
    folders = CorruptionFolders(tmp_path, [('gaussian_noise', 1), ('fog', 5)])
    assert folders.classes == list(CLASS_NAMES)
    samples = folders('fog', 5)
    assert len(samples) == 300 and all(Path(path).suffix == '.png' for path, _ in samples)


@pytest.mark.parametrize('config', sorted(p.name for p in (REPO / 'configs/cls').glob('demo_*.py')))
def test_demo_configs_build_their_method_on_the_demo_model(config):
    cfg = Config.fromfile(REPO / 'configs/cls' / config)
    assert cfg.model.checkpoint == MODEL.model.checkpoint
    method = with_bank_batch_size(cfg.method.to_dict(), cfg.data.batch_size)
    classifier = AdaptiveClassifier(demo_model(), build_adaptation(method))
    assert classifier(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize('setting', sorted(p.name for p in (REPO / 'configs/cls/_base_/settings').glob('*.py')))
def test_setting_configs_build_their_stream(setting):
    cfg = Config.fromfile(REPO / 'configs/cls/_base_/settings' / setting)
    corruptions = {corruption for corruption, _ in build_stream(cfg.stream).folders()}
    # the CIFAR-10-C tuning stream holds the 4 extra corruptions, every other setting the 15 test ones
    assert corruptions == set(EXTRA_CORRUPTIONS if setting == 'cifar10c_tune.py' else CORRUPTIONS)


def test_source_run_equals_a_plain_forward_and_corruption_costs_accuracy(tmp_path):
    """The source row is the shipped model's own accuracy on the written corrupted images (an independent
    forward over the same files, not a number the runner once printed), and severity-5 noise costs it
    accuracy (clean test digits: > 95%, see above)."""
    corruptions = ['gaussian_noise', 'shot_noise']
    write_imagenet_c(tmp_path, 'test', corruptions, [5])
    cfg = Config.fromfile(REPO / 'configs/cls/demo_source.py')
    cfg.model.checkpoint = str(REPO / cfg.model.checkpoint)
    cfg.data.source.root = str(tmp_path)
    cfg.stream.corruptions = corruptions
    run_classification(cfg, tmp_path / 'run')
    accuracy = [r['metrics']['accuracy'] for r in load_results(tmp_path / 'run')]

    model = demo_model().eval()
    transform = create_transform(**resolve_model_data_config(model, args=dict(cfg.transform)))
    folders = CorruptionFolders(tmp_path, [(name, 5) for name in corruptions])
    expected = []
    for name in corruptions:
        samples = folders(name, 5)
        inputs = torch.stack([transform(Image.open(path).convert('RGB')) for path, _ in samples])
        with torch.no_grad():
            predictions = model(inputs).argmax(1)
        labels = torch.tensor([label for _, label in samples])
        expected.append(100.0 * (predictions == labels).double().mean().item())
    assert accuracy == pytest.approx(expected, abs=1e-9)
    assert all(value < 90.0 for value in accuracy)
