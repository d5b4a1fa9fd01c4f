"""Micro-benchmark: the STAG loss against a SegFormer decode-head forward, on this CPU (not a test).

Builds mmseg's ``SegformerHead`` (in_channels 64/128/320/512, channels 768, 19 classes) on random features
of a 256x512 input (strides 4, 8, 16, 32) and times, as medians over repeated runs after a warm-up, with
autograd recording on as during adaptation (cases interleaved round by round; ratios are medians of the
per-round ratios):

- the head forward (its logits are at 1/4 resolution, 64x128);
- the closed-form STAG loss (reading A, :class:`imse_seg.core.stag.StagAlignment`) on those 64x128 logits,
  and on the full 256x512 pixel map (logits upsampled, as the entropy loss of a segmentation adapter sees
  them; the upsampling is not counted, the base loss needs it too);
- the STAG loss's forward and backward to the logits;
- for scale, the explicit alternative that forms a 768-d gradient per pixel, at head resolution.

Prints a table and writes ``docs/benchmarks/stag_cost.json`` (CPU model, torch version, threads). The STAG
loss within whole adaptation steps, on a full segmentor, is measured by ``tools/benchmark.py``
(``docs/benchmarks.md``); both share :mod:`imse_seg.benchmarking`'s timing.
Run: ``.venv/bin/python benchmarks/stag_cost.py [--threads N]``. The default is one intra-op thread: on a
small machine shared with other jobs, OpenMP's threads wait on busy cores and elementwise kernels slow
down by orders of magnitude (a 155k-element multiply measured 16 us on 1 thread and 8.6 ms on 2), which
would measure the contention, not the loss.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

import imse_seg  # noqa: F401  (makes the pinned OpenMMLab stack importable)
import mmseg.models  # noqa: F401  (registers SegformerHead)
from imse_seg.benchmarking import cpu_model, interleaved_timings
from imse_seg.core.stag import StagAlignment, entropy_feature_gradient
from mmseg.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / 'docs' / 'benchmarks' / 'stag_cost.json'
HEIGHT, WIDTH = 256, 512
CHANNELS = (64, 128, 320, 512)
STRIDES = (4, 8, 16, 32)
WARMUP, REPEATS = 3, 21


def explicit_stag(logits: torch.Tensor, weight: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Reading (A) by its definition: a D-dimensional gradient per pixel, then cosines."""
    g = entropy_feature_gradient(logits, weight).movedim(1, -1).reshape(-1, weight.shape[1])
    y = logits.detach().argmax(dim=1).reshape(-1)
    return (1 - F.cosine_similarity(g, anchors[y], dim=1)).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=1, help='torch intra-op threads (default 1)')
    torch.set_num_threads(parser.parse_args().threads)
    torch.manual_seed(0)
    head = MODELS.build(dict(type='SegformerHead', in_channels=list(CHANNELS), in_index=[0, 1, 2, 3],
                             channels=768, num_classes=19, dropout_ratio=0.1,
                             norm_cfg=dict(type='BN', requires_grad=True), align_corners=False)).eval()
    feats = [torch.randn(1, c, HEIGHT // s, WIDTH // s) for c, s in zip(CHANNELS, STRIDES)]
    alignment = StagAlignment.from_classifier(head.conv_seg)
    weight = head.conv_seg.weight.detach()

    with torch.enable_grad():
        logits = head(feats)
        head_res = logits.detach().requires_grad_(True)
        full_res = F.interpolate(logits.detach(), size=(HEIGHT, WIDTH), mode='bilinear',
                                 align_corners=False).requires_grad_(True)

        def stag_backward(x: torch.Tensor) -> Callable[[], None]:
            return lambda: torch.autograd.grad(alignment(x), x)

        results = interleaved_timings({
            'head_forward': lambda: head(feats),
            'stag_forward_head_res': lambda: alignment(head_res),
            'stag_forward_full_res': lambda: alignment(full_res),
            'stag_forward_backward_head_res': stag_backward(head_res),
            'stag_forward_backward_full_res': stag_backward(full_res),
            'explicit_forward_head_res': lambda: explicit_stag(head_res, weight, alignment.anchors),
        }, torch.device('cpu'), WARMUP, REPEATS)
    times = {name: result.wall_s for name, result in results.items()}
    timings = {name: statistics.median(t) for name, t in times.items()}
    head_times = times['head_forward']
    ratios = {name: statistics.median(x / h for x, h in zip(t, head_times))
              for name, t in times.items() if name != 'head_forward'}

    print(f'CPU: {cpu_model()}  torch {torch.__version__}  threads {torch.get_num_threads()}')
    print(f'head logits {tuple(logits.shape)}, full pixel map {tuple(full_res.shape)}')
    print(f'{"what":34s} {"median ms":>10s} {"/ head fwd (median of rounds)":>30s}')
    for name, t in timings.items():
        ratio = '' if name == 'head_forward' else f'{100 * ratios[name]:.2f}%'
        print(f'{name:34s} {1000 * t:10.2f} {ratio:>30s}')

    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps({
        'cpu_model': cpu_model(),
        'torch_version': torch.__version__,
        'threads': torch.get_num_threads(),
        'input_size': [HEIGHT, WIDTH],
        'head_logits_shape': list(logits.shape),
        'full_res_logits_shape': list(full_res.shape),
        'feature_dim': 768,
        'num_classes': 19,
        'warmup': WARMUP,
        'repeats': REPEATS,
        'median_seconds': timings,
        'ratio_to_head_forward': ratios,
    }, indent=2) + '\n')
    print(f'wrote {OUTPUT.relative_to(ROOT)}')


if __name__ == '__main__':
    main()
