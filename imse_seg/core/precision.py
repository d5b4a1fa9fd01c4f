"""Mixed precision for a model's forward passes, with what reads their outputs kept in float32.

Only the forward runs under ``torch.autocast``, in bfloat16 on every device (:data:`AMP_DTYPE`): on a
CPU that is what autocast offers, and on CUDA bfloat16 has float32's exponent range, so gradients need no
loss scaling (float16 would need a ``GradScaler``, whose skipped steps SAM's two passes and the divergence
guard's non-finite checks would both have to learn). The forward's logits come back as float32, so
everything after it (entropy, STAG, diversity, pseudo-labels, the optimiser step) computes in float32
outside autocast. Inside the forward, :func:`float32_region` switches autocast off for the parts that must
not lose precision: the spectral weight reconstruction ``U diag(s) Vh`` and the expert activations the
diversity term reads (:mod:`.spectral`), and EfficientViT's linear attention (as its authors' code).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from imse_seg.errors import ConfigError

AMP_DTYPE = torch.bfloat16
"""The autocast dtype of :class:`MixedPrecisionForward`."""

ModelForward = Callable[[nn.Module, Tensor], Tensor]
"""(model, pre-processed inputs) -> logits, as a method's forward."""


class MixedPrecisionForward:
    """``forward`` under ``torch.autocast(<inputs' device>, bfloat16)``, its logits returned as float32.

    Gradients flow through the cast, so a method differentiates its float32 loss into the parameters as
    in full precision; autocast keeps the parameters float32 and casts them per op.
    """

    def __init__(self, forward: ModelForward) -> None:
        if isinstance(forward, MixedPrecisionForward):
            raise TypeError('the forward already runs in mixed precision')
        self.forward = forward

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        with torch.autocast(inputs.device.type, dtype=AMP_DTYPE):
            logits = self.forward(model, inputs)
        return at_least_float32(logits)

    def __repr__(self) -> str:
        return f'MixedPrecisionForward({getattr(self.forward, "__name__", self.forward)!r})'


def same_precision(reference: ModelForward, forward: ModelForward) -> ModelForward:
    """``forward`` in the precision of ``reference``: wrapped when ``reference`` is a
    :class:`MixedPrecisionForward`, as it is; for a method whose other forwards (CoTTA's teacher views by the
    segmentor's test mode) must follow the one it was given."""
    return MixedPrecisionForward(forward) if isinstance(reference, MixedPrecisionForward) else forward


def at_least_float32(tensor: Tensor) -> Tensor:
    """``tensor`` in float32 if its dtype is narrower (a bfloat16 activation of a mixed-precision forward),
    else as it is: what reads a forward's outputs computes in float32 at least."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


@contextlib.contextmanager
def float32_region(tensor: Tensor) -> Iterator[None]:
    """Autocast off on ``tensor``'s device inside a forward: the block computes in its inputs' dtype (cast
    them to float32 first)."""
    with torch.autocast(tensor.device.type, enabled=False):
        yield


def check_amp_device(device: torch.device) -> None:
    """Refuse (:class:`~imse_seg.errors.ConfigError`) a CUDA device without bfloat16 support, where autocast
    would silently fall back to float32 or emulate bfloat16 slowly."""
    if device.type == 'cuda' and not torch.cuda.is_bf16_supported():
        raise ConfigError(f'amp runs the forward in bfloat16, which {torch.cuda.get_device_name(device)} does not '
                          'support: run without --amp (test_cfg.amp=False)')
