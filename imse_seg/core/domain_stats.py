"""Per-channel domain statistics, their symmetric KL distance and a running estimate (IMSE, methods.md 1.4).

A domain is summarised by the per-channel mean and variance of a feature map (the patch-embedding output
of a frozen copy of the backbone), computed over the batch and every position. The channel layout is
explicit: ``channel_dim=-1`` for tokens (B x N x C), ``channel_dim=1`` for maps (B x C x H x W); all other
dimensions are reduced. Statistics are kept as float64 on the CPU, so a bank of them is independent of
the device the model runs on and a saved bank loads anywhere. The shift threshold on the distance depends
on the model and the feature, so :class:`ThresholdCalibration` derives it from the distances seen on
in-domain batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

VARIANCE_FLOOR = 1e-6


@dataclass(frozen=True)
class DomainStatistics:
    """Per-channel mean and (population) variance, each of shape (..., C); leading dims stack domains."""
    mean: Tensor
    var: Tensor

    @property
    def channels(self) -> int:
        return self.mean.shape[-1]

    @staticmethod
    def stack(items: Sequence[DomainStatistics]) -> DomainStatistics:
        """Stack single-domain statistics into (E x C) ones, to measure one batch against E domains."""
        return DomainStatistics(torch.stack([s.mean for s in items]), torch.stack([s.var for s in items]))

    def state_dict(self) -> dict[str, Tensor]:
        return {'mean': self.mean.clone(), 'var': self.var.clone()}

    @staticmethod
    def from_state_dict(state: dict[str, Tensor]) -> DomainStatistics:
        return DomainStatistics(state['mean'].to('cpu', torch.float64), state['var'].to('cpu', torch.float64))


@torch.no_grad()
def channel_statistics(features: Tensor, *, channel_dim: int) -> DomainStatistics:
    """Mean and population variance of every channel of ``features`` over all its other dimensions.

    ``channel_dim`` has no default on purpose: a B x C x H x W map read as tokens would silently yield
    statistics over its width. The moments are computed in float32 on the features' device, then kept as
    float64 on the CPU (methods.md 1.4).
    """
    x = features.detach().float().movedim(channel_dim, -1)
    x = x.reshape(-1, x.shape[-1])
    var, mean = torch.var_mean(x, dim=0, correction=0)
    return DomainStatistics(mean.to('cpu', torch.float64), var.to('cpu', torch.float64))


def pool_statistics(parts: Sequence[DomainStatistics], counts: Sequence[int]) -> DomainStatistics:
    """Exact statistics of the union of ``parts``, each computed over ``counts[i]`` values per channel.

    Law of total variance: the pooled variance is the weighted mean of the part variances plus the
    weighted variance of the part means. Used for the source entry of a code bank, built from several
    batches of source (or first test) features.
    """
    if not parts or len(parts) != len(counts):
        raise ValueError(f'pool_statistics: need one count per part, got {len(parts)} parts and '
                         f'{len(counts)} counts')
    weights = torch.tensor(counts, dtype=torch.float64)
    weights = (weights / weights.sum())[:, None]
    stacked = DomainStatistics.stack(parts)
    mean = (weights * stacked.mean).sum(0)
    var = (weights * (stacked.var + (stacked.mean - mean) ** 2)).sum(0)
    return DomainStatistics(mean, var)


def symmetric_kl(p: DomainStatistics, q: DomainStatistics, eps: float = VARIANCE_FLOOR) -> Tensor:
    """Symmetric KL distance between per-channel Gaussians, averaged over channels (methods.md 1.4).

    ``d = mean_c[(v1 + (m1-m2)^2) / (2 v2) + (v2 + (m1-m2)^2) / (2 v1) - 1]``, i.e. KL(p||q) + KL(q||p)
    (the log terms cancel). Leading dimensions broadcast, so one batch against E stacked entries gives E
    distances. Variances are floored at ``eps`` so a dead channel cannot divide by zero.
    """
    if p.channels != q.channels:
        raise ValueError(f'symmetric_kl: statistics over {p.channels} and {q.channels} channels')
    v1, v2 = p.var.clamp_min(eps), q.var.clamp_min(eps)
    diff2 = (p.mean - q.mean) ** 2
    return ((v1 + diff2) / (2 * v2) + (v2 + diff2) / (2 * v1) - 1).mean(-1)


class RunningStatistics:
    """EMA estimate of the current domain's statistics: ``m <- (1 - a) m + a m_batch`` (methods.md 1.4).

    ``momentum`` a is the new batch's weight (official 0.2, i.e. ``m <- 0.8 m + 0.2 m_batch``); the
    variance is averaged the same way. The first batch after construction or :meth:`reset` initialises
    the estimate. ``batches`` counts the batches absorbed since then.
    """

    def __init__(self, momentum: float = 0.2) -> None:
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f'RunningStatistics: momentum must be in (0, 1], got {momentum}')
        self.momentum = momentum
        self.value: DomainStatistics | None = None
        self.batches = 0

    def update(self, stats: DomainStatistics) -> None:
        if self.value is None:
            self.value = DomainStatistics(stats.mean.clone(), stats.var.clone())
        else:
            a = self.momentum
            self.value = DomainStatistics((1 - a) * self.value.mean + a * stats.mean,
                                          (1 - a) * self.value.var + a * stats.var)
        self.batches += 1

    def reset(self) -> None:
        self.value = None
        self.batches = 0

    def state_dict(self) -> dict:
        return {'value': None if self.value is None else self.value.state_dict(), 'batches': self.batches}

    def load_state_dict(self, state: dict) -> None:
        value = state['value']
        self.value = None if value is None else DomainStatistics.from_state_dict(value)
        self.batches = int(state['batches'])


@dataclass(frozen=True)
class ThresholdCalibration:
    """Shift threshold from in-domain distances: ``k = margin * quantile_q(d)`` (methods.md 1.4).

    ``distances`` are the running-estimate-to-batch distances of batches known to come from one domain
    (a code bank uses its first full batches). Within a domain they measure batch-to-batch noise, whose
    scale depends on the model, the feature and the batch size; a real shift must stand clearly above it.
    Default: the 95th percentile times 3. The distances should include those taken right after the
    estimate was (re)initialised, which are the largest in-domain ones (the estimate then rests on a single
    batch), as they recur after every detected shift. For reference, the official ImageNet-C ViT-B
    threshold is a fixed 0.05.
    """
    quantile: float = 0.95
    margin: float = 3.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.quantile <= 1.0 or self.margin <= 0:
            raise ValueError(f'ThresholdCalibration: need 0 <= quantile <= 1 and margin > 0, got '
                             f'quantile={self.quantile}, margin={self.margin}')

    def __call__(self, distances: Sequence[float] | Tensor) -> float:
        d = torch.as_tensor(distances, dtype=torch.float64).flatten()
        if d.numel() == 0:
            raise ValueError('ThresholdCalibration: no in-domain distances to calibrate from')
        return self.margin * float(torch.quantile(d, self.quantile))
