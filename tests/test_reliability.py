"""Issue 9: a stream killed mid-segment resumes to the uninterrupted result; faults are counted, not fatal."""
from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import torch

from acdc_fixture import REPO, write_acdc_tree, write_config, write_tiny_checkpoint
from checkout import checkout_env
from exact import assert_same

# IMSE + STAG exercises the most state: spectral singular values, SAM/Adam moments, the code bank.
METHOD = 'imse_stag'
OPTIONS = ['--cfg-options', 'test_cfg.checkpoint_interval=1', 'custom_hooks.0.method.optimizer.lr=0.05']
IMAGES = 4
ENV = checkout_env(OMP_NUM_THREADS='1')
# Every stream batch's images get an offset drawn from torch's, NumPy's and Python's global generators, so a
# resumed stream matches the uninterrupted one only if all three are restored at the resume point.
GLOBAL_RNG = '\n'.join(["custom_imports = dict(imports=['imse_seg.seg', 'fault_hooks'], allow_failed_imports=False)",
                        "custom_hooks.append(dict(type='GlobalRandomInputHook'))"])


@pytest.fixture(scope='module')
def stream(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('reliability')
    data = write_acdc_tree(root / 'acdc', images_per_condition=IMAGES)
    stream = dict(root=root, data=data, checkpoint=write_tiny_checkpoint(root / 'tiny.pth'),
                  config=write_config(root / 'cfg.py', data, METHOD, rounds=1, extra=GLOBAL_RNG))
    reference = adapt(stream, root / 'reference')
    assert reference.returncode == 0, reference.stderr[-3000:]
    return stream


def command(stream: dict, work_dir: Path, *args: str, config: Path | None = None) -> list[str]:
    return [sys.executable, str(REPO / 'tools' / 'adapt.py'), str(config or stream['config']),
            '--checkpoint', str(stream['checkpoint']), '--work-dir', str(work_dir), *args, *OPTIONS]


def adapt(stream: dict, work_dir: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command(stream, work_dir, *args, config=config), capture_output=True, text=True,
                          cwd=REPO, env=ENV, check=False, timeout=600)


def kill_after_first_checkpoint(stream: dict, work_dir: Path, signum: int) -> subprocess.CompletedProcess:
    """Start a run, send ``signum`` once its first stream checkpoint (after batch 1 of fog) is on disk."""
    log = work_dir.with_name(f'{work_dir.name}.log')
    with open(log, 'w') as output:   # a file, not a pipe: an unread pipe could block the run
        process = subprocess.Popen(command(stream, work_dir), stdout=output, stderr=subprocess.STDOUT,
                                   text=True, cwd=REPO, env=ENV)
        checkpoint = work_dir / 'stream_checkpoint.pth'
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signum)
        process.wait(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, '', log.read_text())


def records(work_dir: Path) -> list[dict]:
    """The results records without wall times."""
    lines = (work_dir / 'results.jsonl').read_text().splitlines()
    return [{key: value for key, value in json.loads(line).items() if key != 'seconds'} for line in lines]


def assert_same_as_reference(stream: dict, work_dir: Path) -> None:
    """Bit-identical results, bank events and final adapted state (weights, optimiser, bank, RNG)."""
    reference = stream['root'] / 'reference'
    assert records(work_dir) == records(reference)
    assert (work_dir / 'bank_events.jsonl').read_text() == (reference / 'bank_events.jsonl').read_text()
    final, expected = (torch.load(d / 'stream_checkpoint.pth', weights_only=True) for d in (work_dir, reference))
    for part in ('model', 'adaptation', 'rng', 'position'):
        assert_same(final[part], expected[part])
    assert [dict(r, seconds=0) for r in final['records']] == [dict(r, seconds=0) for r in expected['records']]


def test_sigterm_saves_mid_segment_and_resume_matches(stream) -> None:
    work_dir = stream['root'] / 'sigterm'
    stopped = kill_after_first_checkpoint(stream, work_dir, signal.SIGTERM)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    assert 'continue with --resume' in stopped.stderr
    saved = torch.load(work_dir / 'stream_checkpoint.pth', weights_only=True)
    assert saved['position'] == dict(round=1, segment=0, batch=saved['position']['batch'])
    assert 1 <= saved['position']['batch'] < IMAGES, 'stopped in the middle of fog'
    resumed = adapt(stream, work_dir, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resuming from' in resumed.stderr + resumed.stdout
    assert_same_as_reference(stream, work_dir)


def test_sigkill_then_resume_matches_and_plain_restart_is_refused(stream) -> None:
    work_dir = stream['root'] / 'sigkill'
    killed = kill_after_first_checkpoint(stream, work_dir, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    refused = adapt(stream, work_dir)
    assert refused.returncode == 2 and '--resume' in refused.stderr and '--force' in refused.stderr
    resumed = adapt(stream, work_dir, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_as_reference(stream, work_dir)


def test_checkpoint_of_another_config_or_model_is_refused(stream, tmp_path) -> None:
    work_dir = tmp_path / 'copy'
    shutil.copytree(stream['root'] / 'reference', work_dir)
    other_method = write_config(tmp_path / 'tent.py', stream['data'], 'tent', rounds=1)
    refused = adapt(stream, work_dir, '--resume', config=other_method)
    assert refused.returncode == 2
    assert 'belongs to another run: its method, parameters differ from this one' in refused.stderr

    from imse_seg.seg.checkpoint import CheckpointError
    from imse_seg.seg.engine.stream_checkpoint import load_stream_checkpoint
    saved = torch.load(work_dir / 'stream_checkpoint.pth', weights_only=True)['fingerprint']
    other_model = dict(saved, **{'source checkpoint': 'another', 'parameters': 'other shapes'})
    with pytest.raises(CheckpointError, match='its parameters, source checkpoint differ from this one'):
        load_stream_checkpoint(work_dir / 'stream_checkpoint.pth', other_model)
    assert load_stream_checkpoint(work_dir / 'stream_checkpoint.pth', saved)['position'].round == 2


def test_faulty_inputs_are_counted_and_left_out(stream, tmp_path) -> None:
    data = tmp_path / 'acdc'
    shutil.copytree(stream['data'], data)

    def files(kind: str, condition: str) -> list[Path]:
        return sorted((data / kind / condition).rglob('*.png'))
    # fog 0: image and label at another size than the others: the pipeline's resize handles it
    for path, interpolation in ((files('rgb_anon', 'fog')[0], cv2.INTER_LINEAR),
                                (files('gt', 'fog')[0], cv2.INTER_NEAREST)):
        cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), (160, 96),
                                          interpolation=interpolation))
    files('rgb_anon', 'night')[1].write_bytes(b'\x89PNG\r\n\x1a\n truncated')   # unreadable
    label_path = files('gt', 'rain')[0]                                          # a label outside [0, 19)
    label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    label[5, 5] = 77
    cv2.imwrite(str(label_path), label)
    image_path = files('rgb_anon', 'snow')[2]                                    # image smaller than its label
    cv2.imwrite(str(image_path), cv2.resize(cv2.imread(str(image_path)), (64, 32)))
    # run iteration 4 (night 0) gets an Inf input: NaN logits, a refused update, a prediction left out
    config = write_config(tmp_path / 'faults.py', data, METHOD, rounds=1, extra='\n'.join([
        "custom_imports = dict(imports=['imse_seg.seg', 'fault_hooks'], allow_failed_imports=False)",
        "custom_hooks.append(dict(type='NonFiniteInputHook', batches=[4]))"]))
    result = adapt(stream, tmp_path / 'w', config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = {r['key']['condition']: (r['num_images'], r['num_skipped'], r['counts'])
              for r in records(tmp_path / 'w')}
    zero = dict(unreadable=0, bad_label=0, size_mismatch=0, non_finite_prediction=0, guard_events=0)
    assert counts == {'fog': (4, 0, zero),
                      'night': (2, 2, dict(zero, unreadable=1, non_finite_prediction=1, guard_events=1)),
                      'rain': (3, 1, dict(zero, bad_label=1)),
                      'snow': (3, 1, dict(zero, size_mismatch=1))}
    assert all(r['metrics']['mIoU'] is not None for r in records(tmp_path / 'w'))
    # the refused batch left no trace in the code bank: one event per adapted batch, all finite
    events = [json.loads(line) for line in (tmp_path / 'w' / 'bank_events.jsonl').read_text().splitlines()]
    assert [event['batch_index'] for event in events] == list(range(4 * IMAGES - 2))
    assert all(event['distance'] is None or math.isfinite(event['distance']) for event in events)
    log = result.stderr + result.stdout
    assert 'divergence guard, batch 4: non-finite update' in log
    assert 'outside [0, 19)' in log and 'differ in size' in log
