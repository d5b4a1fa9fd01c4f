"""Train the bundled demo's source model from scratch with mmseg's runner and write a stripped checkpoint.

    python tools/train_source.py [--config configs/demo/train_source.py] [--iters N] [--seed 0]
        [--work-dir work_dirs/demo_source] [--out data/demo_source/segformer_tiny_camvid.pth]

It needs the generated demo tree (``python tools/make_demo_data.py --preset tiny_segformer``). The run is seeded and uses
deterministic algorithms; mmengine logs progress and the clear-val mIoU to the console and the work dir.
The final weights are validated in float32, cast to ``--precision`` (float16 by default, half the size)
and validated again, and written as ``{'state_dict', 'meta'}`` holding plain types only, so that
``torch.load(weights_only=True)`` and mmengine's ``load_checkpoint`` read it. docs/demo_source.md gives the
command, time and scores of the committed checkpoint.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

# OpenMP threads that sleep instead of spinning while they wait: on a shared 2-core machine, spinning
# threads slowed training more than tenfold whenever another process ran; sleeping makes a step about 40%
# longer on an idle machine. Set before torch loads OpenMP.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import imse_seg  # noqa: E402,F401  (before mmseg: installs the mmcv.ops stand-in)
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default='configs/demo/train_source.py', help='training config')
    parser.add_argument('--iters', type=int, default=None, help='training iterations (default: the config)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the runner (default 0)')
    parser.add_argument('--work-dir', default='work_dirs/demo_source', help='logs and the full checkpoint')
    parser.add_argument('--out', type=Path, default=Path('data/demo_source/segformer_tiny_camvid.pth'),
                        help='the stripped checkpoint to write')
    parser.add_argument('--precision', choices=['float16', 'float32'], default='float16',
                        help='dtype of the floating-point tensors written (default float16)')
    args = parser.parse_args(argv)
    if args.iters is not None and args.iters < 1:
        parser.error('--iters must be positive')
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The training config with the command line's seed, work dir and iteration count applied."""
    cfg = Config.fromfile(args.config)
    cfg.work_dir = args.work_dir
    cfg.randomness = dict(seed=args.seed, deterministic=True)
    if args.iters is not None:
        cfg.train_cfg.max_iters = args.iters
        cfg.train_cfg.val_interval = min(cfg.train_cfg.val_interval, args.iters)
        cfg.default_hooks.checkpoint.interval = args.iters
        warmup, decay = cfg.param_scheduler
        warmup.end = min(warmup.end, max(1, args.iters // 10))
        decay.begin, decay.end = warmup.end, args.iters
    return cfg


def cast_state_dict(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A CPU copy of ``state_dict`` with its floating-point tensors cast to ``dtype`` (others unchanged)."""
    return {name: (tensor.detach().to('cpu', dtype) if tensor.is_floating_point() else tensor.detach().cpu())
            for name, tensor in state_dict.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(['python', 'tools/train_source.py', *(sys.argv[1:] if argv is None else argv)])
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg)
    started = time.perf_counter()
    runner.train()
    train_minutes = (time.perf_counter() - started) / 60
    model = runner.model
    weights = cast_state_dict(model.state_dict(), torch.float32)
    fp32_miou = float(runner.val_loop.run()['mIoU'])
    dtype = getattr(torch, args.precision)
    stored = cast_state_dict(weights, dtype)
    model.load_state_dict(cast_state_dict(stored, torch.float32))
    stored_miou = float(runner.val_loop.run()['mIoU'])
    meta = runner.train_dataloader.dataset.metainfo
    checkpoint = dict(state_dict=stored, meta=dict(
        dataset_meta=dict(classes=list(meta['classes']), palette=[list(c) for c in meta['palette']]),
        trained_by=command, config=str(args.config), seed=args.seed, iters=int(cfg.train_cfg.max_iters),
        precision=args.precision, clear_val_mIoU=stored_miou, clear_val_mIoU_float32=fp32_miou,
        train_minutes=round(train_minutes, 1), torch=str(torch.__version__), threads=torch.get_num_threads()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, args.out)
    size_mb = args.out.stat().st_size / 2 ** 20
    print(f'trained {cfg.train_cfg.max_iters} iterations in {train_minutes:.1f} min; clear val mIoU '
          f'{fp32_miou:.2f} (float32), {stored_miou:.2f} ({args.precision}); wrote {args.out} '
          f'({size_mb:.1f} MiB)', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
