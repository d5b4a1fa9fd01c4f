"""Benchmark tool and spectral weight caching (issue 8): the tool writes every row; caching is exact."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from acdc_fixture import REPO, TINY_SEGMENTOR
from imse_seg.core import SAM, closure_step, load_spectral_code, spectralize, train_only
from imse_seg.benchmarking.segmentation import METHODS
from tool_module import load_tool

CASES = {'inference', 'spectral_inference', 'recompose', 'stag_loss', 'code_bank_statistics',
         'code_bank_retrieval'} | {f'step:{name}' for name in METHODS}


def test_tool_writes_every_case(tmp_path: Path) -> None:
    config = tmp_path / 'tiny.py'
    config.write_text(f'model = {TINY_SEGMENTOR!r}\n')
    out = tmp_path / 'bench.json'
    load_tool('benchmark').main([str(config), '--sizes', '64x128', '--batch-sizes', '1', '2', '--warmup', '0',
                      '--repeats', '1', '--out', str(out)])
    record = json.loads(out.read_text())
    assert [(run['batch'], run['height'], run['width']) for run in record['runs']] == [(1, 64, 128), (2, 64, 128)]
    for run in record['runs']:
        assert set(run['cases']) == CASES
        for case in run['cases'].values():
            assert len(case['wall_s']) == 1 and case['wall_median_s'] > 0 and case['peak_bytes'] >= 0
        assert run['ratio_to_inference']['inference'] == 1.0
        tent = run['cases']['step:tent']['wall_s'][0]
        assert set(run['ratio_to_tent']) == {f'step:{name}' for name in METHODS}
        for name in METHODS:
            assert run['ratio_to_tent'][f'step:{name}'] == pytest.approx(
                run['cases'][f'step:{name}']['wall_s'][0] / tent, rel=1e-12)
        assert set(run['targets']) == {'stag_over_tent', 'stag_over_imse', 'spectral_over_plain_inference',
                                       'imse_stag_over_tent', 'imse_stag_over_cotta'}
    assert record['methods']['imse_stag_no_sam']['sam_rho'] is None
    assert record['methods']['imse_stag']['sam_rho'] == 0.05


class Block(nn.Module):
    """A linear map, an attention layer and a 1x1 convolution: every kind of spectral layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.conv = nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h = self.attn(h, h, h, need_weights=False)[0]
        return self.conv(h.transpose(1, 2)[..., None])[..., 0].transpose(1, 2)


def reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output with every weight composed afresh from the factors: copies start without a cache."""
    with torch.no_grad():
        return copy.deepcopy(model)(x)


@pytest.fixture
def block() -> tuple[Block, list]:
    model = Block().eval()
    layers = spectralize(model, ['fc', 'attn', 'conv'])
    train_only(model, [layer.singular_values for layer in layers])
    return model, layers


def test_cached_weights_equal_uncached(block) -> None:
    model, layers = block
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        first = model(x)
        cached = [getattr(layer.module, layer.tensor_name) for layer in layers]
        second = model(x)
        assert all(w is getattr(layer.module, layer.tensor_name) for w, layer in zip(cached, layers))
    assert torch.equal(first, second) and torch.equal(first, reference(model, x))
    with torch.enable_grad():
        live = [getattr(layer.module, layer.tensor_name) for layer in layers]
    assert all(w.grad_fn is not None for w in live)
    assert all(torch.equal(w, c) for w, c in zip(live, cached))


@pytest.mark.parametrize('foreach', [False, True])
@pytest.mark.parametrize('sam', [False, True])
def test_cache_invalidates_after_optimizer_step(block, foreach: bool, sam: bool) -> None:
    model, layers = block
    x = torch.randn(2, 5, 8)
    params = [layer.singular_values for layer in layers]
    optimizer = SAM(params, torch.optim.Adam, rho=0.05, lr=1e-2, foreach=foreach) if sam else \
        torch.optim.Adam(params, lr=1e-2, foreach=foreach)
    with torch.no_grad():
        before = model(x)
    closure_step(optimizer, lambda: model(x).square().mean())
    with torch.no_grad():
        after = model(x)
    assert not torch.equal(before, after)
    assert torch.equal(after, reference(model, x))


def test_cache_invalidates_on_loaded_code_frozen_layers_and_copies(block) -> None:
    model, layers = block
    x = torch.randn(2, 5, 8)
    layers[0].singular_values.requires_grad_(False)
    with torch.enable_grad():
        frozen = getattr(layers[0].module, 'weight')
        assert frozen.grad_fn is None and frozen is getattr(layers[0].module, 'weight')
    load_spectral_code(layers, {layer.name: 2 * layer.singular_values.detach() for layer in layers})
    with torch.no_grad():
        assert torch.equal(model(x), reference(model, x))
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.fc.parametrizations.weight[0].singular_values.mul_(0.5)
        assert torch.equal(twin(x), reference(twin, x)) and torch.equal(model(x), reference(model, x))


def test_weight_composed_in_inference_mode_is_not_reused_by_autograd(block) -> None:
    model, layers = block
    layers[0].singular_values.requires_grad_(False)
    x = torch.randn(2, 5, 8, requires_grad=True)
    with torch.inference_mode():
        model(x.detach())
    model(x).sum().backward()
    assert x.grad is not None


def test_tool_without_spectral_method_skips_spectral_cases(tmp_path: Path) -> None:
    config = tmp_path / 'tiny.py'
    config.write_text(f'model = {TINY_SEGMENTOR!r}\n')
    out = tmp_path / 'bench.json'
    load_tool('benchmark').main([str(config), '--methods', 'tent', '--sizes', '64x128', '--warmup', '0', '--repeats', '1',
                      '--out', str(out)])
    run = json.loads(out.read_text())['runs'][0]
    assert set(run['cases']) == {'inference', 'step:tent', 'stag_loss'} and run['targets'] == {}


def test_a_repeated_case_reports_the_time_per_call(monkeypatch) -> None:
    """``Repeated(fn, k)`` (a method's ``sam_interval`` period) runs fn k times per timed run and records
    the time per call: on a clock that each call of fn advances by its own cost, the mean over the period."""
    from imse_seg.benchmarking import timing

    clock = [0.0]
    costs = iter([3.0, 1.0, 1.0, 1.0] * 3)

    def step() -> None:
        clock[0] += next(costs)

    monkeypatch.setattr(timing.time, 'perf_counter', lambda: clock[0])
    results = timing.interleaved_timings({'step': timing.Repeated(step, 4)}, torch.device('cpu'), warmup=1,
                                         repeats=2)
    assert results['step'].wall_s == [1.5, 1.5]
