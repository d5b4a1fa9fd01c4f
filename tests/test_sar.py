"""SAR (issue 17): reliable entropy, SAM, and model recovery with the official moving-average rule."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from exact import assert_same
from imse_seg.adaptation import SAR, clone_state
from imse_seg.core.recovery import ModelRecovery, perturbed_reliable_entropy
from imse_seg.registry import build_adaptation
from test_method_state import assert_resumes_exactly

MARGIN = 0.4 * math.log(5)


def classifier(scale: float) -> nn.Module:
    """Linear -> LayerNorm -> Linear over 5 classes; ``scale`` on the head sets how confident it is.

    On :func:`batch`, scale 6 gives reliable samples of mean entropy 0.43 (above SAR's 0.2), scale 50 of
    0.05 (a collapse by SAR's rule).
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 5))
    with torch.no_grad():
        model[2].weight.mul_(scale)
    return model.eval()


def batch(seed: int = 1) -> torch.Tensor:
    return torch.randn(16, 6, generator=torch.Generator().manual_seed(seed))


def sar(**overrides) -> SAR:
    cfg = dict(type='SAR', parameters=dict(type='NormParameters'),
               optimizer=dict(type='SGD', lr=0.01, momentum=0.9), margin=0.4)
    return build_adaptation(dict(cfg, **overrides))


def set_up(method: SAR, model: nn.Module) -> dict:
    method.setup(model, lambda m, x: m(x))
    return clone_state(dict(params=[p.detach() for p in method.params], optimizer=method.optimizer.state_dict()))


def test_moving_average_follows_the_official_update() -> None:
    recovery = ModelRecovery(threshold=0.47, momentum=0.9)
    assert recovery.update(None) is False and recovery.ema is None
    assert recovery.update(0.5) is False and recovery.ema == 0.5        # starts at the first value
    assert recovery.update(None) is False and recovery.ema == 0.5       # nothing reliable: no update
    assert recovery.update(0.1) is True
    assert recovery.ema == 0.9 * 0.5 + (1 - 0.9) * 0.1                  # 0.46 < 0.47: reset
    assert recovery.update(None) is True                                 # still below: the next step resets
    recovery.load_state_dict(dict(ema=None))
    assert recovery.state_dict() == dict(ema=None)


def test_recovery_value_keeps_the_samples_reliable_at_both_points() -> None:
    confident, unsure = [8.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]
    first = torch.tensor([confident, confident, unsure, confident])
    second = torch.tensor([confident, unsure, confident, [6.0, 0.0, 0.0, 0.0, 0.0]])
    entropy_of = lambda row: float(-(torch.tensor(row).softmax(0) * torch.tensor(row).log_softmax(0)).sum())
    # Sample 0 and 3 are reliable at both points; 1 only at the first, 2 only at the second.
    expected = (entropy_of(confident) + entropy_of([6.0, 0.0, 0.0, 0.0, 0.0])) / 2
    assert perturbed_reliable_entropy(first, second, 0.4) == pytest.approx(expected, rel=1e-6)
    assert perturbed_reliable_entropy(first, second, 0.4, torch.tensor([True, True, True, False])) == \
        pytest.approx(entropy_of(confident), rel=1e-6)
    assert perturbed_reliable_entropy(first[1:3], second[1:3], 0.4) is None


def test_recovery_restores_the_initial_parameters_and_optimiser_state() -> None:
    model, method = classifier(50.0), sar()
    initial = set_up(method, model)
    source = model(batch()).detach()
    logits = method.adapt(model, batch())
    assert torch.equal(logits, source)                   # scored: the forward before the update
    assert method.resets == [0] and method.recovery.ema < 0.2
    assert_same([p.detach() for p in method.params], initial['params'])
    assert_same(method.optimizer.state_dict(), initial['optimizer'])
    method.adapt(model, batch(2))                        # the average is not cleared: it recovers again
    assert method.resets == [0, 1]

    unguarded, method = classifier(50.0), sar(reset_constant=0.0)
    set_up(method, unguarded)
    method.adapt(unguarded, batch())
    assert method.resets == []
    assert not all(torch.equal(p, q) for p, q in zip(method.params, initial['params']))
    assert method.optimizer.state_dict()['state']          # SGD momentum buffers exist after a step


def test_no_recovery_while_the_loss_average_stays_above_the_constant() -> None:
    model, method = classifier(6.0), sar()
    initial = set_up(method, model)
    for seed in (1, 2, 3):
        method.adapt(model, batch(seed))
    assert method.resets == [] and 0.2 < method.recovery.ema < MARGIN
    assert not all(torch.equal(p, q) for p, q in zip(method.params, initial['params']))


def test_parameter_choice_excludes_the_top_of_the_network() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 5))
    method = sar(parameters=dict(type='NormParameters', exclude=['3']))
    method.setup(model, lambda m, x: m(x))
    assert [id(p) for p in method.params] == [id(model[1].weight), id(model[1].bias)]
    with pytest.raises(ValueError, match="exclude pattern 'blocks.9.*' matches no norm layer"):
        sar(parameters=dict(type='NormParameters', exclude=['blocks.9.*'])).setup(model, lambda m, x: m(x))
    with pytest.raises(ValueError, match='sam_rho must be positive'):
        sar(sam_rho=0.0)


def test_sar_resumes_exactly_after_a_recovery() -> None:
    assert_resumes_exactly(lambda: sar(optimizer=dict(type='SGD', lr=0.05, momentum=0.9), margin=0.9),
                           lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(),
                                                 nn.Conv2d(8, 4, 1)))
    model, method = classifier(50.0), sar()
    set_up(method, model)
    method.adapt(model, batch())
    state = method.state_dict()
    assert state['resets'] == [0] and state['recovery']['ema'] < 0.2
    fresh_model, fresh = classifier(50.0), sar()
    set_up(fresh, fresh_model)
    fresh.load_state_dict(clone_state(state))
    assert_same(fresh.state_dict(), state)
