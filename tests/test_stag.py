"""STAG's closed forms against autograd and explicit D-dimensional gradients (imse_seg.core.stag)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imse_seg.core.entropy import entropy
from imse_seg.core.stag import (StagAlignment, StagRowAlignment, StagWeightAlignment, alignment_loss,
                                entropy_feature_gradient, entropy_gradient, structural_anchors,
                                structural_logit_gradients)

K, D = 6, 10


def classifier(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(K, D, generator=g, dtype=dtype) * 0.5, torch.randn(K, generator=g, dtype=dtype)


def features(per_pixel: bool, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (3, D, 5, 4) if per_pixel else (7, D)
    return (torch.randn(shape, generator=g, dtype=dtype) * 2).requires_grad_(True)


def apply(f, w, b):
    """z = W f + b with the class dim at 1, as nn.Linear / a 1x1 conv computes it."""
    return torch.einsum('bd...,kd->bk...', f, w) + b.view(1, -1, *([1] * (f.dim() - 2)))


def rows(x):
    return x if x.dim() == 2 else x.movedim(1, -1).reshape(-1, x.shape[1])


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('per_pixel', [False, True])
def test_closed_form_feature_gradient_equals_autograd(per_pixel, dtype):
    w, b = classifier(dtype)
    f = features(per_pixel, dtype)
    z = apply(f, w, b)
    auto, = torch.autograd.grad(entropy(z).sum(), f)
    assert relative_error(entropy_feature_gradient(z.detach(), w), auto) < 1e-5
    auto_z, = torch.autograd.grad(entropy(z).sum(), z)
    assert relative_error(entropy_gradient(z.detach()), auto_z) < 1e-5


def test_anchors_are_entropy_gradients_at_the_class_weight_vectors():
    w, b = classifier()
    anchors = structural_anchors(w, b)
    for k in range(K):
        f = w[k].clone().requires_grad_(True)
        expected, = torch.autograd.grad(entropy((w @ f + b)[None]).sum(), f)
        torch.testing.assert_close(anchors[k], expected, rtol=1e-10, atol=1e-12)


def explicit_stag_loss(z, w, anchors, valid=None):
    """Reading (A) from its definition: D-dim gradients g_t, anchors of the predicted classes, cosines."""
    g = rows(entropy_feature_gradient(z, w))
    y = rows(z).argmax(dim=1)
    per = 1 - F.cosine_similarity(g, anchors[y], dim=1)
    return per.mean() if valid is None else per[valid.reshape(-1)].mean()


@pytest.mark.parametrize('per_pixel', [False, True])
def test_closed_form_loss_equals_explicit_loss_and_gradient(per_pixel):
    w, b = classifier()
    z = apply(features(per_pixel), w, b).detach().requires_grad_(True)
    valid = torch.rand(z.shape[:1] + z.shape[2:], generator=torch.Generator().manual_seed(3)) > 0.3
    anchors = structural_anchors(w, b)
    module = StagAlignment(w, b)
    for mask in (None, valid):
        expected = explicit_stag_loss(z, w, anchors, mask)
        g_expected, = torch.autograd.grad(expected, z)
        for got in (alignment_loss(z, w, anchors, mask), module(z, mask)):
            torch.testing.assert_close(got, expected.detach(), rtol=1e-10, atol=1e-12)
            g_got, = torch.autograd.grad(got, z)
            torch.testing.assert_close(g_got, g_expected, rtol=1e-8, atol=1e-12)


def test_module_buffers_are_class_space_matrices():
    w, b = classifier(torch.float32)
    module = StagAlignment(w, b)
    assert module.gram.shape == module.cross.shape == (K, K)
    assert module.anchors.shape == (K, D)
    torch.testing.assert_close(module.anchors, structural_anchors(w, b))


@pytest.mark.parametrize('per_pixel', [False, True])
def test_reading_b_equals_explicit_weight_gradient_cosine(per_pixel):
    w, b = classifier()
    f = features(per_pixel)
    z = apply(f, w, b)
    h, fr = rows(entropy_gradient(z)), rows(f)
    y = rows(z).argmax(dim=1)
    h_anchor = structural_logit_gradients(w, b)
    grads = torch.einsum('nk,nd->nkd', h, fr).flatten(1)
    anchors = torch.einsum('nk,nd->nkd', h_anchor[y], w[y]).flatten(1)
    expected = (1 - F.cosine_similarity(grads, anchors, dim=1)).mean()
    got = StagWeightAlignment(w, b)(z, features=f)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    g_got, = torch.autograd.grad(got, f, retain_graph=True)
    g_expected, = torch.autograd.grad(expected, f)
    torch.testing.assert_close(g_got, g_expected, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize('per_pixel', [False, True])
def test_reading_c_equals_explicit_row_gradient_cosine(per_pixel):
    w, b = classifier()
    f = features(per_pixel)
    z = apply(f, w, b)
    h, fr = rows(entropy_gradient(z)), rows(f)
    y = rows(z).argmax(dim=1)
    h_anchor = structural_logit_gradients(w, b)
    grads = h.gather(1, y[:, None]) * fr
    anchors = h_anchor[y, y][:, None] * w[y]
    expected = (1 - F.cosine_similarity(grads, anchors, dim=1)).mean()
    got = StagRowAlignment(w, b)(z, features=f)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    g_got, = torch.autograd.grad(got, f, retain_graph=True)
    g_expected, = torch.autograd.grad(expected, f)
    torch.testing.assert_close(g_got, g_expected, rtol=1e-8, atol=1e-12)


def test_linear_and_1x1_conv_classifiers_agree():
    torch.manual_seed(0)
    linear = nn.Linear(D, K)
    conv = nn.Conv2d(D, K, 1)
    with torch.no_grad():
        conv.weight.copy_(linear.weight[:, :, None, None])
        conv.bias.copy_(linear.bias)
    f = torch.randn(2, D, 3, 3)
    z = conv(f)
    torch.testing.assert_close(z.movedim(1, -1), linear(f.movedim(1, -1)))
    from_linear = StagAlignment.from_classifier(linear)
    from_conv = StagAlignment.from_classifier(conv)
    torch.testing.assert_close(from_conv(z), from_linear(z))
    torch.testing.assert_close(structural_anchors(conv.weight, conv.bias),
                               structural_anchors(linear.weight, linear.bias))
    with pytest.raises(TypeError, match='1x1'):
        StagAlignment.from_classifier(nn.Conv2d(D, K, 3))
    with pytest.raises(TypeError, match='nn.Linear'):
        StagAlignment.from_classifier(nn.Identity())


def test_shape_mismatches_raise_clear_errors():
    w, b = classifier(torch.float32)
    module = StagAlignment(w, b)
    with pytest.raises(ValueError, match=r'logits of shape \(2, 5, 4, 4\) have 5 classes.*has 6'):
        module(torch.randn(2, K - 1, 4, 4))
    with pytest.raises(ValueError, match=r'logits of shape \(2, 5\) have 5 classes'):
        alignment_loss(torch.randn(2, K - 1), w, structural_anchors(w, b))
    with pytest.raises(ValueError, match=r'anchors of shape \(6, 9\)'):
        alignment_loss(torch.randn(2, K), w, torch.randn(K, D - 1))
    with pytest.raises(ValueError, match='K x D or K x D x 1 x 1'):
        structural_anchors(torch.randn(K, D, 3, 3), b)
    with pytest.raises(ValueError, match='bias'):
        StagAlignment(w, torch.randn(K + 1))
    with pytest.raises(ValueError, match='valid must be a bool mask of shape'):
        module(torch.randn(2, K, 4, 4), torch.ones(2, 4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match='needs the classifier input features'):
        StagWeightAlignment(w, b)(torch.randn(2, K))
    with pytest.raises(ValueError, match=r'features of shape \(2, 9, 4, 4\)'):
        StagRowAlignment(w, b)(torch.randn(2, K, 4, 4), features=torch.randn(2, D - 1, 4, 4))


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_degenerate_predictions_contribute_nothing_to_the_update(dtype):
    """Uniform and saturated predictions have h = 0 exactly: cosine 0 (loss 1) and a zero derivative,
    where F.cosine_similarity's eps would give a derivative of order 1/eps."""
    w, b = classifier(dtype)
    z = torch.full((2, K, 2, 2), 3.0, dtype=dtype)  # item 0 uniform
    z[1, 0] = 800.0  # item 1 saturated
    z.requires_grad_(True)
    h = entropy_gradient(z.detach())
    assert h.abs().max() == 0
    loss = StagAlignment(w, b)(z)
    loss.backward()
    assert loss.item() == 1.0
    assert z.grad.abs().max() == 0
    explicit = explicit_stag_loss(z, w.to(dtype), structural_anchors(w, b))
    g_explicit, = torch.autograd.grad(explicit, z)
    assert g_explicit.abs().max() > 1e3  # what torch's eps convention would have fed the optimiser


def test_saturated_self_structural_prediction_is_reported():
    w = torch.eye(3) * 40.0  # W w_k has a logit gap of 1600: softmax is one-hot even in float64
    with pytest.raises(ValueError, match='saturated'):
        structural_anchors(w, torch.zeros(3))


def explicit_weight_and_row_losses(z, f, w, b, y, valid=None):
    """Readings B and C from their definitions (D-dim outer products / rows) for predicted classes ``y``,
    averaged over the ``valid`` rows."""
    h, fr = rows(entropy_gradient(z)), rows(f)
    h_anchor = structural_logit_gradients(w, b)
    grads_b = torch.einsum('nk,nd->nkd', h, fr).flatten(1)
    anchors_b = torch.einsum('nk,nd->nkd', h_anchor[y], w[y]).flatten(1)
    grads_c = h.gather(1, y[:, None]) * fr
    anchors_c = h_anchor[y, y][:, None] * w[y]
    keep = torch.ones_like(y, dtype=torch.bool) if valid is None else valid.reshape(-1)
    return ((1 - F.cosine_similarity(grads_b, anchors_b, dim=1))[keep].mean(),
            (1 - F.cosine_similarity(grads_c, anchors_c, dim=1))[keep].mean())


@pytest.mark.parametrize('per_pixel', [False, True])
def test_readings_b_and_c_average_over_the_valid_mask_only(per_pixel):
    w, b = classifier()
    f = features(per_pixel)
    z = apply(f, w, b)
    valid = torch.rand(z.shape[:1] + z.shape[2:], generator=torch.Generator().manual_seed(4)) > 0.4
    assert 0 < int(valid.sum()) < valid.numel()
    y = rows(z).argmax(dim=1)
    expected_b, expected_c = explicit_weight_and_row_losses(z, f, w, b, y, valid)
    unmasked_b, unmasked_c = explicit_weight_and_row_losses(z, f, w, b, y)
    got_b = StagWeightAlignment(w, b)(z, valid, f)
    got_c = StagRowAlignment(w, b)(z, valid, f)
    torch.testing.assert_close(got_b, expected_b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_c, expected_c, rtol=1e-10, atol=1e-12)
    assert abs(got_b.item() - unmasked_b.item()) > 1e-6 and abs(got_c.item() - unmasked_c.item()) > 1e-6
    g_got, = torch.autograd.grad(got_b, f, retain_graph=True)
    g_expected, = torch.autograd.grad(expected_b, f, retain_graph=True)
    torch.testing.assert_close(g_got, g_expected, rtol=1e-8, atol=1e-12)
    if per_pixel:  # masked pixels get no gradient at all
        assert g_got.movedim(1, -1)[~valid].abs().max() == 0


def test_classifier_without_bias_is_z_equals_w_f():
    torch.manual_seed(0)
    linear = nn.Linear(D, K, bias=False).double()
    f = features(per_pixel=False)
    z = linear(f)
    w, zero = linear.weight.detach(), torch.zeros(K, dtype=torch.float64)
    y = z.argmax(dim=1)
    expected_b, expected_c = explicit_weight_and_row_losses(z, f, w, zero, y)
    torch.testing.assert_close(StagWeightAlignment.from_classifier(linear)(z, features=f), expected_b,
                               rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(StagRowAlignment.from_classifier(linear)(z, features=f), expected_c,
                               rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(StagAlignment.from_classifier(linear)(z),
                               explicit_stag_loss(z, w, structural_anchors(w, None)), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(structural_anchors(w, None), structural_anchors(w, zero))


def test_argmax_ties_take_the_first_class_as_argmax_does():
    """Integer weights and features give exact ties: rows 0 and 1 tie classes 0 and 1 (z = [2, 2, -3] and
    [4, 4, -6]; w_0 and w_1 differ, so the two anchors do); the loss uses the first, as torch.argmax does;
    using the last would change every reading."""
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]], dtype=torch.float64)
    b = torch.zeros(3, dtype=torch.float64)
    f = torch.tensor([[2.0, 1.0], [4.0, 2.0], [3.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
    z = f @ w.T + b
    assert z[0].tolist() == [2.0, 2.0, -3.0] and z[1].tolist() == [4.0, 4.0, -6.0]
    first = torch.tensor([0, 0, 0, 2])
    assert torch.equal(z.argmax(dim=1), first)
    last = torch.tensor([1, 1, 0, 2])
    anchors = structural_anchors(w, b)

    def reading_a(y):
        g = entropy_feature_gradient(z, w)
        return (1 - F.cosine_similarity(g, anchors[y], dim=1)).mean()

    expected = [reading_a(first), *explicit_weight_and_row_losses(z, f, w, b, first)]
    other = [reading_a(last), *explicit_weight_and_row_losses(z, f, w, b, last)]
    got = [StagAlignment(w, b)(z), StagWeightAlignment(w, b)(z, features=f), StagRowAlignment(w, b)(z, features=f)]
    for value, reference, wrong in zip(got, expected, other):
        torch.testing.assert_close(value, reference, rtol=1e-10, atol=1e-12)
        assert abs(value.item() - wrong.item()) > 1e-3
