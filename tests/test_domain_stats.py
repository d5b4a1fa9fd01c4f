"""Domain statistics (issue 4): channel layouts, symmetric KL, exact pooling, EMA, threshold calibration."""
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from imse_seg.core.domain_stats import (DomainStatistics, RunningStatistics, ThresholdCalibration,
                                        channel_statistics, pool_statistics, symmetric_kl)


def test_channel_statistics_tokens_and_maps_agree() -> None:
    maps = torch.randn(2, 5, 3, 4) * torch.arange(1.0, 6.0)[:, None, None] + 2.0
    tokens = maps.flatten(2).transpose(1, 2)  # B x HW x C
    from_maps = channel_statistics(maps, channel_dim=1)
    from_tokens = channel_statistics(tokens, channel_dim=-1)
    per_channel = maps.transpose(0, 1).reshape(5, -1).double()
    assert from_maps.mean.dtype == torch.float64 and from_maps.mean.shape == (5,)
    torch.testing.assert_close(from_maps.mean, per_channel.mean(1), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(from_maps.var, per_channel.var(1, correction=0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(from_tokens.mean, from_maps.mean)
    torch.testing.assert_close(from_tokens.var, from_maps.var)
    wrong = channel_statistics(maps, channel_dim=-1)
    assert wrong.channels == 4  # the layout is the caller's to state: read as tokens, a map gives width stats


def test_symmetric_kl_is_the_formula_and_the_sum_of_both_kls() -> None:
    p = DomainStatistics(torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64),
                         torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64))
    q = DomainStatistics(torch.tensor([0.5, 1.0, 0.0], dtype=torch.float64),
                         torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64))
    by_hand = sum((v1 + (m1 - m2) ** 2) / (2 * v2) + (v2 + (m1 - m2) ** 2) / (2 * v1) - 1
                  for m1, v1, m2, v2 in zip(p.mean.tolist(), p.var.tolist(), q.mean.tolist(),
                                            q.var.tolist())) / 3
    assert float(symmetric_kl(p, q)) == pytest.approx(by_hand, rel=1e-12)
    a, b = Normal(p.mean, p.var.sqrt()), Normal(q.mean, q.var.sqrt())
    both = (kl_divergence(a, b) + kl_divergence(b, a)).mean()
    assert float(symmetric_kl(p, q)) == pytest.approx(float(both))
    assert float(symmetric_kl(q, p)) == pytest.approx(by_hand, rel=1e-12)
    assert float(symmetric_kl(p, p)) == 0.0
    stacked = symmetric_kl(p, DomainStatistics.stack([p, q, p]))
    assert stacked.shape == (3,) and stacked.tolist() == pytest.approx([0.0, by_hand, 0.0])
    with pytest.raises(ValueError, match='3 and 2 channels'):
        symmetric_kl(p, DomainStatistics(q.mean[:2], q.var[:2]))


def test_pool_statistics_equals_statistics_of_the_union() -> None:
    batches = [torch.randn(n, 7, 4) * 3 + torch.randn(4) for n in (2, 5, 1)]
    parts = [channel_statistics(b, channel_dim=-1) for b in batches]
    pooled = pool_statistics(parts, [b.shape[0] * b.shape[1] for b in batches])
    whole = channel_statistics(torch.cat(batches), channel_dim=-1)
    torch.testing.assert_close(pooled.mean, whole.mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(pooled.var, whole.var, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match='one count per part'):
        pool_statistics(parts, [1, 2])


def test_running_statistics_ema_and_reset() -> None:
    running = RunningStatistics()
    f64 = dict(dtype=torch.float64)
    first = DomainStatistics(torch.tensor([1.0, 2.0], **f64), torch.tensor([1.0, 4.0], **f64))
    second = DomainStatistics(torch.tensor([3.0, 0.0], **f64), torch.tensor([2.0, 1.0], **f64))
    running.update(first)
    assert running.value.mean.tolist() == [1.0, 2.0] and running.batches == 1
    running.update(second)
    assert running.value.mean.tolist() == pytest.approx([0.8 * 1 + 0.2 * 3, 0.8 * 2 + 0.2 * 0])
    assert running.value.var.tolist() == pytest.approx([0.8 * 1 + 0.2 * 2, 0.8 * 4 + 0.2 * 1])
    assert first.mean.tolist() == [1.0, 2.0]  # the first batch's statistics were copied, not aliased
    restored = RunningStatistics()
    restored.load_state_dict(running.state_dict())
    assert torch.equal(restored.value.mean, running.value.mean) and restored.batches == 2
    running.reset()
    assert running.value is None and running.batches == 0
    running.update(second)
    assert running.value.mean.tolist() == [3.0, 0.0]
    with pytest.raises(ValueError, match='momentum'):
        RunningStatistics(momentum=0.0)


def test_threshold_calibration_rule() -> None:
    distances = [0.01, 0.02, 0.015, 0.03, 0.012]
    assert ThresholdCalibration()(distances) == pytest.approx(
        3.0 * float(torch.quantile(torch.tensor(distances, dtype=torch.float64), 0.95)))
    assert ThresholdCalibration(quantile=1.0, margin=2.0)(distances) == pytest.approx(0.06)
    with pytest.raises(ValueError, match='no in-domain distances'):
        ThresholdCalibration()([])
    with pytest.raises(ValueError, match='quantile'):
        ThresholdCalibration(quantile=1.5)
