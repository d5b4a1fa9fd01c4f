"""Continual test-time adaptation with an mmengine config: ``python tools/adapt.py CONFIG [options]``.

The usual mmseg test-script options (``--checkpoint``, ``--work-dir``, ``--cfg-options``, ``--launcher``)
plus ``--force`` (remove what a previous run wrote in the work dir and start over), ``--resume`` (continue
the interrupted run in the work dir from its stream checkpoint, docs/reliability.md), ``--random-weights``
(adapt without a source checkpoint, on purpose) and ``--dry-run`` (build the model and pipeline without
data, and say whether the checkpoint loads, e.g. to check a config in CI). The run holds a lock on its work
dir throughout; config, checkpoint and work-dir mistakes are answered in one line with exit status 2,
before anything is written. A run stopped by SIGTERM or Ctrl-C saves its state and exits with 128 + the
signal's number.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

import imse_seg  # noqa: F401  (before mmseg: installs the mmcv.ops stand-in)
import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from imse_seg.cli import exit_with
from imse_seg.config_check import check_top_level
from imse_seg.seg.dry_run import dry_run
from imse_seg.seg.engine.stream_checkpoint import StreamInterrupted
from imse_seg.seg.preflight import check_adapt_config, check_source_checkpoint
from imse_seg.work_dir import WorkDirLock, prepare_work_dir

RANK_VARIABLES = dict(pytorch='RANK', slurm='SLURM_PROCID', mpi='OMPI_COMM_WORLD_RANK')
"""Where each launcher puts the process's rank before the process group exists."""


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
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The config with the command line applied, checked before anything heavy is built."""
    cfg = Config.fromfile(args.config)
    check_top_level(cfg.keys(), added=[key.split('.')[0] for key in args.cfg_options or {}])
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or str(Path('work_dirs') / Path(args.config).stem)
    if args.checkpoint:
        cfg.load_from = args.checkpoint
    if args.random_weights:
        cfg.load_from = None
    if args.force:
        cfg.test_cfg.force = True
    if args.resume:
        cfg.test_cfg.resume = True
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = build_config(args)
    check_adapt_config(cfg)
    if args.dry_run:
        dry_run(cfg)
        return 0
    check_source_checkpoint(cfg, args.random_weights)
    first_rank = int(os.environ.get(RANK_VARIABLES.get(args.launcher, ''), '0')) == 0
    lock = WorkDirLock(cfg.work_dir, take_over=args.force or args.resume) if first_rank else contextlib.nullcontext()
    with lock:
        prepare_work_dir(cfg.work_dir, force=args.force and first_rank, resume=args.resume,
                         keep=(Path(args.config),))
        if args.launcher == 'pytorch' and not torch.cuda.is_available():
            # mmengine's own set-up calls torch.cuda.set_device; on CPU-only hosts join the group over gloo
            # first (the runner then finds it initialised), and run without a model wrapper's device ids.
            torch.distributed.init_process_group('gloo')
            cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)
        runner = Runner.from_cfg(cfg)
        runner.test()
    return 0


if __name__ == '__main__':
    try:
        exit_with(main)
    except StreamInterrupted as stop:
        print(str(stop), file=sys.stderr)
        sys.exit(128 + stop.signal)
