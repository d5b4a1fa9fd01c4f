"""Continual test-time adaptation of a timm classifier: ``python tools/adapt_cls.py CONFIG [options]``.

A sibling of ``tools/adapt.py``: the segmentation path runs inside mmengine's Runner (mmseg models, data
pipelines, evaluators), which a timm classifier on an ImageNet-C folder tree does not need; this entry
point reads the same kind of mmengine config and builds the same registered adaptation methods, and
writes results in the same format (``results.jsonl``/``results.csv``, one row per (corruption, severity,
round), accuracy and error). ``--setting`` swaps the stream setting (a file of
``configs/cls/_base_/settings/``); ``--checkpoint`` takes any timm checkpoint file of the configured
model (loaded strictly, ``weights_only``); ``--dry-run`` checks a config without reading data. As there,
the run holds a lock on its work dir, ``--force`` removes what a previous run wrote, a run without a
source checkpoint needs ``--random-weights``, and method config mistakes are answered in one line (exit 2).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mmengine.config import Config, DictAction
from mmengine.registry import OPTIMIZERS

from imse_seg.checkpoint import CheckpointError
from imse_seg.cli import exit_with, read_config

try:
    from imse_seg.cls.runner import dry_run_classification, run_classification
except ModuleNotFoundError as missing:  # an install without the [cls] extra
    package = (missing.name or '').split('.')[0]
    if package not in ('timm', 'torchvision'):
        raise
    print(f"error: the classification path needs {package}, which is not installed: pip install -e '.[cls]'",
          file=sys.stderr)
    sys.exit(2)
from imse_seg.config_check import check_components
from imse_seg.registry import ADAPTATION, method_for
from imse_seg.work_dir import WorkDirLock, prepare_work_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='classification config, e.g. configs/cls/demo_imse.py')
    parser.add_argument('--setting', help='stream setting config replacing the config\'s stream (and data '
                                          'overrides), e.g. configs/cls/_base_/settings/gradual.py')
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument('--checkpoint', help="source checkpoint (overrides the config's model.checkpoint)")
    weights.add_argument('--random-weights', action='store_true',
                         help="adapt a randomly initialised model on purpose (ignores model.checkpoint)")
    parser.add_argument('--work-dir', help='where results go (default: work_dirs/<config name>[_<setting>])')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. data.batch_size=64 method.optimizer.lr=1e-3')
    restart = parser.add_mutually_exclusive_group()
    restart.add_argument('--force', action='store_true',
                         help='remove what a previous run wrote in the work dir and start over')
    restart.add_argument('--resume', action='store_true',
                         help='continue the run in the work dir from its stream checkpoint')
    parser.add_argument('--dry-run', action='store_true',
                        help='build the model, method and transform and adapt once on random images; read no data')
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> tuple[Config, Path]:
    """The config with the setting and command line applied, and the work dir."""
    cfg = read_config(args.config)
    name = Path(args.config).stem
    if args.setting:
        setting = read_config(args.setting)
        cfg.stream = setting.stream
        cfg.data.update(setting.get('data', {}))
        name += '_' + Path(args.setting).stem
    if args.checkpoint:
        cfg.model.checkpoint = args.checkpoint
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.random_weights:
        cfg.model.checkpoint = None
    elif not cfg.model.get('checkpoint'):
        raise CheckpointError("no source checkpoint: set model.checkpoint in the config or pass --checkpoint, or "
                              'pass --random-weights to adapt a randomly initialised model on purpose')
    return cfg, Path(args.work_dir or Path('work_dirs') / name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(levelname)s %(message)s')
    cfg, work_dir = build_config(args)
    method_for(cfg.method['type'], 'classification')
    check_components(cfg.method, 'method', (ADAPTATION, OPTIMIZERS))
    if args.dry_run:
        dry_run_classification(cfg)
        return 0
    with WorkDirLock(work_dir, take_over=args.force or args.resume):
        if args.force:
            prepare_work_dir(work_dir, force=True, resume=False, keep=(Path(args.config),))
        summary = run_classification(cfg, work_dir, force=args.force, resume=args.resume)
    print(f'{work_dir}: mean accuracy {summary["accuracy"]:.2f}% (error {summary["error"]:.2f}%) over '
          f'{summary["segments"]} segments')
    return 0


if __name__ == '__main__':
    exit_with(main)
