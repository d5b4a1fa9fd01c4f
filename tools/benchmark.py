"""Cost of inference and of one adaptation step per method: ``python tools/benchmark.py CONFIG [options]``.

For every input size and batch size (the grid of ``--sizes`` x ``--batch-sizes``) times plain inference,
one ``adapt`` step of each method (source, tent, cotta, imse, tent_stag, imse_stag and imse_stag without
SAM's second pass), the spectral segmentor's inference with unchanged singular values, the spectral weight
recomposition, the STAG loss and the code bank's statistics and retrieval (see
:mod:`imse_seg.benchmarking.segmentation`). Medians over ``--repeats`` interleaved rounds after
``--warmup`` rounds; peak memory of one more call. Prints a table with ratios to plain inference (and of
each step to a TENT step) and the issue's targets, and writes JSON. On CPU the default is one intra-op thread (``--threads``): on a small
shared machine more threads measure the contention more than the work. ``--amp``: inference and steps in mixed
precision, as ``tools/adapt.py --amp``.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import imse_seg  # noqa: F401  (before mmseg: installs the mmcv.ops stand-in)
import torch
from mmengine.registry import init_default_scope

from imse_seg.benchmarking import cpu_model, measure_cases
from imse_seg.benchmarking.report import format_table, format_targets, run_record
from imse_seg.benchmarking.segmentation import METHODS, build_segmentor, load_setup, segmentation_cases
from imse_seg.benchmarking.timing import available_device, device_name
from imse_seg.core.precision import check_amp_device
from imse_seg.cli import exit_with

ROOT = Path(__file__).resolve().parents[1]


def size(text: str) -> tuple[int, int]:
    height, width = text.lower().split('x')
    return int(height), int(width)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='model or adaptation config, e.g. configs/demo_ctta.py')
    parser.add_argument('--checkpoint', help='segmentor weights (default: the config\'s load_from, if any)')
    parser.add_argument('--methods-file', default=str(ROOT / 'configs/_base_/methods/segformer.py'),
                        help='where method configs not in CONFIG are found')
    parser.add_argument('--methods', nargs='+', default=list(METHODS), help='methods to step')
    parser.add_argument('--sizes', nargs='+', type=size, default=[(120, 160)], help='input sizes, HxW')
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=[1])
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--threads', type=int, default=1, help='torch intra-op threads on CPU')
    parser.add_argument('--amp', action='store_true',
                        help='inference and adaptation steps in mixed precision, as tools/adapt.py --amp '
                             '(bfloat16 autocast, losses in float32)')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=11)
    parser.add_argument('--out', default='work_dirs/benchmark.json', help='JSON output')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = available_device(args.device)
    init_default_scope('mmseg')
    if device.type == 'cpu':
        torch.set_num_threads(args.threads)
    from mmengine.config import Config
    checkpoint = args.checkpoint or Config.fromfile(args.config).get('load_from')
    model_cfg, methods = load_setup(args.config, args.methods_file, args.methods)
    if args.amp:
        check_amp_device(device)
    print(f'device: {device_name(device)}; torch {torch.__version__}; {"mixed" if args.amp else "full"} precision')
    runs = []
    for batch in args.batch_sizes:
        for shape in args.sizes:
            torch.manual_seed(0)
            cases = segmentation_cases(lambda: build_segmentor(model_cfg, checkpoint, device), methods,
                                       batch, shape, device, amp=args.amp)
            results = measure_cases(cases, device, args.warmup, args.repeats)
            record = run_record(batch, shape, results)
            runs.append(record)
            print(f'\nbatch {batch}, {shape[0]}x{shape[1]}')
            print(format_table(results))
            print(format_targets(record['targets']))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(
        config=args.config, checkpoint=checkpoint, device=device_name(device), cpu_model=cpu_model(),
        torch_version=torch.__version__, threads=torch.get_num_threads(), amp=args.amp,
        omp_wait_policy=os.environ.get('OMP_WAIT_POLICY'), warmup=args.warmup, repeats=args.repeats,
        methods=methods, runs=runs), indent=1) + '\n')
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    exit_with(main)
