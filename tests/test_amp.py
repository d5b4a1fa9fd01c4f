"""Mixed precision (issue 20, item 2): bfloat16 forwards, float32 losses, the --amp entry and its refusals."""
from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmseg.registry import MODELS
from torch import nn

import imse_seg.adaptation.entropy_adaptation as entropy_adaptation_module
import imse_seg.adaptation.sar as sar_module
import imse_seg.adaptation.vida as vida_module
import imse_seg.seg.adaptation.cotta as cotta_module
from acdc_fixture import REPO, TINY_SEGMENTOR, write_acdc_tree, write_config, write_tiny_checkpoint
from imse_seg.checkpoint import CheckpointError
from imse_seg.core import record_expert_activations, spectralize
from imse_seg.core.precision import MixedPrecisionForward, check_amp_device, same_precision
from imse_seg.errors import ConfigError
from imse_seg.registry import build_adaptation
from imse_seg.seg.adaptation.segmentation import segmentor_logits
from imse_seg.seg.models.efficientvit import LiteMLA
from imse_seg.seg.run import RunOptions, configure
from tool_module import load_tool

DEMO_CONFIG = REPO / 'configs/demo_ctta.py'
METHODS_FILE = REPO / 'configs/_base_/methods/segformer.py'


def test_forward_runs_in_bfloat16_and_hands_back_float32_logits_with_gradients() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    seen = []
    model[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    forward = MixedPrecisionForward(lambda m, x: m(x))
    logits = forward(model, torch.randn(4, 6))
    assert seen == [torch.bfloat16] and logits.dtype == torch.float32
    logits.logsumexp(dim=1).mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    assert same_precision(forward, segmentor_logits).forward is segmentor_logits
    assert same_precision(segmentor_logits, segmentor_logits) is segmentor_logits


class Block(nn.Module):
    """A linear map and an attention layer: every spectral recording path (input, query, attention output)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return self.attn(h, h, h, need_weights=False)[0]


def test_spectral_reconstruction_and_expert_activations_stay_float32_under_autocast() -> None:
    model = Block()
    layers = spectralize(model, ['fc', 'attn'])
    record_expert_activations(layers)
    x = torch.randn(2, 5, 8)
    model(x)
    full = [layer.expert_activations for layer in layers]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        composed = [layer.weight.compose() for layer in layers]
        model(x)
    assert all(w.dtype == torch.float32 for w in composed)
    for layer, w in zip(layers, composed):
        assert torch.equal(w, layer.weight.compose())  # the reconstruction is float32's, bit for bit
    for layer, reference in zip(layers, full):
        assert layer.expert_activations.dtype == torch.float32
        torch.testing.assert_close(layer.expert_activations, reference, atol=0.05, rtol=0.05)


def test_efficientvit_linear_attention_runs_in_float32_under_autocast() -> None:
    attention = LiteMLA(16, head_dim=8).eval()
    seen = []
    attention.proj.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    x = torch.randn(1, 16, 12, 12)
    with torch.no_grad():
        reference = attention(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = attention(x)
    assert seen == [torch.float32, torch.float32]
    assert (low.float() - reference).norm() / reference.norm() < 0.05


def demo_segmentor() -> nn.Module:
    """The demo's tiny SegFormer with its trained weights (tracked in the repository), in eval mode."""
    from mmengine.runner import load_checkpoint
    cfg = Config.fromfile(str(DEMO_CONFIG))
    model = MODELS.build(ConfigDict(cfg.model.module.to_dict()))
    load_checkpoint(model, str(REPO / cfg.load_from), map_location='cpu', logger='silent')
    return model.eval()


def demo_inputs(tmp_path: Path) -> torch.Tensor:
    """The fixture's street-like frames (road, buildings, sky, a car), pre-processed as the model's own."""
    import cv2
    root = write_acdc_tree(tmp_path / 'acdc', images_per_condition=1)
    images = [torch.from_numpy(cv2.imread(str(path))).permute(2, 0, 1)
              for path in sorted(root.glob('rgb_anon/*/train/*/*.png'))]
    return torch.stack(images).float()


def test_amp_inference_logits_are_close_to_full_precision_and_predictions_agree(tmp_path) -> None:
    model = demo_segmentor()
    data = model.data_preprocessor(dict(inputs=list(demo_inputs(tmp_path))), False)
    with torch.no_grad():
        full = segmentor_logits(model, data['inputs'])
        mixed = MixedPrecisionForward(segmentor_logits)(model, data['inputs'])
    assert mixed.dtype == torch.float32
    difference = (mixed - full).abs()
    assert float(difference.max()) < 0.05 * float(full.abs().max())
    assert float(difference.mean()) < 0.01 * float(full.abs().mean())
    assert float((mixed.argmax(dim=1) == full.argmax(dim=1)).float().mean()) > 0.97


def tensor_dtypes(values) -> list[torch.dtype]:
    """The dtypes of the tensors among ``values`` (and in lists of them)."""
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value.dtype)
        elif isinstance(value, (list, tuple)):
            found.extend(tensor_dtypes(value))
    return found


def spy(monkeypatch, module, name: str, seen: list) -> None:
    """Record the dtypes of the tensors ``module.name`` is called with, then call it."""
    original = getattr(module, name)

    @functools.wraps(original)
    def recording(*args, **kwargs):
        seen.append((name, tensor_dtypes(list(args) + list(kwargs.values()))))
        return original(*args, **kwargs)
    monkeypatch.setattr(module, name, recording)


def spy_loss_inputs(monkeypatch, seen: list) -> None:
    """Record what every method's loss is computed from: the objective's forward outputs (logits, classifier
    features, recorded expert activations), CoTTA's targets and per-pixel loss, ViDA's and SAR's terms."""
    original = entropy_adaptation_module.ForwardOutputs

    def outputs(logits, valid=None, features=None, input_size=None, first_logits=None):
        seen.append(('ForwardOutputs', tensor_dtypes([logits, features, first_logits])))
        return original(logits, valid, features, input_size, first_logits)
    monkeypatch.setattr(entropy_adaptation_module, 'ForwardOutputs', outputs)
    import imse_seg.core.objective as objective_module
    spy(monkeypatch, objective_module, 'diversity', seen)
    spy(monkeypatch, sar_module, 'perturbed_reliable_entropy', seen)
    spy(monkeypatch, cotta_module, 'confident_or_averaged', seen)
    spy(monkeypatch, cotta_module, 'masked_mean', seen)
    spy(monkeypatch, vida_module, 'symmetric_cross_entropy', seen)
    spy(monkeypatch, vida_module, 'view_uncertainty', seen)


def method_config(name: str) -> dict:
    cfg = Config.fromfile(str(METHODS_FILE))
    if name == 'tent_stag_weight_alignment':  # STAG's reading (B): the classifier input reaches the loss
        method = cfg.tent_stag.to_dict()
        method['objective']['stag']['alignment'] = 'StagWeightAlignment'
        return method
    return cfg[name].to_dict()


# Which spied calls each method's loss goes through (all must see float32 tensors only).
LOSS_CALLS = {'tent': {'ForwardOutputs'}, 'tent_stag_weight_alignment': {'ForwardOutputs'},
              'imse_stag': {'ForwardOutputs', 'diversity'},
              'sar': {'ForwardOutputs', 'perturbed_reliable_entropy'},
              'cotta': {'confident_or_averaged', 'masked_mean'},
              'vida': {'symmetric_cross_entropy', 'view_uncertainty'}}


@pytest.mark.parametrize('name', list(LOSS_CALLS))
def test_gradient_methods_adapt_under_amp_with_float32_losses(monkeypatch, name) -> None:
    model = MODELS.build(ConfigDict(copy.deepcopy(TINY_SEGMENTOR))).eval()
    cfg = method_config(name)
    if name == 'sar':  # a random model is unsure everywhere: widen the margin to ln K so that pixels count
        cfg['margin'] = 1.0
    if name == 'cotta':
        cfg['scales'] = (0.5, 1.0)
    if name == 'vida':
        cfg['views'] = dict(type='RandomViews', num_views=2)
    method = build_adaptation(cfg)
    method.setup(model, MixedPrecisionForward(segmentor_logits))
    trained = {id(p): p.detach().clone() for p in method.adapted_parameters()}
    seen: list = []
    spy_loss_inputs(monkeypatch, seen)
    inputs = torch.randn(1, 3, 64, 128, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        logits = method.adapt(model, inputs)
        assert logits.dtype == torch.float32 and bool(torch.isfinite(logits).all())
    assert LOSS_CALLS[name] <= {call for call, _ in seen}
    assert all(dtype == torch.float32 for _, dtypes in seen for dtype in dtypes), seen
    moved = [p for p in method.adapted_parameters() if not torch.equal(p.detach(), trained[id(p)])]
    assert moved and all(bool(torch.isfinite(p).all()) and p.dtype == torch.float32 for p in moved)


@pytest.fixture(scope='module')
def stream(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('amp')
    return dict(root=root, data=write_acdc_tree(root / 'acdc', images_per_condition=1),
                checkpoint=write_tiny_checkpoint(root / 'tiny.pth'))


def test_adapt_tool_amp_streams_in_mixed_precision_and_resumes_only_so(stream) -> None:
    config = write_config(stream['root'] / 'tent.py', stream['data'], 'tent', rounds=1)
    work_dir = stream['root'] / 'tent_amp'
    adapt = load_tool('adapt').main
    common = [str(config), '--checkpoint', str(stream['checkpoint']), '--work-dir', str(work_dir)]
    assert adapt([*common, '--amp']) == 0
    records = [json.loads(line) for line in (work_dir / 'results.jsonl').read_text().splitlines()]
    assert [r['key']['condition'] for r in records] == ['fog', 'night', 'rain', 'snow']
    assert Config.fromfile(str(work_dir / 'tent.py')).test_cfg.amp is True
    with pytest.raises(CheckpointError, match='precision'):
        adapt([*common, '--resume'])


def test_amp_is_a_loop_entry_checked_before_the_run(tmp_path) -> None:
    cfg = configure(Config.fromfile(str(DEMO_CONFIG)), 'demo', RunOptions(amp=True, work_dir=str(tmp_path)))
    assert cfg.test_cfg.amp is True
    assert configure(Config.fromfile(str(DEMO_CONFIG)), 'demo', RunOptions()).test_cfg.get('amp') is None
    with pytest.raises(ConfigError, match='amp must be True or False'):
        configure(Config.fromfile(str(DEMO_CONFIG)), 'demo', RunOptions(cfg_options={'test_cfg.amp': 'yes'}))
    plain_loop = Config.fromfile(str(DEMO_CONFIG))
    plain_loop.test_cfg = dict(type='TestLoop')
    with pytest.raises(ConfigError, match="takes no argument 'amp'"):
        configure(plain_loop, 'demo', RunOptions(amp=True))


def test_cuda_without_bfloat16_is_refused_in_one_line(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda: False)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: 'an old GPU')
    with pytest.raises(ConfigError, match='an old GPU does not support'):
        check_amp_device(torch.device('cuda'))
    check_amp_device(torch.device('cpu'))


def test_benchmark_tool_times_mixed_precision(tmp_path) -> None:
    config = tmp_path / 'tiny.py'
    config.write_text(f'model = {TINY_SEGMENTOR!r}\n')
    out = tmp_path / 'bench.json'
    load_tool('benchmark').main([str(config), '--methods', 'tent', '--sizes', '64x128', '--warmup', '0',
                                 '--repeats', '1', '--amp', '--out', str(out)])
    record = json.loads(out.read_text())
    assert record['amp'] is True and set(record['runs'][0]['cases']) == {'inference', 'step:tent', 'stag_loss'}
