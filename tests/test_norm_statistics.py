"""BatchNorm statistics at test time (issue 16 item 6, issue 17): source, test and blended moments."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from imse_seg.adaptation import DivergenceGuard, EntropyAdaptation, NormStatisticsAdaptation, apply_norm_statistics
from imse_seg.core.norm_statistics import (BlendedStatistics, TestStatistics, batch_moments, norm_statistics_of,
                                           remove_norm_statistics, use_norm_statistics)
from imse_seg.seg.adaptation import CoTTA
from test_method_state import assert_resumes_exactly


def source_bn(channels: int = 4) -> nn.BatchNorm2d:
    """A BatchNorm2d in eval mode with non-trivial running moments and affine parameters."""
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    bn.num_batches_tracked.fill_(7)
    return bn.eval()


def bn_model() -> nn.Module:
    """conv -> BN -> ReLU -> 1x1 conv, with BN running moments far from a standard normal input's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    with torch.no_grad():
        model[1].running_mean.uniform_(-2, 2)
        model[1].running_var.uniform_(2.0, 4.0)
    return model.eval()


def buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in module.named_buffers()}


def test_test_statistics_are_train_mode_batch_norm_without_moving_the_buffers() -> None:
    bn, inputs = source_bn(), torch.randn(3, 4, 5, 6, requires_grad=True)
    reference = copy.deepcopy(bn).train()
    expected = reference(inputs)
    expected_grad, = torch.autograd.grad(expected.square().sum(), inputs)
    before = buffers(bn)
    use_norm_statistics(bn, TestStatistics())
    output = bn(inputs)
    grad, = torch.autograd.grad(output.square().sum(), inputs)
    assert not bn.training
    assert torch.equal(output, expected)
    assert torch.equal(grad, expected_grad)
    after = buffers(bn)
    assert all(torch.equal(after[name], value) for name, value in before.items())
    assert not torch.equal(after['running_mean'], buffers(reference)['running_mean'])  # train mode moved them


def test_blend_weight_zero_is_eval_mode_bit_for_bit() -> None:
    bn, inputs = source_bn(), torch.randn(3, 4, 5, 6)
    expected = bn(inputs)
    use_norm_statistics(bn, BlendedStatistics(0.0))
    assert torch.equal(bn(inputs), expected)


def test_blend_weight_one_is_the_test_batch_moments() -> None:
    bn, inputs = source_bn(), torch.randn(3, 4, 5, 6)
    expected = copy.deepcopy(bn).train()(inputs)
    before = buffers(bn)
    use_norm_statistics(bn, BlendedStatistics(1.0))
    torch.testing.assert_close(bn(inputs), expected, rtol=0, atol=1e-6)
    assert all(torch.equal(buffers(bn)[name], value) for name, value in before.items())


def test_blend_matches_a_hand_computed_reference() -> None:
    bn = nn.BatchNorm1d(2, eps=1e-5).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.0, 10.0]))
        bn.running_var.copy_(torch.tensor([1.0, 4.0]))
        bn.weight.copy_(torch.tensor([2.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.5, -1.0]))
    # B x C x L = 2 x 2 x 2: channel 0 holds 1, 3, 5, 7 (mean 4, biased variance 5); channel 1 holds
    # 10, 10, 14, 14 (mean 12, biased variance 4).
    inputs = torch.tensor([[[1.0, 3.0], [10.0, 10.0]], [[5.0, 7.0], [14.0, 14.0]]])
    use_norm_statistics(bn, BlendedStatistics(0.3))
    mean = [0.7 * 0.0 + 0.3 * 4.0, 0.7 * 10.0 + 0.3 * 12.0]   # 1.2, 10.6
    var = [0.7 * 1.0 + 0.3 * 5.0, 0.7 * 4.0 + 0.3 * 4.0]      # 2.2, 4.0
    expected = torch.tensor([[[2.0 * (x - mean[0]) / math.sqrt(var[0] + 1e-5) + 0.5 for x in (1.0, 3.0)],
                              [(x - mean[1]) / math.sqrt(var[1] + 1e-5) - 1.0 for x in (10.0, 10.0)]],
                             [[2.0 * (x - mean[0]) / math.sqrt(var[0] + 1e-5) + 0.5 for x in (5.0, 7.0)],
                              [(x - mean[1]) / math.sqrt(var[1] + 1e-5) - 1.0 for x in (14.0, 14.0)]]])
    torch.testing.assert_close(bn(inputs), expected, rtol=1e-6, atol=1e-6)


def test_blend_moments_stay_exact_when_the_mean_dwarfs_the_spread() -> None:
    torch.manual_seed(0)
    inputs = 1000.0 + torch.randn(2, 3, 16, 16)
    mean, var = batch_moments(inputs)
    var64, mean64 = torch.var_mean(inputs.double(), dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(mean.double(), mean64, rtol=1e-6, atol=0)
    torch.testing.assert_close(var.double(), var64, rtol=1e-3, atol=0)


def test_blend_differentiates_through_the_test_moments() -> None:
    bn, inputs = source_bn(), torch.randn(3, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    bn.double()
    use_norm_statistics(bn, BlendedStatistics(0.4))
    assert torch.autograd.gradcheck(lambda x: bn(x), (inputs,))


def test_only_batch_norm_layers_change_and_layer_norm_models_are_refused() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6), nn.BatchNorm1d(6), nn.GroupNorm(2, 6)).eval()
    assert use_norm_statistics(model, TestStatistics()) == ['2']
    assert norm_statistics_of(model[1]) is None and norm_statistics_of(model[3]) is None
    layer_norm_only = nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6))
    with pytest.raises(ValueError, match='has no BatchNorm layer'):
        apply_norm_statistics(layer_norm_only, dict(type='TestStatistics'))
    assert apply_norm_statistics(layer_norm_only, None) == []


def test_a_deep_copy_normalises_with_its_own_parameters() -> None:
    bn, inputs = source_bn(), torch.randn(3, 4, 5, 6)
    use_norm_statistics(bn, BlendedStatistics(0.5))
    copied = copy.deepcopy(bn)
    assert torch.equal(copied(inputs), bn(inputs))
    with torch.no_grad():
        copied.bias.add_(1.0)
        copied.running_mean.add_(1.0)
    plain = source_bn()
    plain.load_state_dict(copied.state_dict())
    use_norm_statistics(plain, BlendedStatistics(0.5))
    assert torch.equal(copied(inputs), plain(inputs))
    assert not torch.equal(copied(inputs), bn(inputs))


def test_misuse_is_refused() -> None:
    bn = source_bn()
    use_norm_statistics(bn, TestStatistics())
    with pytest.raises(ValueError, match='already normalises with TestStatistics'):
        use_norm_statistics(bn, BlendedStatistics(0.1))
    with pytest.raises(RuntimeError, match='is in train mode'):
        bn.train()(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match=r'must be in \[0, 1\]'):
        BlendedStatistics(1.5)
    untracked = nn.BatchNorm2d(4, track_running_stats=False).eval()
    use_norm_statistics(untracked, BlendedStatistics(0.1))
    with pytest.raises(ValueError, match='needs running moments'):
        untracked(torch.randn(2, 4, 3, 3))


def test_removing_the_statistics_restores_the_source_moments() -> None:
    model, inputs = bn_model(), torch.randn(2, 3, 6, 6)
    expected = model(inputs)
    use_norm_statistics(model, TestStatistics())
    assert not torch.equal(model(inputs), expected)
    assert remove_norm_statistics(model) == 1
    assert torch.equal(model(inputs), expected)


def test_bn_statistics_adaptation_changes_predictions_and_trains_nothing() -> None:
    model, inputs = bn_model(), torch.randn(2, 3, 6, 6)
    source = model(inputs)
    method = NormStatisticsAdaptation(statistics=dict(type='BlendedStatistics', weight=0.1))
    method.setup(model, lambda m, x: m(x))
    logits = method.adapt(model, inputs)
    assert not logits.requires_grad and not any(p.requires_grad for p in model.parameters())
    assert not torch.equal(logits, source)
    assert method.state_dict() == {}
    assert torch.equal(method.adapt(model, inputs), logits)   # stateless: the same batch, the same logits
    with pytest.raises(ValueError, match='has no BatchNorm layer'):
        NormStatisticsAdaptation(dict(type='TestStatistics')).setup(nn.Sequential(nn.Linear(3, 3)),
                                                                    lambda m, x: m(x))


def test_tent_with_test_statistics_resumes_exactly() -> None:
    assert_resumes_exactly(lambda: EntropyAdaptation(
        parameters=dict(type='NormParameters', statistics=dict(type='TestStatistics')),
        objective=dict(entropy=dict(type='EntropyTerm')), optimizer=dict(type='Adam', lr=0.01)), bn_model)


def test_cotta_teacher_and_anchor_share_the_statistics_and_resume_exactly() -> None:
    from imse_seg.seg.adaptation import segmentor_logits
    from test_method_state import tiny_segmentor

    def build() -> CoTTA:
        return CoTTA(optimizer=dict(type='Adam', lr=0.01), scales=(0.5, 1.0), restore_probability=0.2, seed=3,
                     statistics=dict(type='BlendedStatistics', weight=0.3))

    method, model = build(), tiny_segmentor()
    method.setup(model, segmentor_logits)
    for copied in (method.teacher, method.anchor):
        norms = [m for m in copied.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert norms and all(repr(norm_statistics_of(m)) == 'BlendedStatistics(weight=0.3)' for m in norms)
    assert_resumes_exactly(build, tiny_segmentor, segmentor_logits, size=(64, 64))


def test_imse_bank_features_keep_the_source_moments() -> None:
    model = nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)), nn.Conv2d(8, 4, 1))
    method = EntropyAdaptation(
        parameters=dict(type='SpectralParameters', convert=['1'], statistics=dict(type='TestStatistics')),
        objective=dict(entropy=dict(type='EntropyTerm', margin=0.4)), optimizer=dict(type='Adam', lr=0.01),
        code_bank=dict(feature_module='0', full_batch_size=1))
    method.setup(model.eval(), lambda m, x: m(x))
    assert norm_statistics_of(model[0][1]) is not None
    assert norm_statistics_of(method.bank_features[1]) is None


def test_a_refused_update_leaves_the_adapted_state_and_the_moments_as_they_were() -> None:
    model = bn_model()
    method = EntropyAdaptation(parameters=dict(type='NormParameters', statistics=dict(type='TestStatistics')),
                               objective=dict(entropy=dict(type='EntropyTerm')), optimizer=dict(type='Adam', lr=0.1))
    method.setup(model, lambda m, x: m(x))
    guard = DivergenceGuard()
    inputs = torch.randn(2, 3, 6, 6)
    guard.adapt(method, model, inputs)
    state, moments = copy.deepcopy(model.state_dict()), buffers(model)
    broken = inputs.clone()
    broken[0, 0, 0, 0] = float('nan')
    guard.adapt(method, model, broken)
    assert [event.batch for event in guard.events] == [1]
    assert all(torch.equal(model.state_dict()[name], value) for name, value in state.items())
    assert all(torch.equal(buffers(model)[name], value) for name, value in moments.items())
