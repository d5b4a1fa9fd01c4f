"""tools/adapt.py end to end on a tiny ACDC tree (issue 5): every method, results, source exactness."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from acdc_fixture import CONDITIONS, IMAGES_PER_CONDITION, REPO, TINY_SEGMENTOR, write_acdc_tree, \
    write_config, write_tiny_checkpoint

ROUNDS = 2


@pytest.fixture(scope='module')
def stream(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('stream')
    return dict(root=root, data=write_acdc_tree(root / 'acdc'),
                checkpoint=write_tiny_checkpoint(root / 'tiny.pth'))


def adapt(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / 'tools' / 'adapt.py'), str(config), *args],
                          capture_output=True, text=True, cwd=REPO, check=False)


def run_method(stream: dict, method: str, *options: str) -> list[dict]:
    work_dir = stream['root'] / f'work_{method}'
    config = write_config(stream['root'] / f'{method}.py', stream['data'], method, rounds=ROUNDS)
    result = adapt(config, '--checkpoint', str(stream['checkpoint']), '--work-dir', str(work_dir), *options)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (work_dir / 'results.jsonl').read_text().splitlines()
    return [json.loads(line) for line in lines]


def mmseg_reference_miou(stream: dict) -> dict[str, float]:
    """mmseg's own evaluation (the segmentor's test_step + IoUMetric), condition by condition."""
    from mmengine.config import ConfigDict
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from mmseg.evaluation import IoUMetric
    from mmseg.registry import DATASETS, MODELS
    init_default_scope('mmseg')
    model = MODELS.build(ConfigDict(TINY_SEGMENTOR)).eval()
    load_checkpoint(model, str(stream['checkpoint']), map_location='cpu')
    pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(128, 64), keep_ratio=True),
                dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
    results = {}
    for condition in CONDITIONS:
        dataset = DATASETS.build(dict(type='ACDCDataset', data_root=str(stream['data']), condition=condition,
                                      pipeline=pipeline))
        metric = IoUMetric()
        metric.dataset_meta = dataset.metainfo
        for index in range(len(dataset)):
            batch = pseudo_collate([dataset[index]])
            with torch.no_grad():
                metric.process(batch, [s.to_dict() for s in model.test_step(batch)])
        results[condition] = metric.evaluate(len(dataset))['mIoU']
    return results


def test_source_reproduces_mmseg_evaluation(stream) -> None:
    records = run_method(stream, 'source')
    assert [(r['key']['condition'], r['key']['round']) for r in records] == \
        [(c, r) for r in range(1, ROUNDS + 1) for c in CONDITIONS]
    reference = mmseg_reference_miou(stream)
    for record in records:
        assert record['metrics']['mIoU'] == pytest.approx(reference[record['key']['condition']], abs=1e-9)
        assert record['num_images'] == IMAGES_PER_CONDITION and record['num_skipped'] == 0
        assert set(record['per_class']) >= {'road', 'sky', 'car'}
    csv_rows = (stream['root'] / 'work_source' / 'results.csv').read_text().splitlines()
    assert len(csv_rows) == 1 + len(CONDITIONS) * ROUNDS


@pytest.mark.parametrize('method', ['tent', 'tent_stag', 'imse', 'imse_stag', 'cotta', 'tent_published'])
def test_adaptive_methods_run_and_change_predictions(stream, method) -> None:
    # The reference learning rates are for real models over long streams; 24 images of a random model
    # need a larger one to move any prediction.
    records = run_method(stream, method, '--cfg-options', 'custom_hooks.0.method.optimizer.lr=0.05')
    assert len(records) == len(CONDITIONS) * ROUNDS
    source = {(r['key']['condition'], r['key']['round']): r['metrics']['mIoU']
              for r in run_method_cached(stream, 'source')}
    assert all(r['metrics']['mIoU'] is not None for r in records)
    changed = [r for r in records
               if r['metrics']['mIoU'] != source[(r['key']['condition'], r['key']['round'])]]
    assert changed, f'{method} left every segment identical to the source model'
    work_dir = stream['root'] / f'work_{method}'
    assert (work_dir / 'miou_stream.png').stat().st_size > 10_000
    if method.startswith('imse'):
        events = [json.loads(line) for line in (work_dir / 'bank_events.jsonl').read_text().splitlines()]
        assert [e['batch_index'] for e in events] == list(range(len(CONDITIONS) * ROUNDS * IMAGES_PER_CONDITION))


_CACHE: dict[str, list[dict]] = {}


def run_method_cached(stream: dict, method: str) -> list[dict]:
    work_dir = stream['root'] / f'work_{method}'
    if not (work_dir / 'results.jsonl').exists():
        return run_method(stream, method)
    return [json.loads(line) for line in (work_dir / 'results.jsonl').read_text().splitlines()]


def test_missing_data_root_is_a_clear_error(stream, tmp_path) -> None:
    config = write_config(tmp_path / 'cfg.py', tmp_path / 'no_such_acdc', 'source')
    result = adapt(config, '--checkpoint', str(stream['checkpoint']), '--work-dir', str(tmp_path / 'w'))
    assert result.returncode == 2
    assert 'rgb_anon/fog/train' in result.stderr and 'does not exist' in result.stderr


def test_checkpoint_with_other_class_count_is_refused(stream, tmp_path) -> None:
    checkpoint = write_tiny_checkpoint(tmp_path / 'ten_classes.pth', num_classes=10)
    config = write_config(tmp_path / 'cfg.py', stream['data'], 'source')
    result = adapt(config, '--checkpoint', str(checkpoint), '--work-dir', str(tmp_path / 'w'))
    assert result.returncode == 2
    assert 'predicts 10 classes' in result.stderr and 'expects 19' in result.stderr


def test_missing_checkpoint_is_refused(stream, tmp_path) -> None:
    config = write_config(tmp_path / 'cfg.py', stream['data'], 'source')
    result = adapt(config, '--checkpoint', str(tmp_path / 'nope.pth'), '--work-dir', str(tmp_path / 'w'))
    assert result.returncode == 2 and 'nope.pth does not exist' in result.stderr


def test_corrupt_image_is_skipped_and_counted(stream, tmp_path) -> None:
    import shutil
    data = tmp_path / 'acdc'
    shutil.copytree(stream['data'], data)
    broken = sorted((data / 'rgb_anon' / 'night').rglob('*.png'))[1]
    broken.write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    config = write_config(tmp_path / 'cfg.py', data, 'tent', rounds=1)
    result = adapt(config, '--checkpoint', str(stream['checkpoint']), '--work-dir', str(tmp_path / 'w'))
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / 'w' / 'results.jsonl').read_text().splitlines()]
    night = next(r for r in records if r['key']['condition'] == 'night')
    assert night['num_skipped'] == 1 and night['num_images'] == IMAGES_PER_CONDITION - 1
    assert all(r['num_skipped'] == 0 for r in records if r['key']['condition'] != 'night')
    assert f'skipped unreadable image {broken}' in result.stderr + result.stdout


def test_existing_results_are_not_overwritten(stream, tmp_path) -> None:
    config = write_config(tmp_path / 'cfg.py', stream['data'], 'source', rounds=1)
    args = ['--checkpoint', str(stream['checkpoint']), '--work-dir', str(tmp_path / 'w')]
    assert adapt(config, *args).returncode == 0
    again = adapt(config, *args)
    assert again.returncode == 2 and '--force' in again.stderr
    assert adapt(config, *args, '--force').returncode == 0


def test_imse_stag_changes_only_singular_values(stream, tmp_path) -> None:
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner, load_checkpoint
    from mmseg.registry import MODELS

    from imse_seg.core import spectralize

    cfg = Config.fromfile(write_config(tmp_path / 'cfg.py', stream['data'], 'imse_stag', rounds=1))
    cfg.work_dir, cfg.load_from = str(tmp_path / 'w'), str(stream['checkpoint'])
    cfg.custom_hooks[0].method.optimizer.lr = 0.05
    runner = Runner.from_cfg(cfg)
    runner.test()
    adapted = runner.model.module.state_dict()

    init_default_scope('mmseg')
    reference = MODELS.build(cfg.model.module)
    load_checkpoint(reference, str(stream['checkpoint']), map_location='cpu')
    spectralize(reference, cfg.spectral_roles)
    converted = reference.state_dict()
    assert adapted.keys() == converted.keys()
    moved = [key for key in adapted if not torch.equal(adapted[key], converted[key])]
    assert moved, 'imse_stag changed nothing'
    assert all(key.endswith('.singular_values') for key in moved), moved
    # the singular values of the last stage serve the diversity loss only: they stay at s0
    assert not any(key.startswith('backbone.layers.3.') for key in moved)
