"""Spectral layers (issue 2): exact conversion, only singular values train, codes restore, errors."""
import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from imse_seg.core import (count_parameters, initial_spectral_code, load_spectral_code,
                           record_expert_activations, reset_spectral_code, spectral_code, spectralize,
                           train_only, trainable_parameters)

SEGFORMER_ROLES = ['backbone.layers.*.1.*.attn.attn', 'backbone.layers.*.1.*.ffn.layers.0',
                   'backbone.layers.*.1.*.ffn.layers.4']
VIT_ROLES = ['blocks.*.attn.qkv', 'blocks.*.attn.proj', 'blocks.*.mlp.fc1', 'blocks.*.mlp.fc2']


def tiny_segformer() -> nn.Module:
    from mmseg.registry import MODELS
    import mmseg.models  # noqa: F401
    cfg = dict(
        type='EncoderDecoder',
        backbone=dict(type='MixVisionTransformer', embed_dims=16, num_layers=[1, 2, 1, 1],
                      num_heads=[1, 2, 4, 8], sr_ratios=[8, 4, 2, 1]),
        decode_head=dict(type='SegformerHead', in_channels=[16, 32, 64, 128], in_index=[0, 1, 2, 3],
                         channels=32, num_classes=19, norm_cfg=dict(type='BN', requires_grad=True),
                         align_corners=False))
    return MODELS.build(cfg).eval()


def segformer_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.decode_head(model.backbone(x))


def tiny_vit() -> nn.Module:
    return timm.create_model('vit_tiny_patch16_224', pretrained=False, img_size=32, patch_size=8,
                             embed_dim=48, depth=3, num_heads=3, num_classes=10).eval()


def relative_max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


def test_segformer_conversion_keeps_output() -> None:
    model = tiny_segformer()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref = segformer_logits(model, x)
    layers = spectralize(model, SEGFORMER_ROLES)
    # 5 blocks x (in_proj, out_proj, fc1, fc2)
    assert len(layers) == 20
    assert {layer.tensor_name for layer in layers} == {'weight', 'in_proj_weight'}
    with torch.no_grad():
        out = segformer_logits(model, x)
    assert relative_max_diff(ref, out) <= 1e-4


def test_vit_conversion_keeps_output() -> None:
    model = tiny_vit()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    layers = spectralize(model, VIT_ROLES)
    assert len(layers) == 12
    with torch.no_grad():
        out = model(x)
    assert relative_max_diff(ref, out) <= 1e-4


def test_dense_weight_is_not_kept() -> None:
    model = nn.Sequential(nn.Linear(64, 32))
    spectralize(model, '0')
    assert model[0].parametrizations.weight.original.numel() == 0
    assert {name for name, _ in model.named_parameters()} == {
        '0.bias', '0.parametrizations.weight.original', '0.parametrizations.weight.0.singular_values'}


def test_only_singular_values_train_and_code_restores() -> None:
    model = tiny_vit()
    layers = spectralize(model, VIT_ROLES)
    trained = train_only(model, [layer.singular_values for layer in layers])
    names = {name for name, p in model.named_parameters() if p.requires_grad}
    assert names and all(name.endswith('.singular_values') for name in names)
    assert trainable_parameters(model) == trained
    count = count_parameters(model)
    assert count.trainable == sum(layer.weight.rank for layer in layers) < count.total

    x = torch.randn(4, 3, 32, 32)
    snapshot = spectral_code(layers)
    with torch.no_grad():
        before = model(x)
    optimizer = torch.optim.SGD(trained, lr=0.5)
    model(x).logsumexp(dim=1).mean().backward()
    optimizer.step()
    with torch.no_grad():
        after = model(x)
    assert (after - before).abs().max() > 1e-3

    load_spectral_code(layers, snapshot)
    with torch.no_grad():
        restored = model(x)
    assert torch.equal(restored, before)


def test_reset_restores_conversion_values() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    layers = spectralize(model, ['0', '2'])
    with torch.no_grad():
        for layer in layers:
            layer.singular_values.mul_(1.5)
    reset_spectral_code(layers)
    for name, value in initial_spectral_code(layers).items():
        assert torch.equal(dict((l.name, l.singular_values) for l in layers)[name], value)


def test_code_mismatch_names_the_layer() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4))
    layers = spectralize(model, ['0', '1'])
    code = spectral_code(layers)
    del code['1']
    with pytest.raises(ValueError, match="no entry for layer '1'"):
        load_spectral_code(layers, code)
    code = spectral_code(layers)
    code['0'] = code['0'][:3]
    with pytest.raises(ValueError, match="layer '0' has shape"):
        load_spectral_code(layers, code)


def test_rank_deficient_weight_converts_without_nan() -> None:
    linear = nn.Linear(16, 12)
    with torch.no_grad():
        linear.weight[4:10] = 0.0            # a zero row block
        linear.weight[:, 12:] = 0.0          # and zero columns
    model = nn.Sequential(linear)
    x = torch.randn(5, 16)
    ref = model(x).detach()
    (layer,) = spectralize(model, '0')
    assert layer.weight.rank < 12
    record_expert_activations([layer])
    out = model(x)
    assert torch.isfinite(out).all() and torch.isfinite(layer.expert_activations).all()
    assert relative_max_diff(ref, out.detach()) <= 1e-5
    out.sum().backward()
    assert torch.isfinite(layer.singular_values.grad).all()


def test_zero_weight_converts() -> None:
    model = nn.Sequential(nn.Linear(6, 3))
    nn.init.zeros_(model[0].weight)
    (layer,) = spectralize(model, '0')
    assert layer.weight.rank == 0
    assert torch.equal(model(torch.ones(2, 6)), model[0].bias.expand(2, 3))


def test_patch_conv_is_a_spectral_layer() -> None:
    conv = nn.Conv2d(4, 8, kernel_size=2, stride=2)
    model = nn.Sequential(conv)
    x = torch.randn(2, 4, 6, 8)
    ref = model(x).detach()
    (layer,) = spectralize(model, '0')
    record_expert_activations([layer])
    out = model(x)
    assert relative_max_diff(ref, out.detach()) <= 1e-5
    patches = F.unfold(x, kernel_size=2, stride=2).transpose(1, 2).reshape(-1, 16)
    expected = F.normalize(patches, dim=-1) @ layer.weight.Vh.T
    torch.testing.assert_close(layer.expert_activations, expected)


def test_recording_matches_definition_for_every_role() -> None:
    model = tiny_segformer()
    layers = spectralize(model, SEGFORMER_ROLES)
    block = model.backbone.layers[1][1][0]
    by_name = {layer.name: layer for layer in layers}
    prefix = 'backbone.layers.1.1.0.'
    inputs = {}
    block.ffn.layers[0].register_forward_pre_hook(lambda m, a: inputs.__setitem__('fc1', a[0]))
    block.ffn.layers[4].register_forward_pre_hook(lambda m, a: inputs.__setitem__('fc2', a[0]))
    block.attn.attn.register_forward_pre_hook(
        lambda m, a, k: inputs.update(query=k['query'], key=k['key']), with_kwargs=True)
    # A trained out_proj has a bias (PyTorch initialises it to zero): the attention-output recording must
    # subtract it before mapping the output back to expert coordinates.
    with torch.no_grad():
        block.attn.attn.out_proj.bias.normal_()
    assert block.attn.attn.out_proj.bias.abs().min() > 0
    record_expert_activations(layers)
    segformer_logits(model, torch.randn(2, 3, 64, 64))

    def expected(layer_name: str, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(tokens, dim=-1) @ by_name[prefix + layer_name].weight.Vh.T

    def channels_last(x: torch.Tensor) -> torch.Tensor:
        return x.movedim(1, -1).reshape(-1, x.shape[1])

    acts = {name[len(prefix):]: layer.expert_activations for name, layer in by_name.items()
            if name.startswith(prefix)}
    torch.testing.assert_close(acts['ffn.layers.0'], expected('ffn.layers.0', channels_last(inputs['fc1'])))
    torch.testing.assert_close(acts['ffn.layers.4'], expected('ffn.layers.4', channels_last(inputs['fc2'])))
    query = inputs['query'].reshape(-1, inputs['query'].shape[-1])
    torch.testing.assert_close(acts['attn.attn.in_proj_weight'], expected('attn.attn.in_proj_weight', query))

    # out_proj's input is internal to the attention: recompute it with an identity output projection.
    probe = copy.deepcopy(block.attn.attn)
    out_layer = by_name[prefix + 'attn.attn.out_proj']
    with torch.no_grad():
        probe.out_proj.parametrizations.weight[0].U.copy_(torch.eye(probe.embed_dim))
        probe.out_proj.parametrizations.weight[0].Vh.copy_(torch.eye(probe.embed_dim))
        probe.out_proj.parametrizations.weight[0].singular_values.fill_(1.0)
        probe.out_proj.bias.zero_()
        hidden = probe(query=inputs['query'], key=inputs['key'], value=inputs['key'])[0]
    hidden = hidden.reshape(-1, probe.embed_dim)
    torch.testing.assert_close(acts['attn.attn.out_proj'],
                               F.normalize(hidden, dim=-1) @ out_layer.weight.Vh.T, rtol=1e-4, atol=1e-4)


def test_recording_off_leaves_no_hooks() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    (layer,) = spectralize(model, '0')
    record_expert_activations([layer])
    assert len(model[0]._forward_pre_hooks) == 1
    record_expert_activations([layer], enabled=False)
    assert len(model[0]._forward_pre_hooks) == 0 and layer.expert_activations is None


def test_converted_model_deep_copies_while_recording() -> None:
    model = tiny_vit()
    layers = spectralize(model, VIT_ROLES)
    record_expert_activations(layers)
    x = torch.randn(1, 3, 32, 32)
    model(x)
    clone = copy.deepcopy(model)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x))


def test_pattern_matching_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"pattern 'blocks\.\*\.nothing' matches no module"):
        spectralize(tiny_vit(), ['blocks.*.attn.qkv', 'blocks.*.nothing'])


def test_unsupported_layer_is_an_error() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 8))
    with pytest.raises(TypeError, match=r'^0: nn.Conv2d\(kernel_size=\(3, 3\).* is not a linear map'):
        spectralize(model, '*')
    with pytest.raises(TypeError, match='1: ReLU is not a supported linear layer'):
        spectralize(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), ['0', '1'])


def test_edit_through_data_is_never_read_stale() -> None:
    """Issue 17 fix 6: EMA code writes ``s.data[:] = ...``, which bumps no version of ``s``; the cached
    weight of a frozen or no-grad read must still be the composition of the values now in ``s``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5))
    (layer,) = spectralize(model, '0')
    x = torch.randn(3, 6)
    s = layer.singular_values
    for frozen in (False, True):
        s.requires_grad_(not frozen)
        with torch.no_grad():
            model(x)  # composes and caches
            version = s._version
            s.data[:] = s.data * torch.linspace(0.5, 1.5, s.numel())
            assert s._version == version  # the edit is invisible to the version counter
            expected = F.linear(x, layer.weight.compose(), model[0].bias)
            torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
            torch.testing.assert_close(model[0].weight, layer.weight.compose(), rtol=0, atol=0)
        if frozen:  # a frozen s is read through the cache with gradients on as well
            s.data.mul_(2.0)
            torch.testing.assert_close(model(x), F.linear(x, layer.weight.compose(), model[0].bias),
                                       rtol=0, atol=0)


def test_exclude_patterns_leave_their_layers_dense() -> None:
    model = tiny_vit()
    layers = spectralize(model, VIT_ROLES, exclude=['blocks.1.*', 'blocks.*.mlp.fc2'])
    names = [layer.name for layer in layers]
    assert names == ['blocks.0.attn.qkv', 'blocks.0.attn.proj', 'blocks.0.mlp.fc1',
                     'blocks.2.attn.qkv', 'blocks.2.attn.proj', 'blocks.2.mlp.fc1']
    assert isinstance(model.blocks[1].attn.qkv.weight, nn.Parameter)  # untouched
    assert isinstance(model.blocks[0].mlp.fc2.weight, nn.Parameter)
    with pytest.raises(ValueError, match=r"pattern 'blocks\.9\.\*' matches no module"):
        spectralize(tiny_vit(), VIT_ROLES, exclude='blocks.9.*')


def test_empty_include_is_an_error() -> None:
    for include in ([], None):
        with pytest.raises(ValueError, match='no include pattern given'):
            spectralize(tiny_vit(), include)


def test_attention_with_separate_qkv_weights_is_refused() -> None:
    model = nn.Sequential(nn.MultiheadAttention(8, 2, kdim=4, vdim=4))
    with pytest.raises(TypeError, match=r'^0: nn.MultiheadAttention with separate q/k/v weights is not '
                                        r'supported'):
        spectralize(model, '0')


def test_inference_reads_skip_the_parametrisation_modules() -> None:
    """Issue 21 item 2: a read autograd need not see returns the cached weight without calling
    ``parametrize``'s modules (their call per read was the spectral model's overhead); a read with
    gradients on a trainable ``s`` still goes through them and carries the graph. A deep copy, which shares
    the converted class and so its getter, reads its own singular values."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    layers = spectralize(model, ['0', '2'])
    x = torch.randn(3, 6)
    calls = []
    for layer in layers:
        chain = layer.module.parametrizations[layer.tensor_name]
        for module in (chain, chain[0]):
            module.register_forward_pre_hook(lambda *args: calls.append(1))
    dense = [layer.weight.compose().detach() for layer in layers]
    with torch.no_grad():
        out = model(x)
    assert calls == []
    torch.testing.assert_close(out, F.linear(F.relu(F.linear(x, dense[0], model[0].bias)), dense[1],
                                             model[2].bias), rtol=0, atol=0)
    model(x).sum().backward()
    assert len(calls) == 4 and all(layer.singular_values.grad is not None for layer in layers)
    clone = copy.deepcopy(model)
    clone_layer = clone[0].parametrizations.weight[0]
    with torch.no_grad():
        clone_layer.singular_values.mul_(2.0)
        torch.testing.assert_close(clone[0].weight, 2 * dense[0])
        torch.testing.assert_close(model[0].weight, dense[0], rtol=0, atol=0)
