"""Method state (issue 9): a method set up afresh and loaded from a saved state continues identically."""
from __future__ import annotations

import copy
import io
from typing import Callable

import torch
from torch import nn

from imse_seg.adaptation import AdaptationMethod, EntropyAdaptation
from imse_seg.seg.adaptation import CoTTA, segmentor_logits
from exact import assert_same


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(), nn.Conv2d(8, 4, 1))


def tiny_segmentor() -> nn.Module:
    """CoTTA infers its views with an mmseg segmentor's test mode: the acdc fixture's tiny SegFormer."""
    from mmengine.config import ConfigDict
    from mmseg.registry import MODELS

    from acdc_fixture import TINY_SEGMENTOR
    torch.manual_seed(0)
    return MODELS.build(ConfigDict({k: v for k, v in TINY_SEGMENTOR.items() if k != 'data_preprocessor'}))


def assert_resumes_exactly(build: Callable[[], AdaptationMethod], make_model: Callable[[], nn.Module] = small_model,
                           forward=lambda m, x: m(x), size: tuple[int, int] = (8, 8)) -> None:
    """Adapt 3 batches; save after 2 into a file; a fresh method loading it must give the same batch 3."""
    torch.manual_seed(1)
    batches = [torch.randn(2, 3, *size) for _ in range(3)]
    source = make_model()
    model, method = copy.deepcopy(source), build()
    method.setup(model, forward)
    set_up = {name: value.clone() for name, value in model.state_dict().items()}
    for inputs in batches[:2]:
        method.adapt(model, inputs)
    buffer = io.BytesIO()
    torch.save(dict(model=model.state_dict(), method=method.state_dict()), buffer)
    expected = method.adapt(model, batches[2])

    resumed_model, resumed = copy.deepcopy(source), build()
    resumed.setup(resumed_model, forward)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model.load_state_dict(saved['model'])
    resumed.load_state_dict(saved['method'])
    assert torch.equal(resumed.adapt(resumed_model, batches[2]), expected)
    for name, value in model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[name], value), name
    assert_same(resumed.state_dict(), method.state_dict())
    moved = [name for name, value in model.state_dict().items() if not torch.equal(set_up[name], value)]
    assert moved, 'the method did not adapt anything'


def test_cotta_resumes_exactly() -> None:
    assert_resumes_exactly(lambda: CoTTA(optimizer=dict(type='Adam', lr=0.01), scales=(0.5, 1.0),
                                         restore_probability=0.2, seed=3),
                           tiny_segmentor, segmentor_logits, size=(64, 64))


def test_tent_resumes_exactly() -> None:
    assert_resumes_exactly(lambda: EntropyAdaptation(parameters=dict(type='NormParameters'),
                                                     objective=dict(entropy=dict(type='EntropyTerm')),
                                                     optimizer=dict(type='Adam', lr=0.01)))


def test_sam_entropy_adaptation_resumes_exactly() -> None:
    assert_resumes_exactly(lambda: EntropyAdaptation(parameters=dict(type='NormParameters'),
                                                     objective=dict(entropy=dict(type='EntropyTerm', margin=0.9)),
                                                     optimizer=dict(type='Adam', lr=0.01), sam_rho=0.05))
