"""DivergenceGuard (issue 9): non-finite and collapsed updates are undone, counted and resumable."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from imse_seg.adaptation import DivergenceGuard, EntropyAdaptation, clone_state
from imse_seg.adaptation.method import AdaptationMethod
from imse_seg.core import NonFiniteError


class Bias(nn.Module):
    """Logits = inputs + a per-class bias (B x K x H x W)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(classes))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias.view(1, -1, 1, 1)


class Scripted(AdaptationMethod):
    """Predicts, then moves the bias by the next scripted step (a NaN step, or 'raise')."""

    def __init__(self, steps: list) -> None:
        self.steps = list(steps)

    def setup(self, model: nn.Module, forward) -> None:
        super().setup(model, forward)
        self.param = model.bias

    def adapt(self, model: nn.Module, inputs: Tensor, valid=None) -> Tensor:
        logits = self.predict(model, inputs)
        step = self.steps.pop(0)
        if step == 'raise':
            raise NonFiniteError('loss is not finite')
        with torch.no_grad():
            self.param.add_(torch.as_tensor(step, dtype=torch.float32))
        return logits

    def adapted_parameters(self) -> list[nn.Parameter]:
        return [self.param]

    def state_dict(self) -> dict:
        return dict(param=self.param.detach())

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.param.copy_(state['param'])


def run(guard: DivergenceGuard, steps: list, batches: int) -> tuple[Bias, list[Tensor]]:
    model, method = Bias(), Scripted(steps)
    method.setup(model, lambda m, x: m(x))
    inputs = torch.zeros(1, 3, 2, 2)
    inputs[0, 1, 0, 0] = 0.1   # slightly mixed so that a zero bias predicts two classes
    outputs = [guard.adapt(method, model, inputs) for _ in range(batches)]
    return model, outputs


def test_non_finite_update_is_skipped_and_counted() -> None:
    guard = DivergenceGuard()
    model, _ = run(guard, [[0.0, 0.5, 0.0], 'raise', [0.0, float('nan'), 0.0], [0.0, 0.5, 0.0]], 4)
    assert torch.equal(model.bias.detach(), torch.tensor([0.0, 1.0, 0.0]))
    assert [event.batch for event in guard.events] == [1, 2]
    assert 'non-finite update' in guard.events[0].reason
    assert 'non-finite after the update' in guard.events[1].reason


def test_collapse_restores_the_last_state_that_passed() -> None:
    guard = DivergenceGuard(collapse_fraction=0.9)
    # batch 0 predicts from bias 0 (fine) and moves class 2 far up; batch 1 predicts class 2 everywhere
    model, outputs = run(guard, [[0.0, 0.0, 10.0], [0.0, 0.0, 10.0], [0.0, 0.0, 0.0]], 3)
    assert len(guard.events) == 1 and guard.events[0].batch == 1 and 'collapse' in guard.events[0].reason
    assert torch.equal(outputs[1], outputs[0])          # batch 1 re-predicted from the restored bias
    assert torch.equal(model.bias.detach(), torch.zeros(3))


def test_guard_state_round_trips() -> None:
    guard = DivergenceGuard(collapse_fraction=0.9)
    run(guard, [[0.0, 0.0, 10.0], [0.0, 0.0, 10.0]], 2)
    other = DivergenceGuard(collapse_fraction=0.9)
    other.load_state_dict(clone_state(guard.state_dict()))
    assert other.events == guard.events and other.batches == guard.batches
    assert torch.equal(other.last_good['param'], guard.last_good['param'])


def test_collapse_fraction_is_checked() -> None:
    with pytest.raises(ValueError, match='collapse_fraction'):
        DivergenceGuard(collapse_fraction=1.5)


def test_entropy_adaptation_state_restores_the_adapted_parameters() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.GroupNorm(2, 4), nn.Conv2d(4, 3, 1))

    def build() -> EntropyAdaptation:
        return EntropyAdaptation(parameters=dict(type='NormParameters'),
                                 objective=dict(entropy=dict(type='EntropyTerm')),
                                 optimizer=dict(type='Adam', lr=0.1))
    method = build()
    method.setup(model, lambda m, x: m(x))
    saved = clone_state(method.state_dict())
    inputs = torch.randn(2, 3, 4, 4)
    method.adapt(model, inputs)
    moved = clone_state(method.state_dict())
    method.load_state_dict(clone_state(saved))
    assert all(torch.equal(p, q) for p, q in zip(method.adapted_parameters(), saved['params']))
    method.load_state_dict(moved)
    assert not torch.equal(moved['params'][0], saved['params'][0])
    assert all(torch.equal(p, q) for p, q in zip(method.adapted_parameters(), moved['params']))


def run_batches(guard: DivergenceGuard, model: nn.Module, steps: list, batches: list[Tensor]) -> list[Tensor]:
    method = Scripted(steps)
    method.setup(model, lambda m, x: m(x))
    return [guard.adapt(method, model, inputs) for inputs in batches]


def halves(value: float) -> Tensor:
    """2 x 2 inputs of 3 classes: class 0's logit is ``value`` on the left half, class 1's on the right."""
    inputs = torch.zeros(1, 3, 2, 2)
    inputs[0, 0, :, 0] = value
    inputs[0, 1, :, 1] = value
    return inputs


def test_a_collapsed_last_good_state_falls_back_to_the_source() -> None:
    guard = DivergenceGuard(collapse_fraction=0.9)
    model = Bias()
    # bias 0 passes batch 0 and moves to [0, 0, 1], which passes batch 1 (the last good state) and then
    # moves far up: batch 2 collapses, and so does its re-prediction by [0, 0, 1] (1 > 0.5 everywhere)
    outputs = run_batches(guard, model, [[0.0, 0.0, 1.0], [0.0, 0.0, 10.0], [0.0, 0.0, 0.0]],
                          [halves(0.5), halves(2.0), halves(0.5)])
    assert [event.batch for event in guard.events] == [2]
    assert guard.events[0].reason.endswith('source state restored')
    assert torch.equal(model.bias.detach(), torch.zeros(3))
    assert torch.equal(outputs[2], halves(0.5))                    # the source's prediction is scored
    assert guard.state_dict()['last_good'] is None


class Sharpen(nn.Module):
    """Logits = inputs * exp(scale): the arg-max never changes, the entropy falls as the scale grows."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.bias.exp()


def test_an_entropy_collapse_is_caught_and_the_last_good_state_scored() -> None:
    guard = DivergenceGuard(entropy_floor=0.2, entropy_momentum=0.0)
    model = Sharpen()
    outputs = run_batches(guard, model, [[4.0], [0.0], [0.0]], [halves(1.0)] * 3)
    assert [event.batch for event in guard.events] == [1] and 'entropy average' in guard.events[0].reason
    assert guard.events[0].reason.endswith('last good state restored')
    assert torch.equal(outputs[1], outputs[0]) and torch.equal(model.bias.detach(), torch.zeros(1))


def test_a_collapse_soon_after_a_recovery_restores_the_source() -> None:
    guard = DivergenceGuard(collapse_fraction=0.9, recollapse_window=5, pause_batches=0)
    model = Bias()
    # batch 2 collapses and recovers to the last good state [0, 0, 1], whose next update collapses again:
    # batch 4, within the window, goes back to the source
    step = [0.0, 0.0, 10.0]
    outputs = run_batches(guard, model, [[0.0, 0.0, 1.0], step, step, step, [0.0, 0.0, 0.0]], [halves(2.0)] * 5)
    assert [event.batch for event in guard.events] == [2, 4]
    assert guard.events[0].reason.endswith('last good state restored')
    assert guard.events[1].reason.endswith('source state restored')
    assert torch.equal(model.bias.detach(), torch.zeros(3)) and torch.equal(outputs[4], halves(2.0))


def test_an_update_that_always_collapses_pauses_updates_for_ever_longer() -> None:
    """Every update collapses the model (a learning rate far too high): after the first recollapse the guard
    scores the source without updates for 3 batches, then 6, then 12; no collapsed prediction is scored."""
    guard = DivergenceGuard(collapse_fraction=0.9, recollapse_window=5, pause_batches=3)
    model = Bias()
    outputs = run_batches(guard, model, [[0.0, 0.0, 10.0]] * 20, [halves(2.0)] * 20)
    # batch 1 recovers to the last good state; 3 recollapses (pause 3: batches 4-6), 8 (pause 6: 9-14),
    # 16 (pause 12: 17-28)
    assert [event.batch for event in guard.events] == [1, 3, 8, 16]
    assert guard.events[0].reason.endswith('last good state restored')
    assert [event.reason.rsplit('paused for ', 1)[-1] for event in guard.events[1:]] == [
        '3 batches', '6 batches', '12 batches']
    assert all(torch.equal(output, model(halves(2.0)).detach()) for output in outputs)
    other = DivergenceGuard(collapse_fraction=0.9, recollapse_window=5, pause_batches=3)
    other.load_state_dict(clone_state(guard.state_dict()))
    assert (other.pause, other.paused_until) == (12, 29)


def test_pause_batches_is_checked() -> None:
    with pytest.raises(ValueError, match='pause_batches must be >= 0, got -1'):
        DivergenceGuard(pause_batches=-1)
