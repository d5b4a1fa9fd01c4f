"""ViDA's teacher-side pieces (Liu et al., ICLR 2024): augmented views, uncertainty, knowledge allotment.

Read from Yangsenqiao/vida ``imagenet/vida.py`` (``ViDA.forward_and_adapt``, ``update_ema_variables``,
``softmax_entropy``) and ``cifar/vida.py``; plain functions over modules and tensors, for any task (the
logits are ``B x K`` or ``B x K x h x w``):

- :class:`RandomViews`: the teacher predicts N = 10 randomly augmented views of the batch;
- :func:`view_uncertainty`: ``0.1 x`` the mean over classes and samples (pixels) of the variance of the
  teacher's logits over the views (``torch.var``, unbiased, as the official code);
- :func:`homeostatic_scales`: the homeostatic knowledge allotment (section 3.3): with uncertainty u at or
  above the threshold, ``lambda_h = 1 + u, lambda_l = 1 - u`` (lean on the domain-specific high-rank
  adapters), below it ``lambda_l = 1 + u, lambda_h = 1 - u``;
- :func:`ema_update_with_adapters`: the mean teacher follows the student with one momentum for the
  original parameters and another for the adapters' (``update_ema_variables``);
- :func:`symmetric_cross_entropy`: the student's loss to the teacher's prediction, ``imagenet/vida.py``'s
  ``softmax_entropy``: the mean of the two cross-entropies, teacher to student and student to teacher,
  the teacher not differentiated (``cifar/vida.py`` keeps only the first).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .adapters import ADAPTER_NAME
from .entropy import check_logits, check_valid, masked_mean


class RandomViews:
    """``num_views`` random views of a pre-processed batch, each predicted; returns the N x B x ... logits.

    Per view, one draw for the whole batch (as torchvision transforms applied to a batch tensor in the
    official code): a contrast factor c from ``contrast``, ``x <- mean + c (x - mean)`` about each image's
    mean; Gaussian noise of ``noise_std``; a horizontal flip with ``flip_probability``, undone on dense
    (``B x K x h x w``) outputs so that every view's logits lie on the batch's grid. The official views
    (CoTTA's ``get_tta_transforms``: colour jitter of brightness, contrast, saturation, hue and gamma, an
    affine jitter, blur, flip and noise of std 0.005 on the 0-1 image) act on unnormalised images; these
    act on the tensor the method sees, after normalisation, so only the transforms that need no image range
    and keep a dense output aligned are kept; the default noise 0.022 is the official 0.005 over ImageNet's
    mean standard deviation 0.226.
    """

    def __init__(self, num_views: int = 10, flip_probability: float = 0.5,
                 contrast: tuple[float, float] = (0.7, 1.3), noise_std: float = 0.022) -> None:
        if num_views < 2:
            raise ValueError(f'the variance over views needs at least 2 views, got num_views={num_views}')
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f'flip_probability must be in [0, 1], got {flip_probability}')
        self.num_views = num_views
        self.flip_probability = flip_probability
        self.contrast = (float(contrast[0]), float(contrast[1]))
        self.noise_std = noise_std

    def __call__(self, predict: Callable[[Tensor], Tensor], inputs: Tensor,
                 generator: torch.Generator) -> Tensor:
        views = []
        for _ in range(self.num_views):
            view, flipped = self.augment(inputs, generator)
            logits = predict(view)
            views.append(logits.flip(-1) if flipped and logits.dim() > 2 else logits)
        return torch.stack(views)

    def augment(self, inputs: Tensor, generator: torch.Generator) -> tuple[Tensor, bool]:
        """One random view of ``inputs`` (B x C x H x W) and whether it is flipped."""
        low, high = self.contrast
        factor, flip = torch.rand(2, generator=generator).tolist()
        factor = low + (high - low) * factor
        noise = torch.randn(inputs.shape, generator=generator).to(device=inputs.device, dtype=inputs.dtype)
        mean = inputs.mean(dim=tuple(range(1, inputs.dim())), keepdim=True)
        view = mean + factor * (inputs - mean) + self.noise_std * noise
        flipped = flip < self.flip_probability
        return (view.flip(-1) if flipped else view), flipped


def view_uncertainty(views: Tensor, valid: Tensor | None = None, scale: float = 0.1) -> float:
    """``scale`` x the mean, over classes and valid samples (pixels), of the variance of ``views`` over dim 0.

    ``views``: N x B x K [x h x w] logits; ``valid``: B [x h x w] bool mask or None.
    """
    check_logits(views[0])
    check_valid(valid, views[0])
    per_position = views.var(dim=0).mean(dim=1)
    return scale * float(masked_mean(per_position, valid))


def homeostatic_scales(uncertainty: float, threshold: float) -> tuple[float, float]:
    """``(lambda_l, lambda_h)``: ``(1 - u, 1 + u)`` when ``u >= threshold``, else ``(1 + u, 1 - u)``."""
    if uncertainty >= threshold:
        return 1.0 - uncertainty, 1.0 + uncertainty
    return 1.0 + uncertainty, 1.0 - uncertainty


@torch.no_grad()
def ema_update_with_adapters(teacher: nn.Module, student: nn.Module, momentum: float,
                             adapter_momentum: float) -> None:
    """``t <- a t + (1 - a) s`` for every parameter, ``a = adapter_momentum`` for domain adapters' ones."""
    for (name, t), (student_name, s) in zip(teacher.named_parameters(), student.named_parameters(), strict=True):
        if name != student_name:
            raise ValueError(f'teacher parameter {name!r} faces student parameter {student_name!r}: the teacher '
                             'must be a copy of the student')
        alpha = adapter_momentum if f'.{ADAPTER_NAME}.' in f'.{name}' else momentum
        t.mul_(alpha).add_(s.detach(), alpha=1.0 - alpha)


def symmetric_cross_entropy(student: Tensor, teacher: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean over valid samples (pixels) of ``-0.5 sum p_t log p_s - 0.5 sum p_s log p_t``; teacher detached."""
    check_logits(student)
    check_valid(valid, student)
    teacher = teacher.detach()
    per_position = -0.5 * (teacher.softmax(dim=1) * student.log_softmax(dim=1)).sum(dim=1) \
        - 0.5 * (student.softmax(dim=1) * teacher.log_softmax(dim=1)).sum(dim=1)
    return masked_mean(per_position, valid)
