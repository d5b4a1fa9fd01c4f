"""IMSE's diversity (variance-maximisation) term over recorded expert activations (methods.md 1.3).

Each spectral layer that records (``record_expert_activations``) keeps, from the forward pass that just
ran, the alignment of its normalised input tokens with its experts, ``a = (x / ||x||) Vh^T`` (tokens x r,
batch and spatial positions flattened into tokens). The term is computed from those tensors alone: no
extra forward, and its gradient reaches the trained singular values of earlier blocks through the inputs.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def expert_spread(activations: Tensor) -> Tensor:
    """``sigma_i``: the unbiased standard deviation of each expert's activation over all tokens (step 3)."""
    if activations.dim() != 2:
        raise ValueError(f'expert activations must be tokens x experts, got shape {tuple(activations.shape)}')
    if activations.shape[0] < 2:
        raise ValueError('the spread of expert activations needs at least 2 tokens, got '
                         f'{activations.shape[0]}')
    return activations.std(dim=0)


def layer_diversity(activations: Tensor, ratio: float = 1.0) -> Tensor:
    """``D_layer``: the mean spread of the experts whose sigma is strictly below the ``ratio`` threshold.

    Official semantics (methods.md 1.3, step 4, as the issue-17 read of the IMSE code states it): of the r
    spreads sorted ascending, the threshold is the one at index ``min(int(r * ratio), r - 1)``, and experts
    *strictly* below it are kept. Ratio 1.0 drops only the largest spread (and any tie with it); ratio 0.25
    of 10 experts keeps the 2 smallest (an interpolating quantile would keep 3). When no expert is strictly
    below (all spreads equal, a rank-1 layer, or ``int(r * ratio) == 0``) every expert is kept, where the
    official mean of an empty selection would be NaN: every subset of equal spreads has the same mean, so
    this is the limit of the definition, not a switch. The threshold is a selection, not differentiated
    through.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f'diversity ratio must be in (0, 1], got {ratio}')
    sigma = expert_spread(activations)
    rank = sigma.numel()
    threshold = sigma.detach().sort().values[min(int(rank * ratio), rank - 1)]
    keep = sigma.detach() < threshold
    if not bool(keep.any()):
        return sigma.mean()
    return sigma[keep].mean()


def diversity(activations: Sequence[Tensor], ratio: float = 1.0) -> Tensor:
    """The mean of ``D_layer`` over layers; the loss term is ``-lambda * diversity`` (methods.md 1.3).

    Normalisation: this is the mean over *layers*. methods.md writes the official term as
    ``-lambda * (sum over layers of D_layer) / vm_num`` with ``vm_num`` the number of *blocks*; with L
    recording layers per block that is ``L`` times this mean, so the official ``lambda = 50`` over the four
    roles of a ViT block corresponds to ``lambda = 200`` here. The mean keeps lambda independent of how many
    layers a config chooses to record.
    """
    if len(activations) == 0:
        raise ValueError('diversity needs the activations of at least one layer')
    return torch.stack([layer_diversity(a, ratio) for a in activations]).mean()
