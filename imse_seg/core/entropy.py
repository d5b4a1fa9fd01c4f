"""Prediction entropy, SAR-style reliable filtering and the finiteness check (methods.md 1.2).

Every function takes logits with the class dimension at 1, so one code path serves classification
(``B x K``) and segmentation (``B x K x H x W``); per-sample quantities then have the logits' shape
without the class dimension (``B`` or ``B x H x W``). A *valid* mask of that shape marks the samples or
pixels that may count at all (not padding, not the ignore index); everything else never enters a mean.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

IGNORE_INDEX = 255


class NonFiniteError(FloatingPointError):
    """A tensor that must be finite (logits, a loss, gradients) holds NaN or Inf."""


def assert_finite(tensor: Tensor, what: str) -> None:
    """Raise :class:`NonFiniteError` naming ``what`` and counting its NaN/Inf entries, if there are any.

    Called on logits before any loss is formed and on losses and gradients before any parameter moves,
    so a non-finite forward pass is reported where it appears and never reaches the weights.
    """
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return
    nan = int(torch.isnan(tensor).sum())
    inf = int((~finite).sum()) - nan
    raise NonFiniteError(f'{what} is not finite: {nan} NaN and {inf} Inf of {tensor.numel()} values '
                         f'(shape {tuple(tensor.shape)})')


def check_logits(logits: Tensor) -> None:
    """Raise ``ValueError`` unless ``logits`` is ``B x K`` or ``B x K x H x W`` with K >= 2."""
    if logits.dim() not in (2, 4) or logits.shape[1] < 2:
        raise ValueError(f'logits must be B x K or B x K x H x W with K >= 2 classes, got shape '
                         f'{tuple(logits.shape)}')


def check_valid(valid: Tensor | None, logits: Tensor) -> None:
    """Raise ``ValueError`` unless ``valid`` is None or a bool mask shaped like ``logits`` minus dim 1."""
    if valid is None:
        return
    expected = logits.shape[:1] + logits.shape[2:]
    if valid.dtype != torch.bool or valid.shape != expected:
        raise ValueError(f'valid must be a bool mask of shape {tuple(expected)} for logits of shape '
                         f'{tuple(logits.shape)}, got {valid.dtype} of shape {tuple(valid.shape)}')


def valid_mask(labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """The pixels of a label or padding map that are not ``ignore_index`` (mmseg pads with 255)."""
    return labels != ignore_index


def entropy(logits: Tensor) -> Tensor:
    """Shannon entropy ``H(p) = -sum_k p_k log p_k`` of ``softmax(logits)`` over dim 1 (methods.md 1.2).

    Computed from ``log_softmax`` so that saturated predictions give exact zeros rather than
    ``0 * log 0 = NaN``. Returns one value per sample (``B``) or per pixel (``B x H x W``).
    """
    check_logits(logits)
    log_p = logits.log_softmax(dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def entropy_margin(num_classes: int, margin: float) -> float:
    """The reliability threshold ``e0 = margin * ln K`` of SAR/IMSE (methods.md 1.2; default margin 0.4)."""
    if margin <= 0:
        raise ValueError(f'entropy margin must be positive, got {margin}')
    return margin * math.log(num_classes)


def reliable_mask(entropies: Tensor, num_classes: int, margin: float = 0.4,
                  valid: Tensor | None = None) -> Tensor:
    """Samples or pixels whose entropy is strictly below ``e0 = margin * ln K``, within ``valid``.

    ``entropies`` is the output of :func:`entropy`; the mask has its shape. SAR's filter (and IMSE's, which
    reuses it) keeps ``H < e0``; pixels outside ``valid`` are never kept, whatever their entropy.
    """
    keep = entropies < entropy_margin(num_classes, margin)
    if valid is not None:
        if valid.shape != entropies.shape:
            raise ValueError(f'valid has shape {tuple(valid.shape)}, the entropies {tuple(entropies.shape)}')
        keep = keep & valid
    return keep


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values`` over ``mask`` (all of them when None); zero, still in the graph, when it is empty.

    An empty selection (no reliable pixel in an image) must give a loss with no effect rather than the
    ``NaN`` of an empty mean, which would poison the update.
    """
    if mask is None:
        return values.mean()
    return (values * mask).sum() / mask.sum().clamp_min(1)


def mean_entropy(logits: Tensor, valid: Tensor | None = None) -> Tensor:
    """TENT's loss: the mean entropy over all valid samples or pixels."""
    check_valid(valid, logits)
    return masked_mean(entropy(logits), valid)


def reliable_entropy(logits: Tensor, margin: float = 0.4, valid: Tensor | None = None,
                     first_logits: Tensor | None = None) -> Tensor:
    """SAR/IMSE's loss: the mean entropy over the valid samples or pixels with ``H < margin * ln K``.

    The filter is computed from ``logits``. Under SAM, pass the first forward's logits as ``first_logits``
    in the second (perturbed) forward: then only the samples reliable in both forwards count, which is the
    official rule (SAR, mr-eggplant/SAR ``sar.py``: the second forward's entropies are taken at the first
    forward's reliable samples and filtered again by the margin); IMSE reuses it. Kept entropies are
    unweighted (SAR, IMSE; not EATA's confidence weighting).
    """
    check_valid(valid, logits)
    entropies = entropy(logits)
    keep = reliable_mask(entropies, logits.shape[1], margin, valid)
    if first_logits is not None:
        if first_logits.shape != logits.shape:
            raise ValueError(f'first_logits have shape {tuple(first_logits.shape)}, the logits '
                             f'{tuple(logits.shape)}')
        keep = keep & reliable_mask(entropy(first_logits.detach()), logits.shape[1], margin)
    return masked_mean(entropies, keep)
