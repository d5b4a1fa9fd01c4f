"""IMSE's diversity term against a direct computation, and its gradient (imse_seg.core.diversity)."""
import math

import pytest
import torch
from torch import nn

from imse_seg.core.diversity import diversity, layer_diversity
from imse_seg.core.spectral import record_expert_activations, spectralize


def slow_layer_diversity(activations: torch.Tensor, ratio: float) -> float:
    """methods.md 1.3 steps 3-4 with Python loops: unbiased std per expert, the threshold at index
    min(int(r * ratio), r - 1) of the sorted spreads (official IMSE), experts strictly below it, their mean."""
    a = activations.tolist()
    n, r = len(a), len(a[0])
    sigmas = []
    for i in range(r):
        column = [row[i] for row in a]
        mean = sum(column) / n
        sigmas.append(math.sqrt(sum((v - mean) ** 2 for v in column) / (n - 1)))
    threshold = sorted(sigmas)[min(int(r * ratio), r - 1)]
    kept = [s for s in sigmas if s < threshold]
    return sum(kept) / len(kept)


@pytest.mark.parametrize('ratio', [1.0, 0.5, 0.3])
def test_diversity_equals_direct_computation(ratio):
    torch.manual_seed(0)
    activations = [torch.randn(50, 12, dtype=torch.float64) * torch.rand(12, dtype=torch.float64),
                   torch.randn(33, 7, dtype=torch.float64) * torch.rand(7, dtype=torch.float64)]
    expected = sum(slow_layer_diversity(a, ratio) for a in activations) / len(activations)
    assert diversity(activations, ratio).item() == pytest.approx(expected, rel=1e-12)


def test_ratio_one_drops_only_the_largest_spread():
    scales = torch.tensor([1.0, 2.0, 3.0, 4.0, 50.0], dtype=torch.float64)
    a = torch.randn(40, 5, dtype=torch.float64) * scales
    sigma = a.std(dim=0)
    assert layer_diversity(a, 1.0).item() == pytest.approx(sigma[:4].mean().item())


@pytest.mark.parametrize('ratio, kept', [(1.0, 9), (0.95, 9), (0.5, 5), (0.25, 2), (0.15, 1), (0.05, 10)])
def test_ratio_keeps_the_experts_below_the_official_sorted_index(ratio, kept):
    """Issue 17 fix 5. Ten experts with spreads 1..10 (shuffled): the official threshold is the sorted
    spread at index min(int(10 * ratio), 9), so ratio 0.25 keeps spreads 1 and 2 (mean 1.5) where the
    interpolating quantile (position 2.25, threshold 3.25) kept 1, 2 and 3; index 0 keeps nothing, and then
    all are kept (mean 5.5)."""
    order = torch.tensor([3, 7, 0, 9, 1, 5, 8, 2, 6, 4])
    spreads = (torch.arange(10, dtype=torch.float64) + 1)[order]
    # two tokens +-s/sqrt(2) have unbiased standard deviation s
    a = torch.stack([spreads, -spreads]) / math.sqrt(2)
    torch.testing.assert_close(a.std(dim=0), spreads)
    expected = sum(range(1, kept + 1)) / kept if kept < 10 else 5.5
    assert layer_diversity(a, ratio).item() == pytest.approx(expected, rel=1e-12)


def test_equal_spreads_keep_every_expert():
    a = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    assert layer_diversity(a, 1.0).item() == pytest.approx(a.std(dim=0).mean().item())


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match='at least 2 tokens'):
        layer_diversity(torch.randn(1, 4))
    with pytest.raises(ValueError, match='tokens x experts'):
        layer_diversity(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r'ratio must be in \(0, 1\]'):
        layer_diversity(torch.randn(5, 4), 0.0)
    with pytest.raises(ValueError, match='at least one layer'):
        diversity([])


class ChannelsFirst(nn.Module):
    """B x H x W x C tokens to B x C x H x W, so a 1x1 conv (a per-pixel linear map) follows a Linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.movedim(-1, 1)


def test_gradient_reaches_earlier_singular_values_through_recorded_inputs():
    """The recorded layer's own s does not enter a = normalize(x) Vh^T; the earlier layer's s does."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), ChannelsFirst(), nn.Conv2d(8, 5, 1))
    layers = spectralize(model, ['0', '3'])
    record_expert_activations(layers[1:])
    model(torch.randn(2, 4, 4, 6))
    recorded = layers[1].expert_activations
    assert recorded.shape == (2 * 4 * 4, layers[1].weight.rank)
    value = diversity([recorded], 1.0)
    value.backward()
    first = layers[0].singular_values.grad
    assert first is not None and first.abs().max() > 1e-6
    assert layers[1].singular_values.grad is None
