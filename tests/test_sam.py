"""SAM around a base optimiser: hand-computed steps, re-filtering, NaN safety, resume (imse_seg.core.sam)."""
import io
import math

import pytest
import torch

from imse_seg.core.entropy import NonFiniteError, entropy, reliable_entropy, reliable_mask
from imse_seg.core.sam import SAM


def quadratic(w: torch.Tensor) -> torch.Tensor:
    """f(w) = w1^2 + 3 w2^2, gradient (2 w1, 6 w2)."""
    return w[0] ** 2 + 3 * w[1] ** 2


def hand_sam_point(w1: float, w2: float, rho: float) -> tuple[float, float]:
    """The gradient at the ascended point w + rho g / ||g||, by hand."""
    g1, g2 = 2 * w1, 6 * w2
    norm = math.sqrt(g1 ** 2 + g2 ** 2)
    return 2 * (w1 + rho * g1 / norm), 6 * (w2 + rho * g2 / norm)


def test_sgd_step_equals_hand_computation():
    w = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    sam = SAM([w], torch.optim.SGD, rho=0.1, lr=0.1)
    first = sam.step(lambda: quadratic(w))
    # g0 = (2, 6), ||g0|| = sqrt(40); ascended point (1 + 0.1 * 2/sqrt(40), 1 + 0.1 * 6/sqrt(40));
    # g1 = (2.0632456, 6.5692100); w <- w - 0.1 g1.
    g1 = hand_sam_point(1.0, 1.0, 0.1)
    assert first.item() == 4.0
    assert w.tolist() == pytest.approx([1 - 0.1 * g1[0], 1 - 0.1 * g1[1]], rel=1e-12)
    assert w.tolist() == pytest.approx([0.79367544, 0.34307900], rel=1e-7)
    assert w.grad is None


def test_adam_step_equals_hand_computation():
    """Adam's first step: m_hat = g, v_hat = g^2, so w <- w - lr * g / (|g| + eps) with the SAM gradient."""
    w = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    sam = SAM([w], torch.optim.Adam, rho=0.05, lr=0.01)
    sam.step(lambda: quadratic(w))
    g1 = hand_sam_point(1.0, -0.5, 0.05)
    expected = [1.0 - 0.01 * g1[0] / (abs(g1[0]) + 1e-8), -0.5 - 0.01 * g1[1] / (abs(g1[1]) + 1e-8)]
    assert w.tolist() == pytest.approx(expected, rel=1e-12)


def test_rho_zero_is_the_base_optimiser():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    v = w.detach().clone().requires_grad_(True)
    SAM([w], torch.optim.SGD, rho=0.0, lr=0.1).step(lambda: quadratic(w))
    plain = torch.optim.SGD([v], lr=0.1)
    quadratic(v).backward()
    plain.step()
    torch.testing.assert_close(w, v)


def test_second_forward_sees_perturbed_weights_and_refilters_reliable_samples():
    """logits = s * x: the ascent lowers s (sharper is lower entropy), so a sample just reliable at s is no
    longer reliable at s - rho and the second forward drops it."""
    k = 3
    e0 = 0.4 * math.log(k)
    lo, hi = 0.0, 10.0  # bisect the logit a at which entropy([a, 0, 0]) = e0
    for _ in range(60):
        a = (lo + hi) / 2
        lo, hi = (a, hi) if entropy(torch.tensor([[a, 0.0, 0.0]])).item() > e0 else (lo, a)
    x = torch.tensor([[6.0, 0.0, 0.0], [hi * 1.001, 0.0, 0.0], [0.0, 0.1, 0.0]])
    s0 = 1.0
    s = torch.tensor(s0, requires_grad=True)
    seen = []

    def closure():
        logits = s * x
        seen.append((s.item(), reliable_mask(entropy(logits.detach()), k).tolist()))
        return reliable_entropy(logits, 0.4)

    SAM([s], torch.optim.SGD, rho=0.05, lr=0.0).step(closure)
    assert seen[0] == (s0, [True, True, False])
    assert seen[1][0] == pytest.approx(s0 - 0.05)
    assert seen[1][1] == [True, False, False]
    assert s.item() == s0  # lr 0: back at w


def test_non_finite_first_loss_changes_nothing():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    sam = SAM([w], torch.optim.Adam, rho=0.05, lr=0.1)
    with pytest.raises(NonFiniteError, match='first loss'):
        sam.step(lambda: quadratic(w) * float('nan'))
    assert w.tolist() == [1.0, 2.0]
    assert w.grad is None and len(sam.state) == 0


def test_non_finite_first_gradient_changes_nothing():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    sam = SAM([w], torch.optim.SGD, rho=0.05, lr=0.1)
    with pytest.raises(NonFiniteError, match='first gradient'):
        sam.step(lambda: (w - w.detach()).abs().sqrt().sum())  # value 0, derivative inf
    assert w.tolist() == [1.0, 2.0]


def test_non_finite_second_loss_restores_weights_exactly():
    torch.manual_seed(0)
    w = torch.randn(5, requires_grad=True)
    original = w.detach().clone()
    sam = SAM([w], torch.optim.Adam, rho=0.3, lr=0.1)
    calls = []

    def closure():
        calls.append(w.detach().clone())
        loss = (w ** 2).sum()
        return loss if len(calls) == 1 else loss + float('inf')

    with pytest.raises(NonFiniteError, match='second'):
        sam.step(closure)
    assert not torch.equal(calls[1], original)  # the second forward did run at the ascended point
    assert torch.equal(w.detach(), original)
    assert w.grad is None and len(sam.state) == 0


def test_state_dict_round_trip_resumes_identically():
    torch.manual_seed(0)
    target = torch.randn(4)

    def make(values):
        w = values.clone().requires_grad_(True)
        return w, SAM([w], torch.optim.Adam, rho=0.05, lr=0.05, betas=(0.8, 0.9))

    w, sam = make(torch.zeros(4))
    for _ in range(3):
        sam.step(lambda: ((w - target) ** 2).sum())
    buffer = io.BytesIO()
    torch.save(sam.state_dict(), buffer)  # as a checkpoint does: torch shares tensors between in-memory dicts
    buffer.seek(0)
    saved = torch.load(buffer)
    assert saved['param_groups'][0]['rho'] == 0.05 and saved['state'][0]['step'] == 3

    w2, sam2 = make(w.detach())
    sam2.load_state_dict(saved)
    assert sam2.param_groups is sam2.base_optimizer.param_groups
    assert sam2.state is sam2.base_optimizer.state
    for _ in range(2):
        sam.step(lambda: ((w - target) ** 2).sum())
        sam2.step(lambda: ((w2 - target) ** 2).sum())
    assert torch.equal(w.detach(), w2.detach())


def test_param_group_changes_reach_the_base_step():
    w = torch.tensor([1.0, 1.0], requires_grad=True)
    sam = SAM([w], torch.optim.SGD, rho=0.0, lr=0.1)
    sam.param_groups[0]['lr'] = 0.0
    sam.step(lambda: quadratic(w))
    assert w.tolist() == [1.0, 1.0]


def test_bad_use_raises():
    w = torch.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match='rho'):
        SAM([w], torch.optim.SGD, rho=-1.0, lr=0.1)
    sam = SAM([w], torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match='closure'):
        sam.step()
    with pytest.raises(ValueError, match='does not depend'):
        sam.step(lambda: torch.tensor(1.0))
    with pytest.raises(TypeError, match='scalar loss'):
        sam.step(lambda: w * torch.ones(3))


class Offset(torch.nn.Module):
    """logits = x + b: one trainable class offset shared by all samples."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.b = torch.nn.Parameter(torch.zeros(k, dtype=torch.float64))


@pytest.mark.parametrize('keep_first_selection', [True, False])
def test_entropy_adaptation_second_forward_keeps_the_first_forwards_reliable_samples(keep_first_selection):
    """Issue 17 fix 4, SAR's rule (mr-eggplant/SAR sar.py): the perturbed forward averages the entropy over
    the samples reliable in the first forward AND in the second. Sample 0 is reliable at b = 0, sample 1 is
    not; the ascent (towards class 1, raising sample 0's entropy) makes sample 1 reliable too. Official: the
    update is the gradient of H_0 alone at the ascended point; re-selecting adds H_1."""
    from imse_seg.adaptation import EntropyAdaptation

    margin, rho, lr = 0.9, 0.5, 1.0
    e0 = margin * math.log(2)
    x = torch.tensor([[2.0, 0.0], [0.0, 0.55]], dtype=torch.float64)
    model = Offset(2)
    term = dict(type='EntropyTerm', margin=margin)  # the default is the official rule
    if not keep_first_selection:
        term['keep_first_selection'] = False
    method = EntropyAdaptation(parameters=dict(type='AllParameters'), objective=dict(entropy=term),
                               optimizer=dict(type='SGD', lr=lr), sam_rho=rho)
    method.setup(model, lambda m, inputs: inputs + m.b)

    def h(b: torch.Tensor) -> torch.Tensor:
        p = (x + b).softmax(dim=1)
        return -(p * p.log()).sum(dim=1)

    b0 = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    assert (h(b0) < e0).tolist() == [True, False]
    g1, = torch.autograd.grad(h(b0)[0], b0)
    ascended = (b0 + rho * g1 / g1.norm()).detach().requires_grad_(True)
    assert (h(ascended) < e0).tolist() == [True, True]
    second = h(ascended)[0] if keep_first_selection else h(ascended).mean()
    g2, = torch.autograd.grad(second, ascended)
    scored = method.adapt(model, x)
    torch.testing.assert_close(scored, x)
    torch.testing.assert_close(model.b.detach(), -lr * g2, rtol=1e-12, atol=1e-12)


def test_reliable_entropy_with_first_logits_counts_the_intersection():
    """Hand values, K = 2, margin 0.9 (e0 = 0.624): sample 0 reliable in both forwards, 1 only in the first,
    2 only in the second, 3 in neither; only sample 0's second-forward entropy counts."""
    first = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.1, 0.0], [0.0, 0.0]])
    second = torch.tensor([[2.0, 0.0], [0.2, 0.0], [3.0, 0.0], [0.0, 0.1]])
    h = entropy(second)
    assert (h < 0.9 * math.log(2)).tolist() == [True, False, True, False]
    torch.testing.assert_close(reliable_entropy(second, 0.9, first_logits=first), h[0])
    torch.testing.assert_close(reliable_entropy(second, 0.9), h[[0, 2]].mean())
    with pytest.raises(ValueError, match=r'first_logits have shape \(4, 3\)'):
        reliable_entropy(second, 0.9, first_logits=torch.zeros(4, 3))


def test_keep_first_selection_needs_a_margin():
    from imse_seg.core.objective import EntropyLoss
    with pytest.raises(ValueError, match='keep_first_selection=False only changes the reliable-entropy filter'):
        EntropyLoss(keep_first_selection=False)


def test_a_step_without_ascent_is_the_base_optimisers_step():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    v = w.detach().clone().requires_grad_(True)
    first = SAM([w], torch.optim.SGD, rho=0.5, lr=0.1).step(lambda: quadratic(w), ascend=False)
    plain = torch.optim.SGD([v], lr=0.1)
    quadratic(v).backward()
    plain.step()
    torch.testing.assert_close(w, v)
    assert first.item() == 13.0 and w.grad is None


def test_sam_interval_ascends_on_every_kth_batch_only():
    """sam_interval=3: batches 0 and 3 run SAM's two forwards, the others one; a batch's update then equals
    SAM's or the plain optimiser's from the same point."""
    from imse_seg.adaptation import EntropyAdaptation

    forwards = []
    x = torch.tensor([[2.0, 0.0], [0.0, 0.5]], dtype=torch.float64)

    def build(**options) -> tuple[EntropyAdaptation, torch.nn.Module]:
        model = Offset(2)
        method = EntropyAdaptation(parameters=dict(type='AllParameters'), objective=dict(entropy=dict(
            type='EntropyTerm')), optimizer=dict(type='SGD', lr=0.5), **options)
        method.setup(model, lambda m, inputs: forwards.append(1) or inputs + m.b)
        return method, model

    method, model = build(sam_rho=0.3, sam_interval=3)
    sam, sam_model = build(sam_rho=0.3)
    plain, plain_model = build()
    for batch in range(6):
        for reference in (sam_model, plain_model):
            reference.b.data.copy_(model.b.data)
        forwards.clear()
        method.adapt(model, x)
        assert len(forwards) == (2 if batch % 3 == 0 else 1), batch
        (sam if batch % 3 == 0 else plain).adapt(sam_model if batch % 3 == 0 else plain_model, x)
        expected = sam_model if batch % 3 == 0 else plain_model
        torch.testing.assert_close(model.b.detach(), expected.b.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('options, message', [
    (dict(sam_rho=0.05, sam_interval=0), 'sam_interval must be a positive integer, got 0'),
    (dict(sam_interval=2), 'sam_interval=2 needs SAM: set sam_rho too'),
    (dict(sam_reuse_ascent=True), 'sam_reuse_ascent needs SAM: set sam_rho too')])
def test_bad_sam_interval_is_refused(options, message):
    from imse_seg.adaptation import EntropyAdaptation

    with pytest.raises(ValueError, match=message):
        EntropyAdaptation(parameters=dict(type='AllParameters'), objective=dict(entropy=dict(type='EntropyTerm')),
                          optimizer=dict(type='SGD', lr=0.1), **options)


def test_reused_ascent_is_one_backward_along_the_previous_gradient():
    """reuse_ascent: the first step is SAM's (two closure calls with gradients); each later step calls the
    closure at w without gradients (the prediction), then at w + rho g_prev / ||g_prev||, g_prev being the
    gradient the previous step stepped with, and steps with the gradient found there; by hand on
    f(w) = w1^2 + 3 w2^2 with SGD."""
    w = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    sam = SAM([w], torch.optim.SGD, rho=0.1, reuse_ascent=True, lr=0.1)
    calls = []

    def closure():
        calls.append((w.detach().clone(), torch.is_grad_enabled()))
        return quadratic(w)

    sam.step(closure)
    assert [grad for _, grad in calls] == [True, True]
    g_prev = torch.tensor(hand_sam_point(1.0, 1.0, 0.1), dtype=torch.float64)
    for _ in range(2):
        before = w.detach().clone()
        calls.clear()
        loss = sam.step(closure)
        point = before + 0.1 * g_prev / g_prev.norm()
        assert [grad for _, grad in calls] == [False, True]
        torch.testing.assert_close(calls[0][0], before, rtol=0, atol=0)
        torch.testing.assert_close(calls[1][0], point, rtol=1e-12, atol=1e-12)
        assert loss.item() == pytest.approx(quadratic(before).item(), rel=1e-12)
        g_prev = torch.stack([2 * point[0], 6 * point[1]])
        torch.testing.assert_close(w.detach(), before - 0.1 * g_prev, rtol=1e-12, atol=1e-12)
    sam.state.clear()  # a reset optimiser state holds no direction: the next step is SAM's again
    calls.clear()
    sam.step(closure)
    assert len(calls) == 2


def test_reused_ascent_direction_resumes_from_the_state_dict():
    """The stored direction is part of the optimiser's state dict: a resumed SAM takes the same steps."""
    torch.manual_seed(0)
    target = torch.randn(4)

    def make(values):
        w = values.clone().requires_grad_(True)
        return w, SAM([w], torch.optim.Adam, rho=0.05, reuse_ascent=True, lr=0.05)

    w, sam = make(torch.zeros(4))
    for _ in range(3):
        sam.step(lambda: ((w - target) ** 2).sum())
    buffer = io.BytesIO()
    torch.save(sam.state_dict(), buffer)
    buffer.seek(0)
    w2, sam2 = make(w.detach())
    sam2.load_state_dict(torch.load(buffer))
    calls = []
    for _ in range(2):
        sam.step(lambda: ((w - target) ** 2).sum())
        sam2.step(lambda: calls.append(torch.is_grad_enabled()) or ((w2 - target) ** 2).sum())
    assert calls == [False, True] * 2 and torch.equal(w.detach(), w2.detach())


def test_a_non_finite_reused_ascent_step_restores_the_weights():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    sam = SAM([w], torch.optim.SGD, rho=0.1, reuse_ascent=True, lr=0.1)
    sam.step(lambda: quadratic(w))
    before = w.detach().clone()
    with pytest.raises(NonFiniteError):
        sam.step(lambda: quadratic(w) * float('nan'))
    assert torch.equal(w.detach(), before) and w.grad is None


def test_entropy_adaptation_with_reused_ascent_back_propagates_once_per_batch():
    """sam_reuse_ascent: two forwards with gradients on the first batch (a SAM step); on each later batch
    one without (the prediction, at the current weights) and one with; SAM's two again after a segment
    reset clears the optimiser state. The scored logits are those of the current weights."""
    from imse_seg.adaptation import EntropyAdaptation

    forwards = []
    model = Offset(2)
    method = EntropyAdaptation(parameters=dict(type='AllParameters'), objective=dict(entropy=dict(
        type='EntropyTerm')), optimizer=dict(type='SGD', lr=0.5), sam_rho=0.3, sam_reuse_ascent=True,
        reset_each_segment=True)
    method.setup(model, lambda m, inputs: forwards.append(torch.is_grad_enabled()) or inputs + m.b)
    x = torch.tensor([[2.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    sam, plain = [True, True], [False, True]
    for batch, expected in enumerate([sam, plain, plain, sam, plain]):
        if batch == 3:
            method.start_segment('next')
        forwards.clear()
        current = model.b.detach().clone()
        scored = method.adapt(model, x)
        assert forwards == expected, batch
        torch.testing.assert_close(scored, x + current, rtol=0, atol=0)


def test_reused_ascent_every_other_batch_ascends_along_the_plain_batch_gradient():
    """sam_interval=2 with sam_reuse_ascent: batch 0 takes SAM's step, each odd batch a plain step at w, and
    each later even batch a forward without gradients at w, then one with at w + rho g / ||g||, g being the
    odd batch's gradient at its w (with SGD, (w_before - w_after) / lr)."""
    from imse_seg.adaptation import EntropyAdaptation

    forwards = []
    model = Offset(2)
    method = EntropyAdaptation(parameters=dict(type='AllParameters'), objective=dict(entropy=dict(
        type='EntropyTerm')), optimizer=dict(type='SGD', lr=0.5), sam_rho=0.3, sam_interval=2,
        sam_reuse_ascent=True)
    method.setup(model, lambda m, inputs: forwards.append((m.b.detach().clone(), torch.is_grad_enabled()))
                 or inputs + m.b)
    x = torch.tensor([[2.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    weights = [model.b.detach().clone()]
    for batch in range(5):
        forwards.clear()
        scored = method.adapt(model, x)
        weights.append(model.b.detach().clone())
        torch.testing.assert_close(scored, x + weights[batch], rtol=0, atol=0)
        expected = [True, True] if batch == 0 else [True] if batch % 2 else [False, True]
        assert [grad for _, grad in forwards] == expected, batch
        if batch and batch % 2 == 0:
            g = (weights[batch - 1] - weights[batch]) / 0.5
            torch.testing.assert_close(forwards[0][0], weights[batch], rtol=0, atol=0)
            torch.testing.assert_close(forwards[1][0], weights[batch] + 0.3 * g / g.norm(), rtol=1e-9, atol=1e-9)
