"""The bundled benchmark's command, reduced: the EfficientViT stream at 4 frames per condition, one round.

It runs ``tools/run_demo.py`` as ``make demo`` does (checkpoint conversion from the published file, one
``tools/adapt.py`` process per method,
the comparison table and the plot) and checks what it prints and writes: the table's shape, results
rows for every condition, a source that matches its own recorded scores, and adaptation that changes
the predictions. The full-size figures are in docs/results.md; none is hard-coded here.
"""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imse_seg.reporting import load_results
from imse_seg.reporting.comparison import format_comparison, summarise_run
from imse_seg.third_party import CAMVID, EFFICIENTVIT_B0_CITYSCAPES
from shared_files import shared_path

REPO = Path(__file__).resolve().parents[1]
CONDITIONS = ['fog', 'night', 'rain', 'snow']


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory) -> tuple[Path, str]:
    camvid, weights = shared_path(CAMVID), shared_path(EFFICIENTVIT_B0_CITYSCAPES)
    root = tmp_path_factory.mktemp('demo')
    data = root / 'data'
    subprocess.run([sys.executable, 'tools/make_demo_data.py', '--preset', 'efficientvit', '--camvid',
                    str(camvid), '--out', str(data), '--frames-per-condition', '4'], cwd=REPO, check=True,
                   capture_output=True)
    completed = subprocess.run(
        [sys.executable, 'tools/run_demo.py', '--rounds', '1', '--frames-per-condition', '4', '--data', str(data),
         '--weights', str(weights),
         '--checkpoint', str(root / 'b0.pth'), '--work-dir', str(root / 'runs')],
        cwd=REPO, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (root / 'b0.pth').exists()
    return root / 'runs' / 'efficientvit' / 'train' / 'r1_4frames', completed.stdout


def test_prints_and_writes_the_comparison_table(demo_run: tuple[Path, str]) -> None:
    out, stdout = demo_run
    summary = (out / 'summary.md').read_text()
    tables = [[line for line in block.splitlines() if line.startswith('|')] for block in summary.split('\n\n')]
    comparison, per_class, bank = [table for table in tables if table]
    assert comparison[0] == '| method | fog | night | rain | snow | mean | s/image |', 'one round: no round columns'
    assert [line.split('|')[1].strip() for line in comparison[2:]] == ['source', 'tent', 'imse_stag']
    assert per_class[0] == '| class | source | imse_stag |' and len(per_class) == 2 + 11
    assert [line.split('|')[1].strip() for line in bank[2:]] == [
        'fog r1 -> night r1', 'night r1 -> rain r1', 'rain r1 -> snow r1']
    assert 'Code bank of imse_stag' in summary and summary.strip() in stdout
    assert (out / 'miou_stream.png').stat().st_size > 0


def test_each_method_scores_every_condition_and_adaptation_changes_results(
        demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    runs = {method: load_results(out / method) for method in ('source', 'tent', 'imse_stag')}
    for records in runs.values():
        assert [record['key'] for record in records] == [dict(condition=c, round=1) for c in CONDITIONS]
        assert all(record['num_images'] == 4 for record in records)
    source = summarise_run(runs['source'])
    assert source['mean'] == pytest.approx(sum(r['metrics']['mIoU'] for r in runs['source']) / 4)
    assert summarise_run(runs['imse_stag'])['conditions'] != source['conditions']


def test_a_second_run_reuses_finished_methods_and_runs_only_the_new_ones(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    root = out.parents[3]
    before = {method: (out / method / 'results.jsonl').stat().st_mtime_ns for method in ('source', 'tent')}
    completed = subprocess.run(
        [sys.executable, 'tools/run_demo.py', '--methods', 'source', 'tent', 'bn_stats', '--rounds', '1',
         '--frames-per-condition', '4', '--data', str(root / 'data'), '--checkpoint', str(root / 'b0.pth'),
         '--work-dir', str(root / 'runs')],
        cwd=REPO, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert 'source: reused' in completed.stdout and 'tent: reused' in completed.stdout
    assert {method: (out / method / 'results.jsonl').stat().st_mtime_ns for method in before} == before
    assert len(load_results(out / 'bn_stats')) == 4


def test_an_interrupted_run_is_continued_from_its_stream_checkpoint(demo_run: tuple[Path, str]) -> None:
    """A run whose record says it did not finish is resumed (``--resume``, its results kept), not restarted."""
    out, _ = demo_run
    root = out.parents[3]
    record = json.loads((out / 'tent' / 'run_demo.json').read_text())
    interrupted = root / 'interrupted' / 'efficientvit' / 'train' / 'r1_4frames' / 'tent'
    shutil.copytree(out / 'tent', interrupted)
    record['command'] = [str(interrupted) if part == str(out / 'tent') else part for part in record['command']]
    (interrupted / 'run_demo.json').write_text(json.dumps(dict(record, complete=False)))
    completed = subprocess.run(
        [sys.executable, 'tools/run_demo.py', '--methods', 'tent', '--rounds', '1', '--frames-per-condition', '4',
         '--data', str(root / 'data'), '--checkpoint', str(root / 'b0.pth'), '--work-dir', str(root / 'interrupted')],
        cwd=REPO, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert 'tent: continuing the interrupted run' in completed.stdout
    assert 'resuming from' in (interrupted / 'adapt.log').read_text()
    assert load_results(interrupted) == load_results(out / 'tent')
    assert json.loads((interrupted / 'run_demo.json').read_text()) == dict(record, complete=True)


def test_a_tree_of_another_size_is_refused_in_one_line(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    root = out.parents[3]
    completed = subprocess.run(
        [sys.executable, 'tools/run_demo.py', '--rounds', '1', '--data', str(root / 'data'), '--checkpoint',
         str(root / 'b0.pth'), '--work-dir', str(root / 'refused')], cwd=REPO, capture_output=True, text=True)
    assert completed.returncode == 2 and not (root / 'refused').exists()
    assert completed.stderr.strip().splitlines()[-1] == (
        f'error: {root / "data"} holds 4 frames per condition, not the 50 asked for: pass '
        '--frames-per-condition 4 or another --data')


def test_comparison_refuses_runs_of_different_streams(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    source = load_results(out / 'source')
    with pytest.raises(ValueError, match='not the same stream'):
        format_comparison({'source': source, 'short': source[:2]})


def test_a_child_stopped_by_a_signal_is_reported_as_stopped_not_failed(tmp_path: Path) -> None:
    """adapt.py exits 128 + the signal after saving its stream checkpoint: the batch's last line says the
    run is saved and continues, where a real failure points at the log."""
    from tool_module import load_tool

    child_failure = load_tool('run_demo').child_failure
    for status in (143, 130):
        assert child_failure('cotta', status, tmp_path) == (
            f'cotta was stopped by a signal; its state is saved in {tmp_path} and the same command continues it')
    assert child_failure('cotta', 1, tmp_path) == f'cotta failed with exit code 1; its log is {tmp_path / "adapt.log"}'


def test_a_run_gets_its_share_of_the_threads_and_openmps_own_wait_policy(monkeypatch) -> None:
    """Two threads with sleeping OpenMP waiters (the ``PASSIVE`` run_demo forced before) ran slower than one
    thread here (docs/benchmarks.md): a run's wait policy is now the user's, or OpenMP's default."""
    from tool_module import load_tool
    child_env = load_tool('run_demo').child_env
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.delenv('OMP_WAIT_POLICY', raising=False)
    monkeypatch.setattr('os.cpu_count', lambda: 4)
    assert child_env(1)['OMP_NUM_THREADS'] == '4' and child_env(2)['OMP_NUM_THREADS'] == '2'
    assert child_env(8)['OMP_NUM_THREADS'] == '1'
    assert 'OMP_WAIT_POLICY' not in child_env(1)
    monkeypatch.setenv('OMP_WAIT_POLICY', 'ACTIVE')
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    assert (child_env(2)['OMP_WAIT_POLICY'], child_env(2)['OMP_NUM_THREADS']) == ('ACTIVE', '3')


def test_sigterm_to_the_batch_stops_each_running_method_saved(demo_run: tuple[Path, str]) -> None:
    """The batch passes its SIGTERM on to the ``tools/adapt.py`` it runs, which saves its stream checkpoint:
    no run is left streaming on its own, the one still waiting is named, and the batch ends like adapt.py,
    with 128 + the signal."""
    out, _ = demo_run
    root = out.parents[3]
    work_dir = root / 'stopped' / 'efficientvit' / 'train' / 'r1_4frames' / 'cotta'
    batch = subprocess.Popen(
        [sys.executable, 'tools/run_demo.py', '--methods', 'tent', 'cotta', '--jobs', '1', '--rounds', '1',
         '--frames-per-condition', '4', '--data', str(root / 'data'), '--checkpoint', str(root / 'b0.pth'),
         '--work-dir', str(root / 'stopped')],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = work_dir / 'adapt.log'
    deadline = time.monotonic() + 300
    while not (log.exists() and 'segment fog round 1' in log.read_text()):
        assert batch.poll() is None and time.monotonic() < deadline, 'the stream never started'
        time.sleep(0.5)
    batch.send_signal(signal.SIGTERM)
    _, stderr = batch.communicate(timeout=300)
    assert batch.returncode == 128 + signal.SIGTERM
    assert stderr.strip().splitlines()[-2:] == [
        'stopped by SIGTERM before tent started; the same command runs them',
        f'cotta was stopped by a signal; its state is saved in {work_dir} and the same command continues it']
    assert 'stopped by SIGTERM at round 1, segment fog' in log.read_text()
    assert not (work_dir.parent / 'tent').exists()
    assert (work_dir / 'stream_checkpoint.pth').exists()
    assert not [path for path in Path('/proc').glob('[0-9]*/cmdline')
                if str(work_dir).encode() in _read_or_empty(path)], 'an adapt.py outlived its batch'


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b''
