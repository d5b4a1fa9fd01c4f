"""The bundled CPU benchmark end to end: generate the demo data, adapt with every method, compare.

    python tools/run_demo.py [--methods source tent cotta imse tent_stag imse_stag] [--rounds N]
        [--split train|val] [--work-dir work_dirs/demo] [--data data/demo]

1. writes the demo tree (``tools/make_demo_data.py``: CamVid frames as a Cityscapes-layout source and an
   ACDC-layout fog -> night -> rain -> snow stream) unless ``--data`` already holds one;
2. runs ``tools/adapt.py configs/demo_ctta_<method>.py`` for each method, one process each, into
   ``<work-dir>/<split>/<method>/`` (the progress bar shows; mmengine's log goes to ``adapt.log`` there);
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

from imse_seg.reporting import atomic_write_text, load_results
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
    parser.add_argument('--work-dir', type=Path, default=Path('work_dirs/demo'), help='where runs go')
    parser.add_argument('--data', type=Path, default=Path('data/demo'), help='the demo tree')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='extra overrides passed to every run, e.g. custom_hooks.0.method.sam_rho=0.1')
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error('--rounds must be positive')
    for method in args.methods:
        if not method_config(method).exists():
            parser.error(f'no config for method {method!r}: {method_config(method)} does not exist')
    return args


def method_config(method: str) -> Path:
    """The demo config of one method."""
    return REPO / 'configs' / f'demo_ctta_{method}.py'


def run(command: list[str], log: Path | None = None) -> None:
    """Run a step of the demo (stdout to ``log`` if given, stderr and its progress bar to the terminal)."""
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get('OMP_WAIT_POLICY', 'PASSIVE'))
    with open(log, 'w') if log else open(os.devnull, 'w') as out:
        completed = subprocess.run(command, cwd=REPO, env=env, stdout=out if log else None)
    if completed.returncode != 0:
        where = f'; its log is {log}' if log else ''
        raise SystemExit(f'{" ".join(command)} failed with exit code {completed.returncode}{where}')


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if not (args.data / 'manifest.json').exists():
        print(f'writing the demo data to {args.data} ...', flush=True)
        run([sys.executable, 'tools/make_demo_data.py', '--out', str(args.data)])
    out = args.work_dir / args.split
    runs = {}
    for method in args.methods:
        work_dir = out / method
        work_dir.mkdir(parents=True, exist_ok=True)
        options = [f'test_dataloader.dataset.data_root={args.data}', f'test_dataloader.dataset.split={args.split}',
                   *([f'test_cfg.rounds={args.rounds}'] if args.rounds else []), *args.cfg_options]
        print(f'{method}: {method_config(method).relative_to(REPO)} -> {work_dir}', flush=True)
        run([sys.executable, 'tools/adapt.py', str(method_config(method)), '--work-dir', str(work_dir),
             '--force', '--cfg-options', *options], log=work_dir / 'adapt.log')
        runs[method] = load_results(work_dir)
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
