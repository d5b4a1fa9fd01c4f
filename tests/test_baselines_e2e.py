"""The baselines of issue 17 through the real loops: tools/adapt.py on a tiny ACDC tree, the classifier stream."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from timm.data import create_transform, resolve_model_data_config

from acdc_fixture import CONDITIONS, IMAGES_PER_CONDITION, write_acdc_tree, write_config, write_tiny_checkpoint
from imse_seg.cls.adaptive_classifier import AdaptiveClassifier
from imse_seg.cls.data import CorruptionFolders
from imse_seg.cls.loop import run_stream
from imse_seg.cls.model import build_classifier
from imse_seg.cls.streams import build_stream
from imse_seg.registry import build_adaptation
from imse_seg.reporting import ResultsWriter, load_results
from test_adapt_e2e import mmseg_reference_miou
from test_cls_runner import CLASSES, config, tree  # noqa: F401  (tree: that module's fixture)
from tool_module import load_tool

# The reference learning rates are for real models over long streams; 12 images of a random model need
# larger ones to move any prediction.
LARGE_LR = {'sar': ['custom_hooks.0.method.optimizer.lr=0.05'],
            'vida': ['custom_hooks.0.method.optimizer.lr=0.01', 'custom_hooks.0.method.adapter_lr=0.05']}


@pytest.fixture(scope='module')
def stream(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('baselines')
    stream = dict(root=root, data=write_acdc_tree(root / 'acdc'), checkpoint=write_tiny_checkpoint(root / 'tiny.pth'))
    stream['source'] = mmseg_reference_miou(stream)
    return stream


def adapt(stream: dict, method: str, *args: str) -> list[dict]:
    """tools/adapt.py in this process (an mmseg import per run would cost more than the run); its records."""
    config_file = write_config(stream['root'] / f'{method}.py', stream['data'], method, rounds=1)
    work_dir = stream['root'] / method
    options = ['--cfg-options', *LARGE_LR[method]] if method in LARGE_LR else []
    status = load_tool('adapt').main([str(config_file), '--checkpoint', str(stream['checkpoint']), '--work-dir',
                                      str(work_dir), *args, *options])
    assert status == 0
    return [json.loads(line) for line in (work_dir / 'results.jsonl').read_text().splitlines()]


@pytest.mark.parametrize('method', ['bn_stats', 'sar', 'vida'])
def test_segmentation_baselines_run_and_change_predictions(stream, method) -> None:
    records = adapt(stream, method)
    assert [r['key']['condition'] for r in records] == list(CONDITIONS)
    assert all(r['num_images'] == IMAGES_PER_CONDITION for r in records)
    source = stream['source']
    changed = [r for r in records if r['metrics']['mIoU'] != pytest.approx(source[r['key']['condition']], abs=1e-9)]
    assert changed, f'{method} left every segment identical to the source model'
    if method == 'vida':   # the stream checkpoint (adapters, teacher) passes the fingerprint and loads
        assert adapt(stream, method, '--resume') == records


def stream_classifier(cfg: dict, work_dir: Path) -> AdaptiveClassifier:
    """:func:`~imse_seg.cls.runner.run_classification`'s stream, returning the adapted classifier."""
    stream = build_stream(cfg['stream'])
    folders = CorruptionFolders(cfg['data']['source']['root'], stream.folders())
    model = build_classifier(**cfg['model'])
    transform = create_transform(**resolve_model_data_config(model, args=dict(cfg['transform'])))
    classifier = AdaptiveClassifier(model, build_adaptation(cfg['method']))
    run_stream(classifier, stream.blocks(folders), transform, ResultsWriter(work_dir),
               batch_size=cfg['data']['batch_size'], load=folders.load)
    return classifier


# A random tiny ViT is unsure of every image: SAR's margin is widened to ln K so that its samples count.
@pytest.mark.parametrize('method, overrides', [
    ('sar', dict(optimizer=dict(type='SGD', lr=0.5, momentum=0.9), margin=1.0)),
    ('vida', dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9), adapter_lr=0.5, teacher_momentum=0.5,
                  adapter_momentum=0.5))])
def test_classification_sar_and_vida_run_and_change_predictions(tree, tmp_path, method,  # noqa: F811
                                                                overrides) -> None:
    cfg = config(tree, method)
    cfg['method'] = dict(cfg['method'], **overrides)
    classifier = stream_classifier(cfg, tmp_path / method)
    assert len(load_results(tmp_path / method)) == 2
    source = build_classifier(**cfg['model'])
    probe = torch.randn(4, 3, 16, 16)
    assert not torch.allclose(classifier.method.predict(classifier.model, probe), source(probe))


def test_classification_bn_statistics_on_a_batch_norm_model(tree, tmp_path) -> None:  # noqa: F811
    model = dict(name='mobilenetv3_small_050', num_classes=len(CLASSES))
    torch.manual_seed(0)
    classifier = build_classifier(**model)
    with torch.no_grad():   # source moments unlike the test images', as after training on other data
        for module in classifier.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
    save_file(classifier.state_dict(), str(tmp_path / 'mobilenet.safetensors'))
    accuracy = {}
    for name, method in (('source', dict(type='Source')),
                         ('bn_stats', dict(type='NormStatisticsAdaptation', statistics=dict(type='TestStatistics')))):
        cfg = config(tree, 'source', model=dict(model, checkpoint=str(tmp_path / 'mobilenet.safetensors')))
        cfg['method'] = method
        stream_classifier(cfg, tmp_path / name)
        accuracy[name] = [r['metrics']['accuracy'] for r in load_results(tmp_path / name)]
    assert accuracy['bn_stats'] != accuracy['source']
