"""Issue 19 through tools/adapt.py: one run per work dir, --force clears, strict checkpoints, config mistakes
and label faults answered in one line or counted as what they are."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import torch

from acdc_fixture import REPO, write_acdc_tree, write_config, write_tiny_checkpoint
from checkout import checkout_env
from imse_seg.cli import exit_with
from tool_module import load_tool

ADAPT = load_tool('adapt')
IMAGES = 2
FAULT_HOOKS = "custom_imports = dict(imports=['imse_seg.seg', 'fault_hooks'], allow_failed_imports=False)"


@pytest.fixture(scope='module')
def stream(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('cli')
    data = write_acdc_tree(root / 'acdc', images_per_condition=IMAGES)
    return dict(root=root, data=data, checkpoint=write_tiny_checkpoint(root / 'tiny.pth'),
                source=write_config(root / 'source.py', data, 'source', rounds=1),
                tent=write_config(root / 'tent.py', data, 'tent', rounds=1))


def cli(capsys, *argv: str) -> tuple[int, str]:
    """``tools/adapt.py ARGV`` in this process, as its ``__main__`` runs it: (exit status, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        exit_with(lambda: ADAPT.main([str(arg) for arg in argv]))
    return stop.value.code, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    return lines[0]


def listing(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob('*'))


def test_a_second_run_into_a_busy_work_dir_is_refused_at_once(stream, capsys) -> None:
    work_dir = stream['root'] / 'busy'
    slow = write_config(stream['root'] / 'slow_tent.py', stream['data'], 'tent', rounds=1, extra='\n'.join([
        FAULT_HOOKS, "custom_hooks.append(dict(type='SleepHook', seconds=0.2))"]))
    log = stream['root'] / 'busy.log'
    with open(log, 'w') as output:
        first = subprocess.Popen([sys.executable, str(REPO / 'tools' / 'adapt.py'), str(slow), '--checkpoint',
                                  str(stream['checkpoint']), '--work-dir', str(work_dir)],
                                 stdout=output, stderr=subprocess.STDOUT, cwd=REPO, env=checkout_env())
        deadline = time.monotonic() + 120
        while not (work_dir / 'run.lock').exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, log.read_text()[-3000:]
        status, err = cli(capsys, stream['source'], '--checkpoint', stream['checkpoint'], '--work-dir', work_dir)
        assert first.poll() is None, 'the first run ended before the second was tried'
        assert status == 2
        assert f'in use by another run (pid {first.pid} on host {socket.gethostname()}' in one_line(err)
        assert first.wait(timeout=300) == 0, log.read_text()[-3000:]
    records = [json.loads(line) for line in (work_dir / 'results.jsonl').read_text().splitlines()]
    assert len(records) == 4
    assert sorted(path.name for path in work_dir.glob('*.py')) == ['slow_tent.py']   # one config dump
    assert len([path for path in work_dir.iterdir() if path.is_dir()]) == 1          # one log folder
    assert not (work_dir / 'run.lock').exists()


def test_a_stale_lock_is_reported_and_broken_with_force(stream, capsys) -> None:
    work_dir = stream['root'] / 'stale'
    work_dir.mkdir()
    gone = subprocess.Popen([sys.executable, '-c', ''])
    gone.wait()
    (work_dir / 'run.lock').write_text(json.dumps(dict(pid=gone.pid, host=socket.gethostname(),
                                                       started='2026-01-01 00:00:00')))
    args = [stream['source'], '--checkpoint', stream['checkpoint'], '--work-dir', work_dir]
    status, err = cli(capsys, *args)
    assert status == 2
    assert f'stale lock of a run that is gone (pid {gone.pid}' in one_line(err) and '--force' in err
    assert listing(work_dir) == ['run.lock']
    status, err = cli(capsys, *args, '--force')
    assert status == 0
    assert f'breaking the stale lock of {work_dir} (pid {gone.pid}' in err
    assert (work_dir / 'results.jsonl').exists() and not (work_dir / 'run.lock').exists()


def test_force_removes_what_the_previous_run_wrote(stream, capsys) -> None:
    work_dir = stream['root'] / 'forced'
    log_folder = work_dir / '20260101_000000'
    (log_folder / 'vis_data').mkdir(parents=True)
    previous = ['results.jsonl', 'results.csv', 'bank_events.jsonl', 'miou_stream.png', 'stream_checkpoint.pth',
                '.results.jsonl.123.abcd.tmp', 'demo_ctta_imse.py', '20260101_000000/20260101_000000.log',
                '20260101_000000/vis_data/scalars.json']
    for name in previous + ['notes.txt']:
        (work_dir / name).write_text('from the previous run\n')
    status, err = cli(capsys, stream['source'], '--checkpoint', stream['checkpoint'], '--work-dir', work_dir,
                      '--force')
    assert status == 0, err
    left = listing(work_dir)
    assert 'notes.txt' in left and 'source.py' in left and 'bank_events.jsonl' not in left
    assert not any(name.startswith('20260101_000000') or name.endswith('.tmp') or name == 'demo_ctta_imse.py'
                   for name in left), left
    assert (work_dir / 'results.jsonl').read_text() != 'from the previous run\n'


def test_a_refused_run_writes_nothing(stream, capsys) -> None:
    work_dir = stream['root'] / 'finished'
    args = [stream['source'], '--checkpoint', stream['checkpoint'], '--work-dir', work_dir]
    assert cli(capsys, *args)[0] == 0
    before = listing(work_dir)
    status, err = cli(capsys, *args)
    assert status == 2 and '--resume' in one_line(err) and '--force' in err
    assert listing(work_dir) == before


def test_no_checkpoint_needs_random_weights(stream, capsys, tmp_path) -> None:
    status, err = cli(capsys, stream['source'], '--work-dir', tmp_path / 'w')
    assert status == 2 and 'no source checkpoint' in one_line(err) and '--random-weights' in err
    assert not (tmp_path / 'w').exists()
    assert cli(capsys, stream['source'], '--work-dir', tmp_path / 'w', '--random-weights')[0] == 0
    assert len((tmp_path / 'w' / 'results.jsonl').read_text().splitlines()) == 4


def test_a_checkpoint_url_reaches_mmengine_unchanged(stream, capsys, tmp_path, monkeypatch) -> None:
    from mmengine.runner import CheckpointLoader
    url = 'https://download.example.org/models//tiny.pth'
    asked = []

    def fake_load(cls, filename, map_location=None, logger='current'):
        asked.append(filename)
        return torch.load(stream['checkpoint'], map_location='cpu', weights_only=True)
    monkeypatch.setattr(CheckpointLoader, 'load_checkpoint', classmethod(fake_load))
    status, err = cli(capsys, stream['source'], '--checkpoint', url, '--work-dir', tmp_path / 'w')
    assert status == 0, err
    assert len(asked) >= 2 and set(asked) == {url}     # the up-front strict check and the runner's load


def test_dry_run_says_whether_the_checkpoint_loads_strictly(stream, tmp_path) -> None:
    from mmengine.config import Config

    from imse_seg.seg.dry_run import dry_run
    state = torch.load(stream['checkpoint'], weights_only=True)
    del state['state_dict']['decode_head.conv_seg.bias']
    torch.save(state, tmp_path / 'cut.pth')
    cfg = Config.fromfile(stream['source'])
    expected = {stream['checkpoint']: 'exists and loads strictly',
                tmp_path / 'cut.pth': '1 missing: decode_head.conv_seg.bias', tmp_path / 'none.pth': 'does not exist', None: 'none (load_from is None)'}
    for checkpoint, says in expected.items():
        cfg.load_from = None if checkpoint is None else str(checkpoint)
        assert says in dry_run(cfg, image_shape=(64, 128), model_scale=1)['checkpoint']


@pytest.mark.parametrize('options, says', [
    (['custom_hooks.0.method.type=EntropyAdaptaton'],
     "custom_hooks.0.method.type: 'EntropyAdaptaton' is not registered"),
    (['test_cfg.roundz=2'], "test_cfg.roundz: ContinualTestLoop takes no argument 'roundz' (did you mean 'rounds'?)"),
    (['custom_hooks.0.method.optimizer.lrr=0.1'],
     "custom_hooks.0.method.optimizer.lrr: Adam takes no argument 'lrr' (did you mean 'lr'?)"),
    (['test_cfg.rounds=0'], 'test_cfg: rounds must be an integer >= 1, got 0'),
    (['test_cfgg.rounds=2'], "--cfg-options sets 'test_cfgg', which is not a top-level key of the config "
                             "(did you mean 'test_cfg'?)"),
])
def test_config_mistakes_are_answered_in_one_line(stream, capsys, tmp_path, options, says) -> None:
    status, err = cli(capsys, stream['tent'], '--checkpoint', stream['checkpoint'], '--work-dir', tmp_path / 'w',
                      '--cfg-options', *options)
    assert status == 2 and says in one_line(err)
    assert "(did you mean 'EntropyAdaptation'?)" in err or 'EntropyAdaptaton' not in err
    assert not (tmp_path / 'w').exists()


def test_misspelled_top_level_key_is_reported(stream, capsys, tmp_path) -> None:
    config = tmp_path / 'typo.py'
    config.write_text(stream['source'].read_text().replace('custom_hooks = ', 'custom_hook = '))
    status, err = cli(capsys, config, '--checkpoint', stream['checkpoint'], '--work-dir', tmp_path / 'w')
    assert status == 2 and "unknown top-level config key 'custom_hook' (did you mean 'custom_hooks'?)" in one_line(err)


def test_label_faults_are_named_and_counted_as_bad_labels(stream, capsys, tmp_path) -> None:
    data = tmp_path / 'acdc'
    shutil.copytree(stream['data'], data)
    truncated = sorted((data / 'gt' / 'fog').rglob('*.png'))[0]
    truncated.write_bytes(truncated.read_bytes()[:60])
    coloured = sorted((data / 'gt' / 'rain').rglob('*.png'))[1]
    label = cv2.imread(str(coloured), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(coloured), cv2.merge([label, label, label]))
    config = write_config(tmp_path / 'tent.py', data, 'tent', rounds=1)
    status, err = cli(capsys, config, '--checkpoint', stream['checkpoint'], '--work-dir', tmp_path / 'w')
    assert status == 0, err
    records = {json.loads(line)['key']['condition']: json.loads(line)
               for line in (tmp_path / 'w' / 'results.jsonl').read_text().splitlines()}
    for condition in ('fog', 'rain'):
        record = records[condition]
        assert record['counts']['bad_label'] == 1, record['counts']
        assert record['counts']['unreadable'] == 0 and record['counts']['size_mismatch'] == 0
        assert record['num_images'] == IMAGES - 1 and record['num_skipped'] == 1
    assert all(records[c]['counts']['bad_label'] == 0 for c in ('night', 'snow'))
    (log,) = (tmp_path / 'w').glob('*/*.log')
    text = log.read_text()
    assert f'skipped bad label map {truncated}' in text and f'skipped bad label map {coloured}' in text
    assert 'skipped unreadable image' not in text


def test_a_learning_rate_far_too_high_is_survived_with_the_guard(capsys, tmp_path) -> None:
    """Item 3 on the bundled demo (its model, 10 frames per condition, one round): IMSE at 1000x its tuned
    rate collapses the model in one update. With the collapse check the guard recovers, pauses updates when
    the collapse recurs, and the stream keeps at least 90% of the source's mean mIoU (66% with
    ``pause_batches=0``, the guard before pauses existed)."""
    from imse_seg.reporting import load_results
    from imse_seg.third_party import CAMVID
    from shared_files import shared_path

    data = tmp_path / 'demo'
    assert load_tool('make_demo_data').main(['--preset', 'tiny_segformer', '--camvid', str(shared_path(CAMVID)),
                                             '--out', str(data), '--frames-per-condition', '10']) == 0
    stream = ['test_cfg.rounds=1', f'test_dataloader.dataset.data_root={data}']
    guard = ['custom_hooks.0.guard.type=DivergenceGuard', 'custom_hooks.0.guard.collapse_fraction=0.9',
             'custom_hooks.0.guard.entropy_floor=0.25']
    assert cli(capsys, 'configs/demo_ctta_source.py', '--work-dir', tmp_path / 'source', '--cfg-options',
               *stream)[0] == 0
    assert cli(capsys, 'configs/demo_ctta_imse.py', '--work-dir', tmp_path / 'imse', '--cfg-options', *stream,
               'custom_hooks.0.method.optimizer.lr=3', *guard)[0] == 0

    def mean(run: str) -> float:
        records = load_results(tmp_path / run)
        return sum(record['metrics']['mIoU'] for record in records) / len(records)

    assert mean('imse') >= 0.9 * mean('source'), (mean('imse'), mean('source'))
    log = next((tmp_path / 'imse').glob('*/*.log')).read_text()
    assert 'source state restored, updates paused for 25 batches' in log
