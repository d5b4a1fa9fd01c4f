"""A/B of the spectral weight cache, in one process: cached reads against recomposition on every read.

Runs, interleaved round by round on the same input (``imse_seg.benchmarking``): plain inference, the
spectral segmentor's inference, and one ``imse_stag`` step (and TENT's, the reference of the issue's
target), each once with the layers as they are (:class:`imse_seg.core.SpectralWeight` reuses a composed
weight while its factors are unchanged) and once with every read recomposed, which is how the layers
worked before the cache. Prints median ms, ratios to plain inference and the cached/uncached ratio of each
pair, and writes JSON. Run: ``.venv/bin/python benchmarks/spectral_cache_ab.py CONFIG [--device cuda]``.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import imse_seg  # noqa: F401  (before mmseg: installs the mmcv.ops stand-in)
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

from imse_seg.benchmarking import measure_cases
from imse_seg.benchmarking.report import paired_ratio, ratios_to_inference
from imse_seg.benchmarking.segmentation import (build_segmentor, cycling, load_setup, no_grad_forward,
                                                 random_inputs, spectral_parameters)
from imse_seg.benchmarking.timing import device_name
from imse_seg.core import SpectralWeight
from imse_seg.registry import build_adaptation
from imse_seg.seg.adaptation.segmentation import segmentor_logits

ROOT = Path(__file__).resolve().parents[1]
METHODS = ('tent', 'imse_stag')


def recompose_every_read(model: nn.Module) -> nn.Module:
    """Make every spectral weight of ``model`` recompose on each read (the behaviour before the cache)."""
    for module in model.modules():
        if isinstance(module, SpectralWeight):
            module.forward = lambda original, weight=module: weight.compose()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--checkpoint')
    parser.add_argument('--size', default='120x160', help='HxW')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=11)
    parser.add_argument('--out', default='work_dirs/spectral_cache_ab.json')
    args = parser.parse_args()
    init_default_scope('mmseg')
    device = torch.device(args.device)
    if device.type == 'cpu':
        torch.set_num_threads(args.threads)
    size = tuple(int(x) for x in args.size.lower().split('x'))
    checkpoint = args.checkpoint or Config.fromfile(args.config).get('load_from')
    model_cfg, methods = load_setup(args.config, str(ROOT / 'configs/_base_/methods/segformer.py'), METHODS)
    inputs = random_inputs(args.batch, size, device, seed=0)
    cases = {'inference': no_grad_forward(build_segmentor(model_cfg, checkpoint, device), inputs[0])}
    for variant in ('cached', 'uncached'):
        spectral = build_segmentor(model_cfg, checkpoint, device)
        spectral_parameters(methods)(spectral)
        if variant == 'uncached':
            recompose_every_read(spectral)
        cases[f'spectral_inference:{variant}'] = no_grad_forward(spectral, inputs[0])
    for name in METHODS:
        for variant in ('cached', 'uncached') if name == 'imse_stag' else ('cached',):
            model = build_segmentor(model_cfg, checkpoint, device)
            method = build_adaptation(methods[name])
            method.setup(model, segmentor_logits)
            if variant == 'uncached':
                recompose_every_read(model)
            cases[f'step:{name}:{variant}'] = cycling(lambda x, m=method, s=model: m.adapt(s, x), inputs)
    results = measure_cases(cases, device, args.warmup, args.repeats)
    ratios = ratios_to_inference(results)
    pairs = {what: paired_ratio(results, f'{what}:cached', f'{what}:uncached')
             for what in ('spectral_inference', 'step:imse_stag')}
    print(f'device: {device_name(device)}; torch {torch.__version__}; {args.batch}x{size[0]}x{size[1]}')
    for name, result in results.items():
        print(f'{name:30s} {1000 * result.wall_median:10.2f} ms {ratios[name]:8.3f} x inference')
    for what, ratio in pairs.items():
        print(f'{what}: cached / uncached = {ratio:.3f}')
    imse_over_tent = {variant: paired_ratio(results, f'step:imse_stag:{variant}', 'step:tent:cached')
                      for variant in ('cached', 'uncached')}
    print('imse_stag / tent: ' + ', '.join(f'{k} {v:.3f}' for k, v in imse_over_tent.items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(
        config=args.config, checkpoint=checkpoint, device=device_name(device), torch_version=torch.__version__,
        omp_wait_policy=os.environ.get('OMP_WAIT_POLICY'), batch=args.batch, size=list(size),
        warmup=args.warmup, repeats=args.repeats, cases={n: r.as_dict() for n, r in results.items()},
        ratio_to_inference=ratios, cached_over_uncached=pairs, imse_stag_over_tent=imse_over_tent),
        indent=1) + '\n')
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
