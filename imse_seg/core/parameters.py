"""Which parameters adapt, and how many there are (every method selects its own set)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from torch import nn

from .spectral import SpectralWeight


def train_only(model: nn.Module, params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    """Make ``params`` the only parameters of ``model`` that require grad; return them in order.

    Every method is a choice of this set (IMSE: singular values of chosen blocks; TENT: norm affines), so
    the optimiser is built from the returned list and nothing else accumulates gradients.
    """
    chosen = list(params)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in chosen:
        p.requires_grad_(True)
    return chosen


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``model`` that currently require grad."""
    return [p for p in model.parameters() if p.requires_grad]


@dataclass(frozen=True)
class ParameterCount:
    """Trainable and total model weights; ``total`` counts spectral factors U, Vh in place of W."""
    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f'{self.trainable:,} trainable of {self.total:,} ({100 * self.fraction:.3f}%)'


def count_parameters(model: nn.Module) -> ParameterCount:
    """Count trainable vs total weights, the frozen SVD factors of spectral layers included in the total."""
    params = list(model.parameters())
    factors = sum(m.U.numel() + m.Vh.numel() for m in model.modules() if isinstance(m, SpectralWeight))
    return ParameterCount(trainable=sum(p.numel() for p in params if p.requires_grad),
                          total=sum(p.numel() for p in params) + factors)
