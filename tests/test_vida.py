"""ViDA (issue 17): domain adapters, homeostatic knowledge allotment, mean teacher, exact resume."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from exact import assert_same
from imse_seg.adaptation import ViDA
from imse_seg.core.adapters import domain_adapters, inject_domain_adapters
from imse_seg.core.norm_statistics import norm_statistics_of, remove_norm_statistics
from imse_seg.core.vida import (RandomViews, ema_update_with_adapters, homeostatic_scales, symmetric_cross_entropy,
                                view_uncertainty)
from imse_seg.seg.engine.stream_checkpoint import fingerprint
from test_method_state import assert_resumes_exactly


def conv_model() -> nn.Module:
    """3x3 conv -> GroupNorm -> ReLU -> 1x1 conv (the adaptable layer, ``3``) -> 1x1 conv head (``4``)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(), nn.Conv2d(8, 8, 1),
                         nn.Conv2d(8, 4, 1)).eval()


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 5)).eval()


def vida(**overrides) -> ViDA:
    cfg = dict(targets=['3'], optimizer=dict(type='Adam', lr=0.01), adapter_lr=0.05, low_rank=1, high_rank=4,
               views=dict(type='RandomViews', num_views=4), teacher_momentum=0.9, adapter_momentum=0.5)
    return ViDA(**dict(cfg, **overrides))


def test_injected_model_computes_exactly_the_original() -> None:
    for model, inputs, target in ((conv_model(), torch.randn(2, 3, 6, 6), '3'), (mlp(), torch.randn(4, 6), '0')):
        expected = model(inputs)
        names = list(model.state_dict())
        injected = inject_domain_adapters(model, [target], low_rank=2, high_rank=4, seed=5)
        assert [name for name, _ in injected] == [target]
        assert torch.equal(model(inputs), expected)
        adapter = injected[0][1]
        assert [k for k in model.state_dict() if 'domain_adapter' not in k] == names   # the original names
        assert [k for k in model.state_dict() if 'domain_adapter' in k] == [
            f'{target}.domain_adapter.{branch}.{part}.weight' for branch in ('low', 'high') for part in ('down', 'up')]
        generator = torch.Generator().manual_seed(5)
        low = torch.randn(adapter.low.down.weight.shape, generator=generator) / 2 ** 2
        high = torch.randn(adapter.high.down.weight.shape, generator=generator) / 4 ** 2
        assert torch.equal(adapter.low.down.weight, low) and torch.equal(adapter.high.down.weight, high)
        assert not adapter.low.up.weight.any() and not adapter.high.up.weight.any()


def test_adapter_output_is_added_with_its_scales() -> None:
    model = mlp()
    (_, adapter), = inject_domain_adapters(model, ['3'], low_rank=1, high_rank=3)
    with torch.no_grad():
        for branch in (adapter.low, adapter.high):
            branch.up.weight.normal_()
    adapter.low_scale, adapter.high_scale = 0.7, 1.3
    hidden = model[2](model[1](model[0](torch.randn(4, 6))))
    layer = model[3]
    expected = hidden @ layer.weight.T + layer.bias \
        + 0.7 * (hidden @ adapter.low.down.weight.T @ adapter.low.up.weight.T) \
        + 1.3 * (hidden @ adapter.high.down.weight.T @ adapter.high.up.weight.T)
    torch.testing.assert_close(layer(hidden), expected, rtol=1e-6, atol=1e-6)
    teacher = copy.deepcopy(model)
    with torch.no_grad():
        domain_adapters(teacher)[0].low.up.weight.add_(1.0)
    assert not torch.equal(teacher[3](hidden), layer(hidden))      # the copy runs its own adapter
    torch.testing.assert_close(layer(hidden), expected, rtol=1e-6, atol=1e-6)


def test_only_dense_linear_maps_take_an_adapter() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1, groups=8), nn.Linear(4, 4))
    with pytest.raises(TypeError, match="'0' is a 3x3 Conv2d"):
        inject_domain_adapters(model, ['0'])
    with pytest.raises(TypeError, match="'1' is a 1x1 Conv2d with 8 group"):
        inject_domain_adapters(model, ['1'])
    with pytest.raises(ValueError, match="pattern 'head' matches no module"):
        inject_domain_adapters(model, ['head'])
    inject_domain_adapters(model, ['2'])
    with pytest.raises(ValueError, match="'2' already has a domain adapter"):
        inject_domain_adapters(model, ['2'])
    attention = nn.Sequential(nn.MultiheadAttention(8, 2))
    with pytest.raises(ValueError, match='out_proj of an nn.MultiheadAttention'):
        inject_domain_adapters(attention, ['0.out_proj'])


def test_strided_padded_1x1_conv_adapter_keeps_the_shape() -> None:
    conv = nn.Conv2d(4, 6, 1, stride=2, padding=1)
    inputs = torch.randn(1, 4, 7, 7)
    expected = conv(inputs)
    inject_domain_adapters(nn.Sequential(conv), ['0'])
    assert torch.equal(conv(inputs), expected)


def test_uncertainty_and_allotment() -> None:
    views = torch.tensor([[[0.0, 2.0]], [[2.0, 2.0]], [[4.0, 8.0]]])        # 3 views x 1 sample x 2 classes
    # unbiased variances over the views: class 0 of (0, 2, 4) is 4, class 1 of (2, 2, 8) is 12; mean 8
    assert view_uncertainty(views, scale=0.1) == pytest.approx(0.8)
    dense = torch.stack([torch.zeros(2, 3, 2, 2), torch.ones(2, 3, 2, 2)])
    dense[1, 0, :, 0, 0] = 11.0                                                # pixel (0, 0) of sample 0
    valid = torch.ones(2, 2, 2, dtype=torch.bool)
    valid[0, 0, 0] = False
    assert view_uncertainty(dense, valid, scale=1.0) == pytest.approx(0.5)
    assert homeostatic_scales(0.3, 0.2) == (0.7, 1.3)
    assert homeostatic_scales(0.1, 0.2) == (1.1, 0.9)


def test_random_views_are_aligned_with_the_batch() -> None:
    inputs = torch.randn(2, 3, 4, 5)
    identity_views = RandomViews(num_views=3, flip_probability=1.0, contrast=(1.0, 1.0), noise_std=0.0)
    dense = identity_views(lambda x: x * 2.0, inputs, torch.Generator().manual_seed(0))
    assert dense.shape == (3, 2, 3, 4, 5)
    torch.testing.assert_close(dense, (inputs * 2.0).expand_as(dense), rtol=0, atol=1e-6)
    logits = identity_views(lambda x: x.flatten(1), inputs, torch.Generator().manual_seed(0))
    torch.testing.assert_close(logits[0], inputs.flip(-1).flatten(1), rtol=0, atol=1e-6)  # B x K: not flipped back
    views = RandomViews(num_views=4)
    first = views(lambda x: x, inputs, torch.Generator().manual_seed(1))
    assert torch.equal(first, views(lambda x: x, inputs, torch.Generator().manual_seed(1)))
    assert not torch.equal(first[0], first[1])
    with pytest.raises(ValueError, match='at least 2 views'):
        RandomViews(num_views=1)


def test_teacher_ema_has_one_rate_for_the_model_and_one_for_the_adapters() -> None:
    student = mlp()
    inject_domain_adapters(student, ['3'], high_rank=2)
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    before = {name: p.clone() for name, p in teacher.named_parameters()}
    ema_update_with_adapters(teacher, student, momentum=0.9, adapter_momentum=0.5)
    for (name, t), s in zip(teacher.named_parameters(), student.parameters()):
        alpha = 0.5 if 'domain_adapter' in name else 0.9
        torch.testing.assert_close(t, alpha * before[name] + (1 - alpha) * s, rtol=1e-6, atol=1e-7)


def test_symmetric_cross_entropy_and_its_gradient() -> None:
    student = torch.randn(3, 4, requires_grad=True)
    teacher = torch.randn(3, 4, requires_grad=True)
    loss = symmetric_cross_entropy(student, teacher)
    p_s, p_t = student.softmax(1), teacher.softmax(1)
    expected = (-0.5 * (p_t * p_s.log()).sum(1) - 0.5 * (p_s * p_t.log()).sum(1)).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert teacher.grad is None and student.grad is not None


def test_vida_adapts_its_adapters_and_the_teacher_follows() -> None:
    model, method = conv_model(), vida()
    method.setup(model, lambda m, x: m(x))
    assert not method.teacher.training and not any(p.requires_grad for p in method.teacher.parameters())
    assert len(domain_adapters(model)) == 1 and len(domain_adapters(method.teacher)) == 1
    assert [group['lr'] for group in method.optimizer.param_groups] == [0.01, 0.05]
    inputs = torch.randn(2, 3, 6, 6)
    source = model(inputs).detach()
    logits = method.adapt(model, inputs)
    torch.testing.assert_close(logits, source)   # adapters output zero before the first update
    adapter, teacher_adapter = domain_adapters(model)[0], domain_adapters(method.teacher)[0]
    assert (adapter.low_scale, adapter.high_scale) == method.scales == \
        (teacher_adapter.low_scale, teacher_adapter.high_scale)
    assert method.scales != (1.0, 1.0)
    teacher_before = {name: p.clone() for name, p in method.teacher.named_parameters()}
    method.adapt(model, torch.randn(2, 3, 6, 6))
    assert adapter.low.up.weight.any() and adapter.high.up.weight.any()   # the adapters train
    for (name, t), s in zip(method.teacher.named_parameters(), model.parameters()):
        alpha = 0.5 if 'domain_adapter' in name else 0.9
        torch.testing.assert_close(t, alpha * teacher_before[name] + (1 - alpha) * s, rtol=1e-6, atol=1e-7)
    assert torch.equal(method.predict(model, inputs), method.teacher(inputs))


def test_official_allotment_keeps_the_high_rank_scale_at_one() -> None:
    model, method = conv_model(), vida(allot_high_rank=False)
    method.setup(model, lambda m, x: m(x))
    method.adapt(model, torch.randn(2, 3, 6, 6))
    assert method.scales[1] == 1.0 and method.scales[0] != 1.0
    assert domain_adapters(method.teacher)[0].high_scale == 1.0


def test_vida_resumes_exactly_and_keeps_the_stream_fingerprint() -> None:
    assert_resumes_exactly(vida, conv_model)
    models = []
    for _ in range(2):
        model, method = conv_model(), vida()
        method.setup(model, lambda m, x: m(x))
        models.append((model, method))
    (first, method), (second, _) = models
    method.adapt(first, torch.randn(2, 3, 6, 6))
    parts = dict(method=dict(type='ViDA'))
    assert fingerprint(parts, first, None) == fingerprint(parts, second, None)
    assert fingerprint(parts, first, None) != fingerprint(parts, conv_model(), None)
    second.load_state_dict(first.state_dict())          # strict: the adapters' keys exist after set-up
    assert_same(second.state_dict(), first.state_dict())


def test_vida_on_a_batch_norm_model_shares_the_statistics_with_its_teacher() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    method = vida(statistics=dict(type='TestStatistics'))
    method.setup(model, lambda m, x: m(x))
    assert repr(norm_statistics_of(method.teacher[1])) == 'TestStatistics()'
    inputs = torch.randn(2, 3, 6, 6)
    before = {name: value.clone() for name, value in model.named_buffers()}
    method.adapt(model, inputs)
    assert all(torch.equal(value, before[name]) for name, value in model.named_buffers())
    reference = copy.deepcopy(method.teacher)
    remove_norm_statistics(reference)
    assert not torch.equal(method.predict(model, inputs), reference(inputs))
