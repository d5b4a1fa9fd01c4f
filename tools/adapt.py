"""Continual test-time adaptation with an mmengine config: ``python tools/adapt.py CONFIG [options]``.

The usual mmseg test-script options (``--checkpoint``, ``--work-dir``, ``--cfg-options``, ``--launcher``)
plus ``--force`` (overwrite results in the work dir), ``--resume`` (continue the interrupted run in the
work dir from its stream checkpoint, docs/reliability.md) and ``--dry-run`` (build the model and pipeline
without data, e.g. to check a config in CI). A run stopped by SIGTERM or Ctrl-C saves its state and exits
with 128 + the signal's number.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import imse_seg  # noqa: F401  (before mmseg: installs the mmcv.ops stand-in)
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmseg.registry import MODELS

from imse_seg.cli import exit_with
from imse_seg.seg.checkpoint import check_checkpoint_classes, check_checkpoint_fits
from imse_seg.seg.dry_run import dry_run
from imse_seg.seg.engine.stream_checkpoint import StreamInterrupted


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='adaptation config, e.g. configs/acdc_ctta.py')
    parser.add_argument('--checkpoint', help='source model checkpoint (overrides the config\'s load_from)')
    parser.add_argument('--work-dir', help='where logs and results go (default: work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. test_cfg.rounds=3')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    restart = parser.add_mutually_exclusive_group()
    restart.add_argument('--force', action='store_true',
                         help='overwrite the results and stream checkpoint already in the work dir')
    restart.add_argument('--resume', action='store_true',
                         help='continue the run in the work dir from its stream checkpoint')
    parser.add_argument('--dry-run', action='store_true',
                        help='build the model and the test pipeline on a random image, read no data')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The config with the command line applied, checked before anything heavy is built."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or str(Path('work_dirs') / Path(args.config).stem)
    if args.checkpoint:
        cfg.load_from = args.checkpoint
    if args.force:
        cfg.test_cfg.force = True
    if args.resume:
        cfg.test_cfg.resume = True
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = build_config(args)
    if args.dry_run:
        dry_run(cfg)
        return 0
    if cfg.get('load_from'):
        check_checkpoint_classes(cfg.load_from, cfg.model.module.decode_head.num_classes)
        init_default_scope(cfg.get('default_scope', 'mmseg'))
        check_checkpoint_fits(cfg.load_from, MODELS.build(cfg.model.module))
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
