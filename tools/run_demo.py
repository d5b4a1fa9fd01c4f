"""The bundled CPU benchmark end to end: generate the demo data, adapt with every method, compare.

    python tools/run_demo.py [--methods source tent cotta imse tent_stag imse_stag] [--rounds N]
        [--split train|val] [--jobs J] [--work-dir work_dirs/demo] [--data data/demo] [--camvid DIR]

1. writes the demo tree (``tools/make_demo_data.py --preset tiny_segformer``: CamVid frames, read from
   ``--camvid``, ``$IMSE_SEG_CAMVID`` or ``../shared/data/camvid``, as a Cityscapes-layout source and an
   ACDC-layout fog -> night -> rain -> snow stream at 120 x 160) unless ``--data`` already holds one;
2. runs ``tools/adapt.py configs/demo_ctta_<method>.py`` for each method into
   ``<work-dir>/<split>/<method>/`` (its output in ``adapt.log`` there), ``--jobs`` processes at a time,
   each with an equal share of the CPU's threads: on this model one thread per process is faster than
   two threads fighting over two cores. A progress bar counts the stream segments finished;
3. prints the comparison table (per condition, first and last round, mean, seconds per image) and writes
   it to ``<work-dir>/<split>/summary.md`` with the plot of every method along the stream,
   ``<work-dir>/<split>/miou_stream.png``.

``--split train`` is the reported stream (frames the source never saw); ``--split val`` is the tuning
stream rendered from clear validation frames, the one hyper-parameters were chosen on.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from mmengine.config import Config
from tqdm import tqdm

from imse_seg.reporting import RESULTS_JSONL, atomic_write_text, load_results
from imse_seg.reporting.comparison import format_comparison

REPO = Path(__file__).resolve().parents[1]
METHODS = ['source', 'tent', 'cotta', 'imse', 'tent_stag', 'imse_stag']


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--methods', nargs='+', default=METHODS,
                        help='methods to run, each configs/demo_ctta_<method>.py (default: the six)')
    parser.add_argument('--rounds', type=int, default=None, help='rounds of the stream (default: config)')
    parser.add_argument('--split', choices=['train', 'val'], default='train',
                        help='ACDC split streamed: train = reported, val = tuning (default train)')
    parser.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1),
                        help='methods run at once (default: 2, or 1 on a one-core machine)')
    parser.add_argument('--work-dir', type=Path, default=Path('work_dirs/demo'), help='where runs go')
    parser.add_argument('--data', type=Path, default=Path('data/demo'), help='the demo tree')
    parser.add_argument('--camvid', type=Path, default=None,
                        help='the CamVid folder the demo tree is made from (default: $IMSE_SEG_CAMVID or '
                             '../shared/data/camvid)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='extra overrides passed to every run, e.g. custom_hooks.0.method.sam_rho=0.1')
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error('--rounds must be positive')
    if args.jobs < 1:
        parser.error('--jobs must be positive')
    for method in args.methods:
        if not method_config(method).exists():
            parser.error(f'no config for method {method!r}: {method_config(method)} does not exist')
    return args


def method_config(method: str) -> Path:
    """The demo config of one method."""
    return REPO / 'configs' / f'demo_ctta_{method}.py'


def stream_segments(config: Path, rounds: int | None) -> int:
    """How many segments (condition x round) a run of ``config`` scores."""
    cfg = Config.fromfile(str(config), import_custom_modules=False)
    return (rounds or cfg.test_cfg.rounds) * len(cfg.test_cfg.segments)


def child_env(jobs: int) -> dict[str, str]:
    """The environment of a run: an equal share of the threads, OpenMP threads that sleep when idle."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    return dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', threads),
                OMP_WAIT_POLICY=os.environ.get('OMP_WAIT_POLICY', 'PASSIVE'))


def finished_segments(work_dir: Path) -> int:
    path = work_dir / RESULTS_JSONL
    return len(path.read_text().splitlines()) if path.exists() else 0


def run_methods(args: argparse.Namespace, out: Path) -> None:
    """Run every method's ``tools/adapt.py``, ``args.jobs`` at a time, with a bar over finished segments."""
    options = [f'test_dataloader.dataset.data_root={args.data}', f'test_dataloader.dataset.split={args.split}']
    options += [f'test_cfg.rounds={args.rounds}'] if args.rounds else []
    options += args.cfg_options
    waiting = list(args.methods)
    running: dict[str, tuple[subprocess.Popen, Path, float]] = {}
    total = sum(stream_segments(method_config(method), args.rounds) for method in args.methods)
    with tqdm(total=total, unit='segment', desc='demo', dynamic_ncols=True) as bar:
        while waiting or running:
            while waiting and len(running) < args.jobs:
                method = waiting.pop(0)
                work_dir = out / method
                work_dir.mkdir(parents=True, exist_ok=True)
                (work_dir / RESULTS_JSONL).unlink(missing_ok=True)
                log = open(work_dir / 'adapt.log', 'w')
                command = [sys.executable, 'tools/adapt.py', str(method_config(method)), '--work-dir',
                           str(work_dir), '--force', '--cfg-options', *options]
                process = subprocess.Popen(command, cwd=REPO, env=child_env(args.jobs), stdout=log,
                                           stderr=subprocess.STDOUT)
                log.close()
                running[method] = (process, work_dir, time.perf_counter())
            time.sleep(1)
            for method, (process, work_dir, started) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[method]
                if process.returncode != 0:
                    for other, *_ in running.values():
                        other.terminate()
                    raise SystemExit(f'{method} failed with exit code {process.returncode}; its log is '
                                     f'{work_dir / "adapt.log"}')
                bar.write(f'{method}: done in {time.perf_counter() - started:.0f} s ({work_dir})')
            bar.n = sum(finished_segments(out / method) for method in args.methods
                        if method not in waiting)
            bar.refresh()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if not (args.data / 'manifest.json').exists():
        print(f'writing the demo data to {args.data} ...', flush=True)
        camvid = ['--camvid', str(args.camvid)] if args.camvid else []
        generated = subprocess.run([sys.executable, 'tools/make_demo_data.py', '--preset', 'tiny_segformer',
                                    '--out', str(args.data), *camvid], cwd=REPO)
        if generated.returncode != 0:
            raise SystemExit(f'the demo data could not be written (exit status {generated.returncode})')
    out = args.work_dir / args.split
    run_methods(args, out)
    runs = {method: load_results(out / method) for method in args.methods}
    table = format_comparison(runs)
    from imse_seg.reporting.plot import plot_stream  # matplotlib only when plotting
    plot = plot_stream(runs, out / 'miou_stream.png')
    command = ' '.join(['python', 'tools/run_demo.py', *(sys.argv[1:] if argv is None else argv)])
    summary = (f'mIoU (%) on the demo stream (ACDC split `{args.split}`), per condition averaged over '
               f'rounds; `{command}`\n\n{table}\n')
    atomic_write_text(out / 'summary.md', summary)
    print(f'\n{summary}\nplot: {plot}\ntable: {out / "summary.md"}\n'
          f'done in {(time.perf_counter() - started) / 60:.1f} min', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
