"""Spectral code bank (issue 4): shift detection, retrieval, optimiser handling, save/load, partial batches.

The stream is synthetic: token features (8 x 64 x 16) drawn from per-channel Gaussian "conditions" (a
source S and A-D, each with its own channel means and variances, plus a small per-batch offset standing
for image-to-image variation). The model is a tiny real one converted with ``spectralize``; adaptation
inside condition X is simulated by adding X's own perturbation to the singular values after every batch,
so which code was stored and which one was loaded can be checked exactly.
"""
import copy
import logging
import math

import pytest
import torch
from torch import nn

from imse_seg.core.code_bank import MixtureRetrieval, NewDomainRule, SpectralCodeBank, TopOneRetrieval
from imse_seg.core.domain_stats import ThresholdCalibration, channel_statistics
from imse_seg.core.spectral import spectralize
from imse_seg.core.spectral_code import initial_spectral_code, spectral_code

from exact import assert_same

CHANNELS, TOKENS, BATCH, SEGMENT = 16, 64, 8, 32


class Conditions:
    """Seeded Gaussian conditions and batches drawn from them."""

    def __init__(self, seed: int = 0) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        mean = torch.randn(CHANNELS, generator=self.gen)
        std = 0.5 + torch.rand(CHANNELS, generator=self.gen)
        self.params = {'S': (mean, std)}
        for name in 'ABCD':
            self.params[name] = (mean + 0.4 * std * torch.randn(CHANNELS, generator=self.gen),
                                 std * torch.exp(0.25 * torch.randn(CHANNELS, generator=self.gen)))
        self.params['E'] = (mean + 3 * std, 2 * std)  # far from everything: a condition never seen

    def batch(self, name: str, size: int = BATCH) -> torch.Tensor:
        mean, std = self.params[name]
        offset = 0.03 * std * torch.randn(CHANNELS, generator=self.gen)
        return mean + offset + std * torch.randn(size, TOKENS, CHANNELS, generator=self.gen)


def tiny_model(out: int = 6, seed: int = 0) -> tuple[nn.Module, list]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(CHANNELS, 12), nn.ReLU(), nn.Linear(12, out))
    return model, spectralize(model, ['0', '2'])


def adapt(layers: list, condition: str) -> None:
    """Stand-in for one adaptation step inside ``condition``: a condition-specific drift of the code."""
    gen = torch.Generator().manual_seed(ord(condition))
    with torch.no_grad():
        for layer in layers:
            s = layer.singular_values
            s.add_(1e-3 * s.abs() * torch.randn(s.shape, generator=gen))


def codes_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def bank_with_source(layers: list, conditions: Conditions, **options) -> SpectralCodeBank:
    bank = SpectralCodeBank(layers, channel_dim=-1, full_batch_size=BATCH, **options)
    bank.set_source_statistics(conditions.batch('S') for _ in range(8))
    return bank


def test_recurring_stream_detects_every_boundary_and_retrieves_the_same_condition(caplog) -> None:
    conditions = Conditions()
    _, layers = tiny_model()
    bank = bank_with_source(layers, conditions)
    order = 'ABCDABCD'
    learned = {}  # condition -> the code in the layers when its round-1 segment ended
    loaded = {}  # batch index -> the code in the layers right after observe
    with caplog.at_level(logging.INFO, logger='imse_seg.code_bank'):
        for i in range(len(order) * SEGMENT):
            condition = order[i // SEGMENT]
            if i % SEGMENT == 0 and 0 < i <= 4 * SEGMENT:
                learned[order[i // SEGMENT - 1]] = spectral_code(layers)
            bank.observe(conditions.batch(condition), i)
            loaded[i] = spectral_code(layers)
            adapt(layers, condition)

    assert bank.threshold is not None and 0 < bank.threshold < 0.1
    boundaries = range(SEGMENT, len(order) * SEGMENT, SEGMENT)
    fired = [e.batch_index for e in bank.events if e.detected]
    for b in boundaries:
        assert len([i for i in fired if b <= i <= b + 2]) == 1, f'boundary {b}: detections {fired}'
    assert all(any(b <= i <= b + 2 for b in boundaries) for i in fired), f'spurious detections {fired}'

    stored_for = {}  # condition -> index of the entry stored when its round-1 segment ended
    for event in bank.events:
        if event.detected and event.batch_index <= 4 * SEGMENT:
            condition = order[event.batch_index // SEGMENT - 1]
            stored_for[condition] = event.stored
            assert codes_equal(bank.entries[event.stored].code, learned[condition])
    for event in bank.events:
        if event.detected and event.batch_index >= 4 * SEGMENT:
            condition = order[event.batch_index // SEGMENT]
            assert event.retrieved == stored_for[condition], (event, stored_for)
            assert codes_equal(loaded[event.batch_index], learned[condition])
            assert min(event.entry_distances) == event.entry_distances[event.retrieved]

    shift_lines = [r.getMessage() for r in caplog.records if 'shift detected' in r.getMessage()]
    assert len(shift_lines) == len(fired) == len(boundaries)
    assert f'batch {4 * SEGMENT}: shift detected' in shift_lines[3]
    assert f'retrieved top-1 entry {stored_for["A"]}' in shift_lines[3]


def test_mixture_retrieval_is_the_formula_and_tends_to_top_one() -> None:
    torch.manual_seed(1)
    source = {'a': torch.rand(4) + 1, 'b': torch.rand(3) + 1}
    codes = [source] + [{k: v + 0.1 * torch.randn(v.shape) for k, v in source.items()} for _ in range(3)]
    distances = torch.tensor([0.30, 0.10, 0.70, 0.25], dtype=torch.float64)
    temperature = 0.2
    result = MixtureRetrieval(temperature)(distances, codes, source)
    e = [math.exp(-d / temperature) for d in distances.tolist()]
    w = [x / sum(e) for x in e]
    for name in source:
        for j in range(source[name].numel()):
            s0 = float(source[name][j])
            by_hand = s0 + sum(wi * (float(code[name][j]) - s0) for wi, code in zip(w, codes))
            assert float(result.code[name][j]) == pytest.approx(by_hand, rel=1e-6)
    assert result.weights.tolist() == pytest.approx(w) and result.entry == 1

    cold = MixtureRetrieval(1e-6)(distances, codes, source)
    top = TopOneRetrieval()(distances, codes, source)
    assert top.entry == cold.entry == 1 and top.weights is None
    assert codes_equal(cold.code, top.code) and codes_equal(top.code, codes[1])
    assert top.code['a'] is not codes[1]['a']  # a copy: adapting it leaves the entry intact
    with pytest.raises(ValueError, match='temperature'):
        MixtureRetrieval(0.0)


def test_bank_mixture_loads_the_weighted_code() -> None:
    conditions = Conditions()
    _, layers = tiny_model()
    bank = bank_with_source(layers, conditions, retrieval=MixtureRetrieval(temperature=0.5))
    for i, condition in enumerate('A' * 12 + 'B' * 12 + 'A'):
        event = bank.observe(conditions.batch(condition), i)
        if event.detected:
            loaded = spectral_code(layers)
        adapt(layers, condition)
    assert [e.batch_index for e in bank.events if e.detected] == [12, 24]
    weights = torch.softmax(-torch.tensor(event.entry_distances, dtype=torch.float64) / 0.5, 0)
    assert event.weights == pytest.approx(weights.tolist())
    assert event.retrieved == int(weights.argmax()) and 0.0 < max(event.weights) < 1.0
    for name, s0 in initial_spectral_code(layers).items():
        by_hand = s0.double() + sum(float(w) * (e.code[name].double() - s0.double())
                                    for w, e in zip(weights, bank.entries))
        torch.testing.assert_close(loaded[name], by_hand.float(), rtol=1e-6, atol=1e-7)
        assert not torch.equal(loaded[name], bank.entries[event.retrieved].code[name])


def test_save_load_round_trips_and_resumes_identically(tmp_path) -> None:
    conditions = Conditions()
    stream = [conditions.batch(c) for c in 'A' * 10 + 'B' * 10 + 'A' * 10 + 'C' * 10]
    names = 'A' * 10 + 'B' * 10 + 'A' * 10 + 'C' * 10
    _, layers = tiny_model()
    options = dict(store_optimizer_state=True)
    optimizer = torch.optim.Adam([layer.singular_values for layer in layers], lr=1e-3)
    bank = bank_with_source(layers, conditions, optimizer=optimizer, **options)
    model_input = torch.randn(4, CHANNELS)

    def step(model_layers, opt, i):
        opt.zero_grad()
        (model_layers[0].module(model_input) ** 2).sum().backward()
        opt.step()
        adapt(model_layers, names[i])

    for i in range(25):
        bank.observe(stream[i], i)
        step(layers, optimizer, i)
    path = tmp_path / 'bank.pt'
    bank.save(path)

    _, other_layers = tiny_model()
    other_optimizer = torch.optim.Adam([layer.singular_values for layer in other_layers], lr=1e-3)
    other_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # no shared moment tensors
    other = SpectralCodeBank(other_layers, channel_dim=-1, full_batch_size=BATCH, optimizer=other_optimizer,
                             **options)
    other.load(path)
    assert_same(other.state_dict(), bank.state_dict())
    assert other.threshold == bank.threshold and len(other.entries) == 3
    assert codes_equal(spectral_code(other_layers), spectral_code(layers))

    for i in range(25, len(stream)):
        assert bank.observe(stream[i], i) == other.observe(stream[i], i)
        step(layers, optimizer, i)
        step(other_layers, other_optimizer, i)
    assert [e.batch_index for e in bank.events if e.detected] == [10, 20, 30]
    assert_same(other.state_dict(), bank.state_dict())


def test_loading_a_bank_for_other_layers_names_the_first_mismatch(tmp_path) -> None:
    conditions = Conditions()
    _, layers = tiny_model()
    bank = bank_with_source(layers, conditions, threshold=0.05)
    bank.observe(conditions.batch('A'), 0)
    path = tmp_path / 'bank.pt'
    bank.save(path)

    _, wider = tiny_model(out=5)
    target = SpectralCodeBank(wider, channel_dim=-1, full_batch_size=BATCH)
    before = spectral_code(wider)
    with pytest.raises(ValueError, match=r"does not fit these layers: .*layer '2' has shape \(6,\)"):
        target.load(path)
    assert target.entries == [] and codes_equal(spectral_code(wider), before)  # nothing half-loaded

    model = nn.Sequential(nn.Linear(CHANNELS, 12), nn.ReLU(), nn.Identity(), nn.Linear(12, 6))
    renamed = SpectralCodeBank(spectralize(model, ['0', '3']), channel_dim=-1, full_batch_size=BATCH)
    with pytest.raises(ValueError, match="no entry for layer '3'"):
        renamed.load(path)


def test_partial_batches_do_not_update_statistics_nor_trigger() -> None:
    conditions = Conditions()
    _, layers = tiny_model()
    bank = bank_with_source(layers, conditions, threshold=0.05)
    for i in range(4):
        bank.observe(conditions.batch('A'), i)
    running = bank.running.state_dict()
    partial = bank.observe(conditions.batch('E', size=BATCH - 1), 4)
    assert partial.distance > 1.0 and not partial.detected and partial.stored is None
    assert_same(bank.running.state_dict(), running)
    assert bank.full_batches == 4 and len(bank.entries) == 1
    assert not bank.observe(conditions.batch('A'), 5).detected
    assert bank.full_batches == 5 and bank.running.batches == 5


def test_stream_shorter_than_one_batch(tmp_path) -> None:
    conditions = Conditions()
    _, layers = tiny_model()
    bank = SpectralCodeBank(layers, channel_dim=-1, full_batch_size=BATCH)
    event = bank.observe(conditions.batch('A', size=3), 0)
    assert event.distance is None and not event.detected
    assert bank.entries == [] and bank.running.value is None and bank.threshold is None and bank.warming_up
    path = tmp_path / 'short.pt'
    bank.save(path)
    _, other_layers = tiny_model()
    other = SpectralCodeBank(other_layers, channel_dim=-1, full_batch_size=BATCH)
    other.load(path)
    assert_same(other.state_dict(), bank.state_dict())
    assert other.events == [event]


def test_source_entry_and_threshold_from_the_first_batches() -> None:
    conditions = Conditions()
    _, layers = tiny_model()
    bank = SpectralCodeBank(layers, channel_dim=-1, full_batch_size=BATCH, warmup_batches=4,
                            threshold=ThresholdCalibration(quantile=1.0, margin=2.0))
    first = [conditions.batch('A') for _ in range(4)]
    for i, batch in enumerate(first):
        assert not bank.observe(batch, i).detected
        adapt(layers, 'A')
        assert bank.warming_up == (i < 3)
    source = bank.entries[0]
    whole = channel_statistics(torch.cat(first), channel_dim=-1)
    torch.testing.assert_close(source.statistics.mean, whole.mean)
    torch.testing.assert_close(source.statistics.var, whole.var)
    assert codes_equal(source.code, initial_spectral_code(layers)) and source.batch_index is None
    assert bank.threshold == pytest.approx(2.0 * max(e.distance for e in bank.events[1:]))
    assert bank.observe(conditions.batch('B'), 4).detected
    with pytest.raises(ValueError, match='source entry already exists'):
        bank.set_source_statistics(conditions.batch('S'))
    with pytest.raises(ValueError, match='8 channels along dim -1, the bank holds statistics over 16'):
        bank.observe(torch.randn(BATCH, TOKENS, 8), 5)


@pytest.mark.parametrize('rule', [None, NewDomainRule('current'), NewDomainRule('source')])
def test_new_domain_rule(rule) -> None:
    conditions = Conditions()
    _, layers = tiny_model()
    bank = bank_with_source(layers, conditions, threshold=0.05, new_domain=rule)
    for i in range(10):
        bank.observe(conditions.batch('A'), i)
        adapt(layers, 'A')
    adapted = spectral_code(layers)
    event = bank.observe(conditions.batch('E'), 10)
    assert event.detected and event.stored == 1 and min(event.entry_distances) > 0.05
    if rule is None:  # official: the nearest entry, however far
        assert event.retrieved == min(range(2), key=lambda j: event.entry_distances[j])
        assert codes_equal(spectral_code(layers), bank.entries[event.retrieved].code)
    elif rule.start_from == 'current':
        assert event.retrieved is None and codes_equal(spectral_code(layers), adapted)
    else:
        assert event.retrieved is None and codes_equal(spectral_code(layers), initial_spectral_code(layers))
    # A known condition still retrieves under the rule: back to A after E.
    for i in range(11, 16):
        bank.observe(conditions.batch('E'), i)
    back = bank.observe(conditions.batch('A'), 16)
    assert back.detected and back.retrieved == 1


def test_optimizer_reset_store_and_restore() -> None:
    conditions = Conditions()
    _, layers = tiny_model()
    params = [layer.singular_values for layer in layers]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    bank = bank_with_source(layers, conditions, threshold=0.05, optimizer=optimizer,
                            store_optimizer_state=True)
    x = torch.randn(4, CHANNELS)
    states = {}
    for i, condition in enumerate('A' * 6 + 'B' * 6 + 'A' * 3):
        before = copy.deepcopy(optimizer.state_dict()['state'])
        event = bank.observe(conditions.batch(condition), i)
        if event.detected:
            assert_same(bank.entries[event.stored].optimizer_state, before)
            states[i] = copy.deepcopy(optimizer.state_dict()['state'])
        optimizer.zero_grad()
        (layers[0].module(x) ** 2).sum().backward()
        optimizer.step()
    assert sorted(states) == [6, 12]
    first_shift = bank.events[6]
    assert first_shift.retrieved == 0 and states[6] == {}  # source entry has no state: reset (cleared)
    assert bank.events[12].retrieved == 1
    stored_a = bank.entries[1].optimizer_state
    assert_same(states[12], stored_a)  # A's moments came back with A's code
    assert stored_a[0]['step'].item() == 6.0  # stepping after the restore did not edit the entry
    assert optimizer.state_dict()['state'][0]['step'].item() == 9.0

    plain = torch.optim.Adam(params, lr=1e-2)
    plain_bank = bank_with_source(layers, conditions, threshold=0.05, optimizer=plain)
    for i, condition in enumerate('A' * 4 + 'B'):
        event = plain_bank.observe(conditions.batch(condition), i)
        assert len(plain.state) == (0 if i == 0 or event.detected else 1)  # only layer 0 has grads
        plain.zero_grad()
        (layers[0].module(x) ** 2).sum().backward()
        plain.step()
    assert event.detected and plain_bank.entries[1].optimizer_state is None
    with pytest.raises(ValueError, match='needs an optimizer'):
        SpectralCodeBank(layers, channel_dim=-1, full_batch_size=1, store_optimizer_state=True)


@pytest.mark.parametrize('source_given', [True, False])
def test_refresh_entries_keeps_each_conditions_latest_code(source_given: bool) -> None:
    """Three rounds of ABCD: with ``refresh_entries`` every return of a condition starts from the code it
    ended its previous visit with, the bank holds one entry per condition (a true source entry is never
    replaced), and without it the official bank grows by one entry per shift."""
    def run(refresh: bool) -> tuple[SpectralCodeBank, dict, dict]:
        conditions = Conditions()
        _, layers = tiny_model()
        if source_given:
            bank = bank_with_source(layers, conditions, refresh_entries=refresh)
        else:
            bank = SpectralCodeBank(layers, channel_dim=-1, full_batch_size=BATCH, refresh_entries=refresh)
        order = 'ABCD' * 3
        ended, started = {}, {}  # (condition, visit) -> code at the end / right after the first observe
        for i in range(len(order) * SEGMENT):
            condition, visit = order[i // SEGMENT], i // (4 * SEGMENT)
            if i % SEGMENT == 0 and i > 0:
                ended[order[i // SEGMENT - 1], (i - 1) // (4 * SEGMENT)] = spectral_code(layers)
            bank.observe(conditions.batch(condition), i)
            if i % SEGMENT == 0:
                started[condition, visit] = spectral_code(layers)
            adapt(layers, condition)
        return bank, ended, started

    bank, ended, started = run(refresh=True)
    for condition in 'ABCD':
        for visit in (1, 2):
            if condition == 'A' and not source_given and visit == 1:
                continue  # A's first visit began before the warm-up made entry 0: checked below
            assert codes_equal(started[condition, visit], ended[condition, visit - 1]), (condition, visit)
    assert len(bank.entries) == (5 if source_given else 4)
    if source_given:
        assert codes_equal(bank.entries[0].code, initial_spectral_code(bank.layers))
    else:  # entry 0 describes A (the fallback): A's later visits start from A's latest code
        assert codes_equal(started['A', 2], ended['A', 1])
    refreshed = [e for e in bank.events if e.detected and e.refreshed]
    assert len(refreshed) == sum(e.detected for e in bank.events) - (4 if source_given else 3)

    official, _, _ = run(refresh=False)
    assert len(official.entries) == 1 + 11  # entry 0 and one per shift
    assert not any(e.refreshed for e in official.events)


def test_loaded_optimizer_state_stays_shared_with_sam() -> None:
    """Issue 17 fix 7: the bank loads a stored state into SAM's base optimiser; SAM must keep sharing its
    ``state`` and ``param_groups``, so that a learning rate set on SAM (here 0) still governs the step."""
    from imse_seg.core.sam import SAM

    conditions = Conditions()
    _, layers = tiny_model()
    params = [layer.singular_values for layer in layers]
    sam = SAM(params, torch.optim.Adam, rho=0.05, lr=1e-2)
    bank = bank_with_source(layers, conditions, threshold=0.05, optimizer=sam.base_optimizer,
                            store_optimizer_state=True)
    x = torch.randn(4, CHANNELS)

    def closure() -> torch.Tensor:
        return (layers[0].module(x) ** 2).sum()

    loaded = False
    for i, condition in enumerate('A' * 6 + 'B' * 6 + 'A'):
        event = bank.observe(conditions.batch(condition), i)
        loaded = event.detected and event.retrieved == 1
        if not loaded:
            sam.step(closure)
    assert loaded, 'the stream should end on a retrieval of A with its stored state'
    assert sam.state is sam.base_optimizer.state and sam.param_groups is sam.base_optimizer.param_groups
    assert_same(sam.state_dict()['state'], bank.entries[1].optimizer_state)
    for group in sam.param_groups:
        group['lr'] = 0.0
    before = [p.detach().clone() for p in params]
    sam.step(closure)
    for param, old in zip(params, before):
        assert torch.equal(param, old)
    assert sam.state_dict()['state'][0]['step'].item() == 7.0  # the loaded moments were stepped
