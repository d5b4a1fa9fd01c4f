"""Continual test-time adaptation of a timm classifier: ``python tools/adapt_cls.py CONFIG [options]``.

A sibling of ``tools/adapt.py``: the segmentation path runs inside mmengine's Runner (mmseg models, data
pipelines, evaluators), which a timm classifier on an ImageNet-C folder tree does not need; this entry
point reads the same kind of mmengine config and builds the same registered adaptation methods, and
writes results in the same format (``results.jsonl``/``results.csv``, one row per (corruption, severity,
round), accuracy and error). ``--setting`` swaps the stream setting (a file of
``configs/cls/_base_/settings/``); ``--checkpoint`` takes any timm checkpoint file of the configured
model (loaded strictly, ``weights_only``); ``--dry-run`` checks a config without reading data.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mmengine.config import Config, DictAction

from imse_seg.cli import exit_with, read_config
from imse_seg.cls.runner import dry_run_classification, run_classification


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='classification config, e.g. configs/cls/demo_imse.py')
    parser.add_argument('--setting', help='stream setting config replacing the config\'s stream (and data '
                                          'overrides), e.g. configs/cls/_base_/settings/gradual.py')
    parser.add_argument('--checkpoint', help="source checkpoint (overrides the config's model.checkpoint)")
    parser.add_argument('--work-dir', help='where results go (default: work_dirs/<config name>[_<setting>])')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. data.batch_size=64 method.optimizer.lr=1e-3')
    restart = parser.add_mutually_exclusive_group()
    restart.add_argument('--force', action='store_true', help='overwrite results already in the work dir')
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
    return cfg, Path(args.work_dir or Path('work_dirs') / name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(levelname)s %(message)s')
    cfg, work_dir = build_config(args)
    if args.dry_run:
        dry_run_classification(cfg)
        return 0
    summary = run_classification(cfg, work_dir, force=args.force, resume=args.resume)
    print(f'{work_dir}: mean accuracy {summary["accuracy"]:.2f}% (error {summary["error"]:.2f}%) over '
          f'{summary["segments"]} segments')
    return 0


if __name__ == '__main__':
    exit_with(main)
