"""Continual test-time adaptation with an mmengine config: ``python tools/adapt.py CONFIG [options]``.

The usual mmseg test-script options (``--checkpoint``, ``--work-dir``, ``--cfg-options``, ``--launcher``,
``--show-dir``, ``--out``) plus ``--force`` (remove what a previous run wrote in the work dir and start
over), ``--resume`` (continue the interrupted run in the work dir from its stream checkpoint,
docs/reliability.md), ``--random-weights`` (adapt without a source checkpoint, on purpose) and
``--dry-run`` (build the model and pipeline without data, and say whether the checkpoint loads, e.g. to
check a config in CI). ``--show-dir DIR`` draws the ground truth and the prediction of each image (every
``--show-interval``-th, default every one) with mmseg's visualizer into ``DIR/round_<r>/<segment>/``,
``--out DIR`` writes each prediction as a label-index PNG into ``DIR/round_<r>/<segment>/``: one folder per
round, as the stream shows every image once per round. ``--amp`` runs the method's forwards in mixed
precision (``test_cfg.amp``: bfloat16 autocast, losses and updates in float32). The run holds a lock on its
work dir throughout; config, checkpoint and work-dir mistakes are answered in one line with exit status 2,
before anything is written. A run stopped by SIGTERM or Ctrl-C saves its state and exits with 128 + the
signal's number. The same run from Python: ``imse_seg.adapt`` (one code path, :mod:`imse_seg.seg.run`).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import imse_seg  # noqa: F401  (before mmseg: installs the mmcv.ops stand-in)
from mmengine.config import Config, DictAction

from imse_seg.cli import exit_with
from imse_seg.seg.dry_run import dry_run
from imse_seg.seg.engine.stream_checkpoint import StreamInterrupted
from imse_seg.seg.run import RunOptions, configure, run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='adaptation config, e.g. configs/acdc_ctta.py')
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument('--checkpoint', help='source model checkpoint, a file or a URL (overrides the '
                                              'config\'s load_from)')
    weights.add_argument('--random-weights', action='store_true',
                         help='adapt a randomly initialised model: run without a source checkpoint on purpose '
                              '(ignores the config\'s load_from)')
    parser.add_argument('--work-dir', help='where logs and results go (default: work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. test_cfg.rounds=3')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    restart = parser.add_mutually_exclusive_group()
    restart.add_argument('--force', action='store_true',
                         help='remove what a previous run wrote in the work dir (results, checkpoints, config '
                              'dumps, logs) and start over; breaks the lock a dead run left')
    restart.add_argument('--resume', action='store_true',
                         help='continue the run in the work dir from its stream checkpoint')
    parser.add_argument('--dry-run', action='store_true',
                        help='build the model and the test pipeline on a random image, read no data; say '
                             'whether the checkpoint exists and loads strictly')
    parser.add_argument('--show-dir', metavar='DIR',
                        help='draw the ground truth and the prediction of each image with mmseg\'s visualizer '
                             'into DIR/round_<r>/<segment>/<image>.png')
    parser.add_argument('--show-interval', type=int, metavar='K',
                        help='with --show-dir, draw every K-th batch of each segment (default: 1, every one)')
    parser.add_argument('--out', metavar='DIR',
                        help='write each prediction as a label-index PNG (as mmseg\'s --out) into '
                             'DIR/round_<r>/<segment>/<image>.png')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: the method\'s forwards under bfloat16 autocast (CPU and CUDA), '
                             'losses and updates in float32 (sets test_cfg.amp=True)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def run_options(args: argparse.Namespace) -> RunOptions:
    """The run options the command line asks for."""
    return RunOptions(work_dir=args.work_dir, checkpoint=args.checkpoint, random_weights=args.random_weights,
                      cfg_options=args.cfg_options, launcher=args.launcher, force=args.force, resume=args.resume,
                      show_dir=args.show_dir, show_interval=args.show_interval, out=args.out, amp=args.amp)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = run_options(args)
    cfg = configure(Config.fromfile(args.config), Path(args.config).stem, options)
    if args.dry_run:
        dry_run(cfg)
        return 0
    run(cfg, options, keep=(Path(args.config),))
    return 0


if __name__ == '__main__':
    try:
        exit_with(main)
    except StreamInterrupted as stop:
        print(str(stop), file=sys.stderr)
        sys.exit(128 + stop.signal)
