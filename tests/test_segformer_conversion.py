"""SegFormer checkpoint conversion against the reference implementation, Hugging Face transformers.

Random ``SegformerForSemanticSegmentation`` models are saved as Hugging Face directories (and, by this file's
own NVlabs-layout writer, as NVlabs / mmseg-0.x files), converted with ``tools/convert_checkpoint.py``, loaded
into mmseg 1.x models built from ``configs/_base_/models/segformer_mit-b5_{hf,nvlabs}.py`` and compared
logit by logit, in eval mode and with the fuse BN in train mode.
"""
from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import imse_seg.seg.models  # noqa: F401  (registers SegFormerMLPHead, MixVisionTransformerMixedNorm)
import transformers
from imse_seg.seg.checkpoint_conversion import ConversionError, convert_checkpoint, palette_for
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmseg.apis import init_model
from mmseg.registry import MODELS
from mmseg.utils import get_classes, get_palette
from safetensors.torch import load_file, save_file
from tool_module import load_tool

ROOT = Path(__file__).resolve().parents[1]
HF_CONFIG = ROOT / 'configs/_base_/models/segformer_mit-b5_hf.py'
NVLABS_CONFIG = ROOT / 'configs/_base_/models/segformer_mit-b5_nvlabs.py'
CITYSCAPES = tuple(get_classes('cityscapes'))

cli = load_tool('convert_checkpoint')


@dataclass(frozen=True)
class Setting:
    depths: list[int]
    heads: list[int]
    head_width: int
    sr_ratios: list[int]
    mlp_ratio: int
    decoder: int
    classes: tuple[str, ...]
    size: tuple[int, int]

    @property
    def widths(self) -> list[int]:
        return [self.head_width * heads for heads in self.heads]


TINY_A = Setting([1, 2, 1, 1], [1, 2, 5, 8], 8, [8, 4, 2, 1], 4, 16, ('a', 'b', 'c', 'd', 'e'), (64, 96))
TINY_B = Setting([2, 1, 3, 2], [1, 1, 2, 4], 16, [4, 2, 1, 1], 2, 24, CITYSCAPES, (90, 118))
B5 = Setting([3, 6, 40, 3], [1, 2, 5, 8], 64, [8, 4, 2, 1], 4, 768, CITYSCAPES, (64, 96))


def make_hf_model(setting: Setting, seed: int = 0):
    """A random HF SegFormer: initialised weights plus noise, so norms and biases are not 1 and 0."""
    torch.manual_seed(seed)
    config = transformers.SegformerConfig(
        depths=setting.depths, hidden_sizes=setting.widths, num_attention_heads=setting.heads,
        sr_ratios=setting.sr_ratios, mlp_ratios=[setting.mlp_ratio] * 4, decoder_hidden_size=setting.decoder,
        num_labels=len(setting.classes), id2label=dict(enumerate(setting.classes)))
    model = transformers.SegformerForSemanticSegmentation(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
        norm = model.decode_head.batch_norm
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
        norm.num_batches_tracked.fill_(7)
    return model


def build_model(config_file: Path, setting: Setting, checkpoint: Path | None = None):
    """The mmseg model of ``config_file`` with ``setting``'s sizes, loaded strictly from ``checkpoint``."""
    init_default_scope('mmseg')
    model_cfg = Config.fromfile(config_file).model
    model_cfg.backbone.update(embed_dims=setting.head_width, num_layers=setting.depths, num_heads=setting.heads,
                              sr_ratios=setting.sr_ratios, mlp_ratio=setting.mlp_ratio)
    model_cfg.decode_head.update(in_channels=setting.widths, channels=setting.decoder,
                                 num_classes=len(setting.classes))
    model = MODELS.build(model_cfg)
    if checkpoint is not None:
        load_checkpoint(model, str(checkpoint), map_location='cpu', strict=True)
    return model.eval()


def run_cli(*args: object) -> int:
    return cli.main([str(arg) for arg in args])


def mm_logits(model, x: torch.Tensor) -> torch.Tensor:
    return model.decode_head(model.extract_feat(x))


def fuse_bn_train(hf_model, mm_model) -> None:
    hf_model.eval()
    mm_model.eval()
    hf_model.decode_head.batch_norm.train()
    mm_model.decode_head.fusion_conv.bn.train()


def compare_with_transformers(hf_model, mm_model, setting: Setting) -> dict[str, float]:
    """Max abs logit differences: float64 and float32 in eval mode, float64 with the fuse BN in train mode
    (logits and the BN's updated running statistics). Asserts the tolerances of the issue."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, *setting.size, dtype=torch.float64)
    diffs = {}
    with torch.no_grad():
        for dtype in (torch.float64, torch.float32):
            hf_model.to(dtype)
            mm_model.to(dtype)
            reference = hf_model(pixel_values=x.to(dtype)).logits
            ours = mm_logits(mm_model, x.to(dtype))
            assert ours.shape == reference.shape
            diffs[str(dtype)] = (ours - reference).abs().max().item()
            diffs[f'{dtype} scale'] = reference.abs().max().item()
        assert diffs['torch.float64'] <= 1e-9, diffs
        assert diffs['torch.float32'] <= 1e-4 * diffs['torch.float32 scale'], diffs

        hf_model.double()
        mm_model.double()
        fuse_bn_train(hf_model, mm_model)
        reference = hf_model(pixel_values=x).logits
        ours = mm_logits(mm_model, x)
        hf_bn, mm_bn = hf_model.decode_head.batch_norm, mm_model.decode_head.fusion_conv.bn
        diffs['bn train'] = (ours - reference).abs().max().item()
        assert diffs['bn train'] <= 1e-9, diffs
        torch.testing.assert_close(mm_bn.running_mean, hf_bn.running_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(mm_bn.running_var, hf_bn.running_var, rtol=1e-12, atol=1e-12)
        assert int(mm_bn.num_batches_tracked) == int(hf_bn.num_batches_tracked) == 8
        hf_model.eval()
        mm_model.eval()
    return diffs


def saved_hf_state(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / 'hf/model.safetensors')


def nvlabs_state_dict(hf_state: dict[str, torch.Tensor], setting: Setting) -> dict[str, torch.Tensor]:
    """``hf_state`` (saved Hugging Face names) in NVlabs' module names, written from NVlabs' sources
    (mix_transformer.py, segformer_head.py) rather than from the converter's table: q and kv linears (kv rows
    [k; v]), 1-based stages, ConvModule fuse, linear_pred, and the unused 128-channel conv_seg that NVlabs'
    BaseDecodeHead builds."""
    hf = {key[len('segformer.encoder.'):] if key.startswith('segformer.') else key: value
          for key, value in hf_state.items()}
    out = {}
    for i, depth in enumerate(setting.depths):
        s = i + 1
        for p in ('weight', 'bias'):
            out[f'backbone.patch_embed{s}.proj.{p}'] = hf[f'patch_embeddings.{i}.proj.{p}']
            out[f'backbone.patch_embed{s}.norm.{p}'] = hf[f'patch_embeddings.{i}.layer_norm.{p}']
            out[f'backbone.norm{s}.{p}'] = hf[f'layer_norm.{i}.{p}']
            out[f'decode_head.linear_c{s}.proj.{p}'] = hf[f'decode_head.linear_c.{i}.proj.{p}']
            for j in range(depth):
                nv, block = f'backbone.block{s}.{j}.', f'block.{i}.{j}.'
                out[nv + f'attn.q.{p}'] = hf[block + f'attention.self.query.{p}']
                out[nv + f'attn.kv.{p}'] = torch.cat([hf[block + f'attention.self.key.{p}'],
                                                      hf[block + f'attention.self.value.{p}']])
                for nv_name, hf_name in (('norm1', 'layer_norm_1'), ('norm2', 'layer_norm_2'),
                                         ('attn.proj', 'attention.output.dense'), ('mlp.fc1', 'mlp.dense1'),
                                         ('mlp.dwconv.dwconv', 'mlp.dwconv.dwconv'), ('mlp.fc2', 'mlp.dense2')):
                    out[nv + f'{nv_name}.{p}'] = hf[block + f'{hf_name}.{p}']
                if setting.sr_ratios[i] > 1:
                    out[nv + f'attn.sr.{p}'] = hf[block + f'attention.self.sr.{p}']
                    out[nv + f'attn.norm.{p}'] = hf[block + f'attention.self.layer_norm.{p}']
    for p in ('weight', 'bias'):
        out[f'decode_head.linear_pred.{p}'] = hf[f'decode_head.classifier.{p}']
    out['decode_head.linear_fuse.conv.weight'] = hf['decode_head.linear_fuse.weight']
    for p in ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'):
        out[f'decode_head.linear_fuse.bn.{p}'] = hf[f'decode_head.batch_norm.{p}']
    out['decode_head.conv_seg.weight'] = torch.randn(len(setting.classes), 128, 1, 1)
    out['decode_head.conv_seg.bias'] = torch.randn(len(setting.classes))
    return out


def write_nvlabs(path: Path, state_dict: dict[str, torch.Tensor], classes, palette) -> Path:
    meta = {'CLASSES': tuple(classes), 'PALETTE': palette, 'mmseg_version': '0.11.0+abc1234',
            'config': "model = dict(type='EncoderDecoder')", 'iter': 160000, 'epoch': 1}
    torch.save({'state_dict': state_dict, 'meta': meta}, path)
    return path


@pytest.fixture(scope='module')
def tiny_a(tmp_path_factory):
    """TINY_A as a Hugging Face directory (save_pretrained) and its conversion."""
    directory = tmp_path_factory.mktemp('tiny_a')
    model = make_hf_model(TINY_A)
    model.save_pretrained(directory / 'hf')
    assert run_cli(directory / 'hf', directory / 'converted.pth') == 0
    return model, directory


@pytest.mark.parametrize('setting', [TINY_A, TINY_B], ids=['tiny_a', 'tiny_b'])
def test_hf_directory_matches_transformers(setting, tmp_path):
    hf_model = make_hf_model(setting)
    hf_model.save_pretrained(tmp_path / 'hf')
    assert run_cli(tmp_path / 'hf', tmp_path / 'out.pth') == 0
    mm_model = build_model(HF_CONFIG, setting, tmp_path / 'out.pth')
    print(setting.depths, compare_with_transformers(hf_model, mm_model, setting))


def test_b5_shape_matches_transformers_and_loads_with_init_model(tmp_path):
    hf_model = make_hf_model(B5)
    hf_model.save_pretrained(tmp_path / 'hf')
    assert run_cli(tmp_path / 'hf', tmp_path / 'b5.pth') == 0
    mm_model = init_model(str(HF_CONFIG), str(tmp_path / 'b5.pth'), device='cpu')
    assert set(mm_model.state_dict()) == set(torch.load(tmp_path / 'b5.pth')['state_dict'])
    assert mm_model.dataset_meta == {'classes': CITYSCAPES, 'palette': get_palette('cityscapes')}
    print('B5', compare_with_transformers(hf_model, mm_model, B5))


def test_dst_is_plain_and_loads_with_weights_only(tiny_a):
    _, directory = tiny_a
    checkpoint = torch.load(directory / 'converted.pth', weights_only=True)
    assert set(checkpoint) == {'state_dict', 'meta'}
    assert checkpoint['meta']['dataset_meta'] == {'classes': TINY_A.classes,
                                                  'palette': palette_for(TINY_A.classes)}
    assert checkpoint['meta']['converted_from'] == {'format': 'hf', 'naming': 'hf_saved', 'source': 'hf'}
    assert all(isinstance(value, torch.Tensor) for value in checkpoint['state_dict'].values())
    model = build_model(HF_CONFIG, TINY_A)
    assert set(checkpoint['state_dict']) == set(model.state_dict())


def test_in_proj_matches_nn_multihead_attention_head_layout(tiny_a):
    """The fused [q; k; v] in_proj makes nn.MultiheadAttention compute HF's attention head by head."""
    hf_model, directory = tiny_a
    mm_model = build_model(HF_CONFIG, TINY_A, directory / 'converted.pth').double()
    hf_model.double()
    hf_attention = hf_model.segformer.stages[2].blocks[0].attention  # 5 heads, spatial reduction 2
    mm_attention = mm_model.backbone.layers[2][1][0].attn
    torch.manual_seed(2)
    tokens = torch.randn(2, 6 * 8, TINY_A.widths[2], dtype=torch.float64)
    with torch.no_grad():
        reference, _ = hf_attention(tokens, 6, 8)
        ours = mm_attention(tokens, (6, 8), identity=torch.zeros_like(tokens))
    assert (ours - reference).abs().max().item() <= 1e-12


def test_in_memory_names_and_pytorch_bin_convert_identically(tiny_a, tmp_path):
    """transformers >= 5's in-memory key names (safetensors) and pytorch_model.bin give the same file."""
    hf_model, directory = tiny_a
    expected = torch.load(directory / 'converted.pth')['state_dict']
    state = {key: value.float().contiguous() for key, value in hf_model.state_dict().items()}
    assert any(key.startswith('segformer.stages.0.blocks.0.attention.q_proj') for key in state)
    for name, write in (('model.safetensors', save_file), ('pytorch_model.bin', torch.save)):
        source = tmp_path / name.split('.')[0]
        source.mkdir()
        (source / 'config.json').write_text((directory / 'hf/config.json').read_text())
        write(state, str(source / name))
        assert run_cli(source, tmp_path / f'{name}.pth', '--format', 'hf') == 0
        converted = torch.load(tmp_path / f'{name}.pth')
        assert converted['meta']['converted_from']['naming'] == 'hf_memory'
        assert set(converted['state_dict']) == set(expected)
        assert all(torch.equal(converted['state_dict'][key], expected[key]) for key in expected)


def test_nvlabs_checkpoint_converts_bit_identically_and_matches_nvlabs_eps(tiny_a, tmp_path):
    hf_model, directory = tiny_a
    palette = [[10 * n, 20, 30] for n in range(len(TINY_A.classes))]
    state = nvlabs_state_dict(saved_hf_state(directory), TINY_A)
    source = write_nvlabs(tmp_path / 'segformer.city.pth', state, TINY_A.classes, palette)
    assert run_cli(source, tmp_path / 'nv.pth') == 0
    converted = torch.load(tmp_path / 'nv.pth', weights_only=True)
    expected = torch.load(directory / 'converted.pth')['state_dict']
    assert set(converted['state_dict']) == set(expected)
    for key, tensor in expected.items():
        ours = converted['state_dict'][key]
        assert ours.dtype == tensor.dtype and torch.equal(ours, tensor), key
    assert converted['meta']['dataset_meta'] == {'classes': TINY_A.classes, 'palette': palette}

    nvlabs_model = build_model(NVLABS_CONFIG, TINY_A, tmp_path / 'nv.pth')
    x = torch.randn(1, 3, *TINY_A.size, dtype=torch.float64)
    block_and_stage_norms = [module for name, module in hf_model.named_modules()
                             if name.endswith(('layernorm_before', 'layernorm_after'))
                             or re.fullmatch(r'segformer\.stages\.\d\.layer_norm', name)]
    assert len(block_and_stage_norms) == 2 * sum(TINY_A.depths) + 4
    with torch.no_grad():
        hf_model.double()
        nvlabs_model.double()
        hf_eps = hf_model(pixel_values=x).logits
        for norm in block_and_stage_norms:
            norm.eps = 1e-6  # NVlabs' Block and stage norm_layer=partial(nn.LayerNorm, eps=1e-6)
        nvlabs_reference = hf_model(pixel_values=x).logits
        for norm in block_and_stage_norms:
            norm.eps = 1e-5
        ours = mm_logits(nvlabs_model, x)
    print('nvlabs eps', (ours - nvlabs_reference).abs().max().item(), 'vs hf eps',
          (ours - hf_eps).abs().max().item())
    assert (ours - nvlabs_reference).abs().max().item() <= 1e-9
    assert (ours - hf_eps).abs().max().item() > 1e-7  # the eps matters: the wrong config is measurably off


def test_nvlabs_config_layer_norm_eps():
    """NVlabs: 1e-5 in the patch-embedding and spatial-reduction norms, 1e-6 in block and stage norms."""
    model = build_model(NVLABS_CONFIG, TINY_A)
    eps = {name: module.eps for name, module in model.backbone.named_modules()
           if isinstance(module, torch.nn.LayerNorm)}
    expected = {}
    for i, depth in enumerate(TINY_A.depths):
        expected.update({f'layers.{i}.0.norm': 1e-5, f'layers.{i}.2': 1e-6})
        for j in range(depth):
            expected.update({f'layers.{i}.1.{j}.norm1': 1e-6, f'layers.{i}.1.{j}.norm2': 1e-6})
            if TINY_A.sr_ratios[i] > 1:
                expected[f'layers.{i}.1.{j}.attn.norm'] = 1e-5
    assert eps == expected
    hf_eps = {module.eps for module in build_model(HF_CONFIG, TINY_A).modules()
              if isinstance(module, torch.nn.LayerNorm)}
    assert hf_eps == {1e-5}


# Refusals: each through the CLI, exit status 2, the reason on stderr, nothing written.

def refuse(capsys, tmp_path, src, *options, message):
    dst = tmp_path / 'refused.pth'
    assert run_cli(src, dst, *options) == 2
    err = capsys.readouterr().err
    assert err.startswith('convert_checkpoint: refused:') and message in err, err
    assert not dst.exists()
    return err


def copy_hf(directory: Path, target: Path, edit_state=None, edit_config=None) -> Path:
    target.mkdir()
    state = load_file(directory / 'hf/model.safetensors')
    config = json.loads((directory / 'hf/config.json').read_text())
    if edit_state:
        edit_state(state)
    if edit_config:
        edit_config(config)
    save_file(state, str(target / 'model.safetensors'))
    (target / 'config.json').write_text(json.dumps(config))
    return target


def test_refuses_unknown_formats(tiny_a, tmp_path, capsys):
    _, directory = tiny_a
    err = refuse(capsys, tmp_path, directory / 'converted.pth', message='unknown format')
    assert 'already mmseg 1.x names' in err
    torch.save([1, 2, 3], tmp_path / 'list.pth')
    refuse(capsys, tmp_path, tmp_path / 'list.pth', message='unknown format')
    (tmp_path / 'empty').mkdir()
    refuse(capsys, tmp_path, tmp_path / 'empty', message='unknown format: the hf format is a model directory')
    not_segformer = copy_hf(directory, tmp_path / 'vit', edit_config=lambda c: c.update(model_type='vit'))
    refuse(capsys, tmp_path, not_segformer, message="unknown format: ")
    refuse(capsys, tmp_path, directory / 'hf', '--format', 'nvlabs',
           message='unknown format: the nvlabs format is a .pth file')
    refuse(capsys, tmp_path, directory / 'converted.pth', '--format', 'hf',
           message='unknown format: the hf format is a model directory with config.json')
    (tmp_path / 'weightless').mkdir()
    (tmp_path / 'weightless/config.json').write_text((directory / 'hf/config.json').read_text())
    refuse(capsys, tmp_path, tmp_path / 'weightless', message='neither model.safetensors nor pytorch_model.bin')


def test_refuses_missing_and_unexpected_keys(tiny_a, tmp_path, capsys):
    _, directory = tiny_a

    def damage(state):
        del state['segformer.encoder.block.1.1.attention.self.value.bias']
        del state['decode_head.batch_norm.running_var']
        state['segformer.encoder.block.1.1.attention.self.extra.weight'] = torch.zeros(1)

    damaged = copy_hf(directory, tmp_path / 'damaged', damage)
    err = refuse(capsys, tmp_path, damaged, message='missing keys (2):')
    assert ('  decode_head.batch_norm.running_var\n  segformer.encoder.block.1.1.attention.self.value.bias'
            in err)
    assert 'unexpected keys (1):\n  segformer.encoder.block.1.1.attention.self.extra.weight' in err

    state = nvlabs_state_dict(saved_hf_state(directory), TINY_A)
    del state['backbone.block2.1.attn.kv.bias'], state['backbone.norm4.weight']
    state['backbone.block2.1.attn.qkv.weight'] = torch.zeros(1)
    source = write_nvlabs(tmp_path / 'nv.pth', state, TINY_A.classes, None)
    err = refuse(capsys, tmp_path, source, message='missing keys (2):\n  backbone.block2.1.attn.kv.bias\n'
                                                  '  backbone.norm4.weight')
    assert 'unexpected keys (1):\n  backbone.block2.1.attn.qkv.weight' in err


def test_refuses_class_count_not_the_configs(tiny_a, tmp_path, capsys):
    _, directory = tiny_a

    def drop_label(config):
        config['id2label'] = {str(n): name for n, name in enumerate(TINY_A.classes[:4])}
        config['label2id'] = {name: n for n, name in enumerate(TINY_A.classes[:4])}

    refuse(capsys, tmp_path, copy_hf(directory, tmp_path / 'four', edit_config=drop_label),
           message='the classifier predicts 5 classes but the config.json id2label names 4')
    state = nvlabs_state_dict(saved_hf_state(directory), TINY_A)
    source = write_nvlabs(tmp_path / 'nv.pth', state, CITYSCAPES, None)
    refuse(capsys, tmp_path, source, message='the classifier predicts 5 classes but the meta CLASSES names 19')
    torch.save({'state_dict': state, 'meta': {}}, tmp_path / 'nameless.pth')
    refuse(capsys, tmp_path, tmp_path / 'nameless.pth', message='meta has no CLASSES')


def test_refuses_models_mmseg_cannot_express(tiny_a, tmp_path, capsys):
    _, directory = tiny_a
    uneven = copy_hf(directory, tmp_path / 'uneven', edit_config=lambda c: c.update(mlp_ratios=[4, 4, 2, 4]))
    refuse(capsys, tmp_path, uneven, message="mmseg's MixVisionTransformer cannot express this model")


class _TouchOnUnpickle:
    """Pickles as a call to Path.touch: loading it with full unpickling would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_refuses_pickles_needing_code_and_runs_none_of_it(tiny_a, tmp_path, capsys):
    _, directory = tiny_a
    state = nvlabs_state_dict(saved_hf_state(directory), TINY_A)
    marker = tmp_path / 'code-ran'
    torch.save({'state_dict': state, 'meta': {'CLASSES': TINY_A.classes, 'hook': _TouchOnUnpickle(marker)}},
               tmp_path / 'hostile.pth')
    refuse(capsys, tmp_path, tmp_path / 'hostile.pth', message='torch.load(weights_only=True)')
    assert not marker.exists()
    torch.save(_TouchOnUnpickle(marker), tmp_path / 'hostile.bin')
    hf_dir = tmp_path / 'hostile_hf'
    hf_dir.mkdir()
    (hf_dir / 'config.json').write_text((directory / 'hf/config.json').read_text())
    (tmp_path / 'hostile.bin').rename(hf_dir / 'pytorch_model.bin')
    refuse(capsys, tmp_path, hf_dir, message='is refused, not unpickled')
    assert not marker.exists()
    torch.load(hf_dir / 'pytorch_model.bin', weights_only=False)  # the control: full unpickling runs it
    assert marker.exists()


def test_script_exit_status_and_message(tiny_a, tmp_path):
    _, directory = tiny_a
    result = subprocess.run([sys.executable, str(ROOT / 'tools/convert_checkpoint.py'),
                             str(directory / 'converted.pth'), str(tmp_path / 'out.pth')],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2, result
    assert 'refused: unknown format' in result.stderr


def test_convert_checkpoint_raises_conversion_error(tmp_path):
    with pytest.raises(ConversionError, match='does not exist'):
        convert_checkpoint(tmp_path / 'missing.pth', tmp_path / 'out.pth')


def test_cli_names_the_widths_and_depths_it_converted(tmp_path, capsys):
    directory = tmp_path / 'hf'
    make_hf_model(TINY_B).save_pretrained(directory)
    assert run_cli(directory, tmp_path / 'converted.pth') == 0
    out = capsys.readouterr().out
    assert 'segformer_mit-b5_hf.py (its LayerNorm eps) with the converted widths and depths' in out
    assert 'embed_dims=16, num_layers=[2, 1, 3, 2]' in out and 'channels=24, num_classes=19' in out
