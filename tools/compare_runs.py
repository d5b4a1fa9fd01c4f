"""Compare runs of the same stream: one markdown row per run, the metric per segment, the mean and s/image.

    python tools/compare_runs.py work_dirs/cifar10c/n2000/{source,tent,imse_stag} --metric error

Each argument is a run folder holding ``results.jsonl`` (its folder name labels the row); ``--metric`` is
a metric of the results (``mIoU`` on segmentation, ``accuracy`` or ``error`` on classification). Runs of
different streams are refused, and a missing folder or unknown metric ends with one line (exit 2).
"""
import argparse
from pathlib import Path
from typing import List, Optional

from imse_seg.cli import exit_with
from imse_seg.errors import ConfigError
from imse_seg.reporting import load_results
from imse_seg.reporting.comparison import format_comparison
from imse_seg.reporting.results import plottable_columns


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('runs', nargs='+', type=Path, help='run folders (each with results.jsonl)')
    parser.add_argument('--metric', default='mIoU', help='the metric to compare (default mIoU)')
    parser.add_argument('--digits', type=int, default=1, help='decimals of the metric (default 1)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    runs = {path.resolve().name: load_results(path) for path in args.runs}
    for label, records in runs.items():
        if args.metric not in plottable_columns(records):
            raise ConfigError(f'run {label} has no metric {args.metric!r}; it has: '
                             f'{", ".join(plottable_columns(records))}')
    try:
        print(format_comparison(runs, metric=args.metric, digits=args.digits))
    except ValueError as error:   # runs of different streams
        raise ConfigError(str(error)) from error
    return 0


if __name__ == '__main__':
    exit_with(main)
