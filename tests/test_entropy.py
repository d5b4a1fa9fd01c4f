"""Entropy, reliable filtering, valid masks and the finiteness check (imse_seg.core.entropy)."""
import math

import pytest
import torch

from imse_seg.core.entropy import (NonFiniteError, assert_finite, entropy, entropy_margin, mean_entropy,
                                   reliable_entropy, reliable_mask, valid_mask)


def direct_entropy(logits: torch.Tensor) -> torch.Tensor:
    """-sum p log p with explicit probabilities, class dim 1."""
    p = torch.softmax(logits.double(), dim=1)
    return -(p * torch.log(p)).sum(dim=1)


@pytest.mark.parametrize('shape', [(5, 7), (2, 7, 3, 4)])
def test_entropy_matches_direct_definition(shape):
    logits = torch.randn(shape, dtype=torch.float64) * 3
    ent = entropy(logits)
    assert ent.shape == shape[:1] + shape[2:]
    torch.testing.assert_close(ent, direct_entropy(logits), rtol=1e-12, atol=1e-12)


def test_entropy_limits_uniform_and_saturated():
    uniform = torch.zeros(3, 19)
    torch.testing.assert_close(entropy(uniform), torch.full((3,), math.log(19)))
    saturated = torch.tensor([[200.0, 0.0, -200.0]], requires_grad=True)
    ent = entropy(saturated)
    ent.sum().backward()
    assert ent.item() == 0.0
    assert torch.isfinite(saturated.grad).all()


def test_entropy_rejects_bad_shapes():
    with pytest.raises(ValueError, match='B x K'):
        entropy(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match='K >= 2'):
        entropy(torch.randn(4, 1))


def test_reliable_mask_threshold_is_margin_times_log_k():
    k = 10
    e0 = 0.4 * math.log(k)
    assert entropy_margin(k, 0.4) == pytest.approx(e0)
    ent = torch.tensor([e0 - 1e-4, e0, e0 + 1e-4, 0.0])
    valid = torch.tensor([True, True, True, False])
    assert reliable_mask(ent, k).tolist() == [True, False, False, True]
    assert reliable_mask(ent, k, valid=valid).tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match='positive'):
        entropy_margin(k, 0.0)


def test_reliable_entropy_is_mean_over_kept_valid_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6, 7) * 4
    valid = torch.rand(2, 6, 7) > 0.3
    ent = direct_entropy(logits).float()
    keep = (ent < 0.4 * math.log(5)) & valid
    assert 0 < keep.sum() < valid.sum()
    torch.testing.assert_close(reliable_entropy(logits, 0.4, valid), ent[keep].mean())
    torch.testing.assert_close(mean_entropy(logits, valid), ent[valid].mean())
    torch.testing.assert_close(mean_entropy(logits), ent.mean())


def test_invalid_pixels_never_count_even_if_confident():
    torch.manual_seed(1)
    logits = torch.randn(1, 4, 5, 5)
    labels = torch.zeros(1, 5, 5, dtype=torch.long)
    labels[..., -2:] = 255  # padding / ignore index
    valid = valid_mask(labels)
    assert valid.sum() == 15
    changed = logits.clone()
    changed[:, 0, :, -2:] = 50.0  # would be perfectly reliable, zero entropy
    changed.requires_grad_(True)
    for loss_fn in (mean_entropy, reliable_entropy):
        torch.testing.assert_close(loss_fn(changed, valid=valid), loss_fn(logits, valid=valid))
        grad, = torch.autograd.grad(loss_fn(changed, valid=valid), changed)
        assert grad[..., -2:].abs().max() == 0


def test_no_reliable_pixel_gives_zero_loss_not_nan():
    logits = torch.zeros(2, 8, 3, 3, requires_grad=True)  # uniform: entropy ln K, never reliable
    loss = reliable_entropy(logits, 0.4)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_valid_mask_shape_is_checked():
    with pytest.raises(ValueError, match='valid must be a bool mask of shape'):
        mean_entropy(torch.randn(2, 3, 4, 4), torch.ones(2, 4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match='valid must be a bool mask'):
        mean_entropy(torch.randn(2, 3), torch.ones(2))


def test_assert_finite_names_what_and_counts():
    assert_finite(torch.randn(3), 'fine')
    bad = torch.tensor([1.0, float('nan'), float('inf'), -float('inf')])
    with pytest.raises(NonFiniteError, match=r'logits is not finite: 1 NaN and 2 Inf of 4'):
        assert_finite(bad, 'logits')
    assert issubclass(NonFiniteError, FloatingPointError)
