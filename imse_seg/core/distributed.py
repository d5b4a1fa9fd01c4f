"""Gradient averaging across ranks for adaptation steps taken outside DDP's forward."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn


def average_gradients_across_ranks(params: Sequence[nn.Parameter]) -> int:
    """Make every backward average the gradients of ``params`` over all ranks; return the world size.

    mmengine's ``MMDistributedDataParallel.test_step`` calls the wrapped model's ``test_step`` directly,
    outside DDP's forward, so DDP never all-reduces what an adaptation step back-propagates. A
    post-accumulate-grad hook on each parameter all-reduces its gradient and divides by the world size,
    which gives every rank the gradient of the global batch (DDP semantics), for plain optimisers and for
    both passes of SAM alike. Without an initialised process group of size > 1 this does nothing.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return 1
    world_size = dist.get_world_size()

    def average(param: torch.Tensor) -> None:
        dist.all_reduce(param.grad)
        param.grad.div_(world_size)

    for param in params:
        param.register_post_accumulate_grad_hook(average)
    return world_size
