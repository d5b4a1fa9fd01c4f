"""Continual test-time adaptation of a timm classifier: ``python tools/adapt_cls.py CONFIG [options]``.

A sibling of ``tools/adapt.py``: the segmentation path runs inside mmengine's Runner (mmseg models, data
pipelines, evaluators), which a timm classifier on an ImageNet-C folder tree does not need; this entry
point reads the same kind of mmengine config and builds the same registered adaptation methods, and
writes results in the same format (``results.jsonl``/``results.csv``, one row per (corruption, severity,
round)). ``--setting`` swaps the stream setting (a file of ``configs/cls/_base_/settings/``).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mmengine.config import Config, DictAction

from imse_seg.cli import exit_with, read_config
from imse_seg.cls.runner import run_classification


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='classification config, e.g. configs/cls/demo_imse.py')
    parser.add_argument('--setting', help='stream setting config replacing the config\'s stream (and data '
                                          'overrides), e.g. configs/cls/_base_/settings/gradual.py')
    parser.add_argument('--checkpoint', help="source checkpoint (overrides the config's model.checkpoint)")
    parser.add_argument('--work-dir', help='where results go (default: work_dirs/<config name>[_<setting>])')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. data.batch_size=64 method.optimizer.lr=1e-3')
    parser.add_argument('--force', action='store_true', help='overwrite results already in the work dir')
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
    summary = run_classification(cfg, work_dir, force=args.force)
    print(f'{work_dir}: mean accuracy {summary["accuracy"]:.2f}% over {summary["segments"]} segments')
    return 0


if __name__ == '__main__':
    exit_with(main)
