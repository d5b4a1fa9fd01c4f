"""One optimiser update from a loss closure, NaN-safe, for plain optimisers and SAM alike."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .entropy import assert_finite
from .sam import SAM


def closure_step(optimizer: torch.optim.Optimizer, closure: Callable[[], Tensor], ascend: bool = True) -> Tensor:
    """Run ``closure`` (a forward returning the loss), back-propagate and step; return the loss.

    SAM re-runs the closure at the perturbed point itself (:class:`.sam.SAM`), or with ``ascend=False``
    steps on the first gradient only. For any other optimiser
    this is one forward, one backward, one step, with SAM's guarantees: a non-finite loss or gradient
    raises :class:`~.entropy.NonFiniteError` with the parameters untouched and the gradients cleared.
    """
    if isinstance(optimizer, SAM):
        return optimizer.step(closure, ascend=ascend)
    optimizer.zero_grad(set_to_none=True)
    try:
        loss = closure()
        assert_finite(loss.detach(), 'loss')
        loss.backward()
        grads = [p.grad for group in optimizer.param_groups for p in group['params'] if p.grad is not None]
        if grads:
            assert_finite(torch.stack([g.detach().norm() for g in grads]), 'gradient norm')
    except BaseException:
        optimizer.zero_grad(set_to_none=True)
        raise
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()
