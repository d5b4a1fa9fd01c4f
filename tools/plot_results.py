"""Plot a metric along the continual stream for one or more runs.

    python tools/plot_results.py work_dirs/tent work_dirs/imse/results.jsonl --out plot.png \
        [--metric mIoU] [--labels TENT IMSE]

Each argument is a run folder (holding ``results.jsonl``) or a ``.jsonl`` file; a line's label is the
run folder's name unless ``--labels`` gives one per run. ``--metric`` is any metric of the results or a
per-class column (``per_class/<class>``); a missing run or an unknown metric ends with one line (exit 2).
"""
import argparse
from pathlib import Path
from typing import List, Optional

from imse_seg.cli import exit_with
from imse_seg.reporting import RESULTS_JSONL, load_results
from imse_seg.reporting.plot import plot_stream


def run_label(path: Path) -> str:
    """The run folder's name (the parent's for ``<run>/results.jsonl``), else the file's stem."""
    if path.name == RESULTS_JSONL:
        return path.resolve().parent.name
    return path.resolve().name if path.is_dir() else path.stem


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Plot a metric per segment along the continual stream.')
    parser.add_argument('results', nargs='+', type=Path, help='run folders or results .jsonl files')
    parser.add_argument('--out', type=Path, required=True, help='the PNG to write')
    parser.add_argument('--metric', default='mIoU',
                        help='metric to plot (default: mIoU), or a class\'s column, e.g. per_class/car')
    parser.add_argument('--labels', nargs='+', help='one legend label per run (default: run folder names)')
    args = parser.parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.results):
        parser.error(f'--labels gives {len(args.labels)} labels for {len(args.results)} runs')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    labels = args.labels or [run_label(path) for path in args.results]
    if len(set(labels)) != len(labels):
        raise SystemExit(f'runs share a label ({", ".join(labels)}); give distinct ones with --labels')
    runs = {label: load_results(path) for label, path in zip(labels, args.results)}
    print(f'saved {plot_stream(runs, args.out, metric=args.metric)}')
    return 0


if __name__ == '__main__':
    exit_with(main)
