"""CoTTA's pieces (Wang et al., CVPR 2022): mean teacher, augmentation-averaged pseudo-labels, restore.

Plain functions over modules and tensors, shared by the segmentation and classification paths:
- :func:`ema_update`: the teacher follows the student, ``t <- a t + (1 - a) s`` (a = 0.999), after every step;
- :func:`stochastic_restore`: each weight element returns to its source value with probability p (0.01),
  which keeps a continual stream from drifting away from the source model;
- :func:`multi_view_probabilities`: the teacher's softmax averaged over scaled and flipped views, mapped back
  to the reference view's grid;
- :func:`confident_or_averaged`: where the source ("anchor") model is confident on the plain view, keep the
  teacher's plain-view prediction, elsewhere use the view average (segmentation-checkpoints notes: the
  published threshold is 0.69).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float = 0.999) -> None:
    """``t <- momentum * t + (1 - momentum) * s`` for every parameter (buffers are left alone)."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)


@torch.no_grad()
def stochastic_restore(model: nn.Module, source_state: dict[str, Tensor], probability: float = 0.01,
                       generator: torch.Generator | None = None) -> None:
    """Reset each element of every trainable parameter to its source value with ``probability``."""
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        mask = torch.rand(param.shape, generator=generator, device='cpu').to(param.device) < probability
        param.copy_(torch.where(mask, source_state[name].to(param.device), param))


def multi_view_probabilities(predict: Callable[[Tensor], Tensor], images: Tensor, scales: Sequence[float],
                             flip: bool = True, align_corners: bool = False) -> tuple[Tensor, Tensor]:
    """Softmax of ``predict`` averaged over ``scales`` x (no flip, flip), on the scale-1.0 view's grid.

    ``predict`` maps images (B x 3 x H x W) to logits (B x K x h x w). Every view is resized by ``scale``
    (bilinear) and predicted; its logits are resized (bilinear, ``align_corners`` as the segmentor's) to the
    grid of the scale-1.0 prediction, softmaxed and flipped back. This is the order of CoTTA's official
    segmentation code (qinenergy/cotta, mmseg 0.x ``EncoderDecoder.inference``/``aug_test``: logits resized
    to the common size, then softmax, then un-flipped, then the mean); there the common size is the original
    image's, here it is the scale-1.0 prediction's. Returns ``(mean over views, plain-view probabilities)``.
    """
    if 1.0 not in scales:
        raise ValueError(f'the scales {list(scales)} must include 1.0, the reference view')
    plain = predict(images).softmax(dim=1)
    size = plain.shape[-2:]
    height, width = images.shape[-2:]
    total, count = torch.zeros_like(plain), 0
    for scale in scales:
        view = images if scale == 1.0 else F.interpolate(
            images, size=(round(height * scale), round(width * scale)), mode='bilinear', align_corners=False)
        for flipped in ((False, True) if flip else (False,)):
            if scale == 1.0 and not flipped:
                probs = plain
            else:
                logits = predict(view.flip(-1) if flipped else view)
                if logits.shape[-2:] != size:
                    logits = F.interpolate(logits, size=size, mode='bilinear', align_corners=align_corners)
                probs = logits.softmax(dim=1)
                probs = probs.flip(-1) if flipped else probs
            total += probs
            count += 1
    return total / count, plain


def confident_or_averaged(anchor_probs: Tensor, plain: Tensor, averaged: Tensor, threshold: float = 0.69) -> Tensor:
    """Per pixel (or sample): ``plain`` where the anchor's max probability exceeds ``threshold``, else ``averaged``."""
    confident = anchor_probs.max(dim=1, keepdim=True).values > threshold
    return torch.where(confident, plain, averaged)
