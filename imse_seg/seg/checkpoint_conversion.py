"""Convert published SegFormer checkpoints (NVlabs / mmseg 0.x ``.pth``, Hugging Face directories) to mmseg 1.x.

The Cityscapes-to-ACDC source model exists as NVlabs' mmseg-0.x file and as a Hugging Face model; neither
loads into mmseg 1.x's ``MixVisionTransformer`` + :class:`~imse_seg.seg.models.SegFormerMLPHead`. The key
correspondence is the table :data:`KEY_TABLE` (one row per module, one column per naming); the only tensor
changes are the query/key/value fusion into ``nn.MultiheadAttention``'s ``in_proj`` ([q; k; v] on dim 0,
NVlabs' ``kv`` rows being [k; v]) and the Mix-FFN linears becoming 1x1 convs. The conversion refuses,
with :class:`ConversionError`, anything it cannot convert exactly: an unknown format, missing or unexpected
keys, a classifier whose class count is not the source config's.

Untrusted files are read without running code: ``config.json`` as JSON, ``model.safetensors`` with
safetensors, and every pickle-based file (``.pth``, ``pytorch_model.bin``) with
``torch.load(weights_only=True)``. A pickle that needs more than tensors and plain containers is refused,
never unpickled with code execution. The written checkpoint holds only tensors and plain Python types, so
mmengine's ``load_checkpoint`` (which calls ``torch.load`` with torch's ``weights_only`` default) reads it.
"""
from __future__ import annotations

import json
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
import torch
from mmseg.utils.class_names import dataset_aliases, get_classes, get_palette
from torch import Tensor

SourceFormat = Literal['nvlabs', 'hf']
FORMATS: tuple[str, ...] = ('nvlabs', 'hf')
NAMINGS: tuple[str, ...] = ('nvlabs', 'hf_saved', 'hf_memory')

_AFFINE = ('weight', 'bias')
_BATCH_NORM = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')
_HF_WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')
_HF_ARCHITECTURE_FIELDS = ('depths', 'sr_ratios', 'hidden_sizes', 'num_attention_heads', 'mlp_ratios')
_QKV_ORDER = {'q': 0, 'kv': 1, 'k': 1, 'v': 2}


class ConversionError(ValueError):
    """A source checkpoint that cannot be converted exactly; the message says why."""


@dataclass(frozen=True)
class KeyRow:
    """One module in every naming: templates with ``{S}`` (1-based stage), ``{i}`` (0-based stage),
    ``{j}`` (block) and ``{p}`` (parameter name, one of ``params``); ``None`` where a naming lacks it.

    ``mmseg`` ``None`` marks a known key that is dropped. ``qkv`` names the slice of the fused attention
    input projection the tensor fills; ``to_conv1x1`` reshapes a linear weight [out, in] to [out, in, 1, 1];
    ``sr_only`` rows exist only in stages with spatial reduction; ``required`` is False for dropped keys.
    """
    nvlabs: str | None
    hf_saved: str | None
    hf_memory: str | None
    mmseg: str | None
    params: tuple[str, ...] = _AFFINE
    qkv: str | None = None
    to_conv1x1: bool = False
    sr_only: bool = False

    @property
    def required(self) -> bool:
        return self.mmseg is not None


_NV_BLOCK = 'backbone.block{S}.{j}.'
_HF_BLOCK = 'segformer.encoder.block.{i}.{j}.'
_HF5_BLOCK = 'segformer.stages.{i}.blocks.{j}.'
_MM_BLOCK = 'backbone.layers.{i}.1.{j}.'

KEY_TABLE: tuple[KeyRow, ...] = (
    KeyRow('backbone.patch_embed{S}.proj.{p}', 'segformer.encoder.patch_embeddings.{i}.proj.{p}',
           'segformer.stages.{i}.patch_embeddings.proj.{p}', 'backbone.layers.{i}.0.projection.{p}'),
    KeyRow('backbone.patch_embed{S}.norm.{p}', 'segformer.encoder.patch_embeddings.{i}.layer_norm.{p}',
           'segformer.stages.{i}.patch_embeddings.layer_norm.{p}', 'backbone.layers.{i}.0.norm.{p}'),
    KeyRow(_NV_BLOCK + 'norm1.{p}', _HF_BLOCK + 'layer_norm_1.{p}', _HF5_BLOCK + 'layernorm_before.{p}',
           _MM_BLOCK + 'norm1.{p}'),
    KeyRow(_NV_BLOCK + 'attn.q.{p}', _HF_BLOCK + 'attention.self.query.{p}',
           _HF5_BLOCK + 'attention.q_proj.{p}', _MM_BLOCK + 'attn.attn.in_proj_{p}', qkv='q'),
    KeyRow(_NV_BLOCK + 'attn.kv.{p}', None, None, _MM_BLOCK + 'attn.attn.in_proj_{p}', qkv='kv'),
    KeyRow(None, _HF_BLOCK + 'attention.self.key.{p}', _HF5_BLOCK + 'attention.k_proj.{p}',
           _MM_BLOCK + 'attn.attn.in_proj_{p}', qkv='k'),
    KeyRow(None, _HF_BLOCK + 'attention.self.value.{p}', _HF5_BLOCK + 'attention.v_proj.{p}',
           _MM_BLOCK + 'attn.attn.in_proj_{p}', qkv='v'),
    KeyRow(_NV_BLOCK + 'attn.proj.{p}', _HF_BLOCK + 'attention.output.dense.{p}',
           _HF5_BLOCK + 'attention.o_proj.{p}', _MM_BLOCK + 'attn.attn.out_proj.{p}'),
    KeyRow(_NV_BLOCK + 'attn.sr.{p}', _HF_BLOCK + 'attention.self.sr.{p}',
           _HF5_BLOCK + 'attention.sequence_reduction.sequence_reduction.{p}', _MM_BLOCK + 'attn.sr.{p}',
           sr_only=True),
    KeyRow(_NV_BLOCK + 'attn.norm.{p}', _HF_BLOCK + 'attention.self.layer_norm.{p}',
           _HF5_BLOCK + 'attention.sequence_reduction.layer_norm.{p}', _MM_BLOCK + 'attn.norm.{p}',
           sr_only=True),
    KeyRow(_NV_BLOCK + 'norm2.{p}', _HF_BLOCK + 'layer_norm_2.{p}', _HF5_BLOCK + 'layernorm_after.{p}',
           _MM_BLOCK + 'norm2.{p}'),
    KeyRow(_NV_BLOCK + 'mlp.fc1.{p}', _HF_BLOCK + 'mlp.dense1.{p}', _HF5_BLOCK + 'mlp.fc1.{p}',
           _MM_BLOCK + 'ffn.layers.0.{p}', to_conv1x1=True),
    KeyRow(_NV_BLOCK + 'mlp.dwconv.dwconv.{p}', _HF_BLOCK + 'mlp.dwconv.dwconv.{p}',
           _HF5_BLOCK + 'mlp.dwconv.dwconv.{p}', _MM_BLOCK + 'ffn.layers.1.{p}'),
    KeyRow(_NV_BLOCK + 'mlp.fc2.{p}', _HF_BLOCK + 'mlp.dense2.{p}', _HF5_BLOCK + 'mlp.fc2.{p}',
           _MM_BLOCK + 'ffn.layers.4.{p}', to_conv1x1=True),
    KeyRow('backbone.norm{S}.{p}', 'segformer.encoder.layer_norm.{i}.{p}',
           'segformer.stages.{i}.layer_norm.{p}', 'backbone.layers.{i}.2.{p}'),
    KeyRow('decode_head.linear_c{S}.proj.{p}', 'decode_head.linear_c.{i}.proj.{p}',
           'decode_head.linear_projections.{i}.proj.{p}', 'decode_head.linear_projections.{i}.{p}'),
    KeyRow('decode_head.linear_fuse.conv.{p}', 'decode_head.linear_fuse.{p}', 'decode_head.linear_fuse.{p}',
           'decode_head.fusion_conv.conv.{p}', params=('weight',)),
    KeyRow('decode_head.linear_fuse.bn.{p}', 'decode_head.batch_norm.{p}', 'decode_head.batch_norm.{p}',
           'decode_head.fusion_conv.bn.{p}', params=_BATCH_NORM),
    KeyRow('decode_head.linear_pred.{p}', 'decode_head.classifier.{p}', 'decode_head.classifier.{p}',
           'decode_head.conv_seg.{p}'),
    KeyRow('decode_head.conv_seg.{p}', None, None, None),
)
"""The key correspondence (segformer-checkpoints.md, "Key mapping"). NVlabs' own ``decode_head.conv_seg``
(a 128-channel classifier its head never calls) is known and dropped."""

CLASSIFIER_KEY = 'decode_head.conv_seg.weight'


@dataclass(frozen=True)
class Architecture:
    """What the key set of a SegFormer depends on: blocks per stage and which stages reduce keys/values."""
    depths: tuple[int, ...]
    spatial_reduction: tuple[bool, ...]


@dataclass
class SourceCheckpoint:
    """A source checkpoint read into memory: its tensors, naming, class names, palette and, when its config
    states it, its architecture."""
    format: SourceFormat
    naming: str
    state_dict: dict[str, Tensor]
    classes: tuple[str, ...]
    palette: list[list[int]] | None
    architecture: Architecture | None = None
    origin: str = ''


def _template_regex(template: str, params: tuple[str, ...]) -> re.Pattern:
    groups = {'S': r'(?P<S>[1-9]\d*)', 'i': r'(?P<i>\d+)', 'j': r'(?P<j>\d+)',
              'p': '(?P<p>' + '|'.join(params) + ')'}
    parts = re.split(r'\{(S|i|j|p)\}', template)
    return re.compile(''.join(groups[part] if n % 2 else re.escape(part) for n, part in enumerate(parts)))


_RULES: dict[str, tuple[tuple[re.Pattern, KeyRow], ...]] = {
    naming: tuple((_template_regex(getattr(row, naming), row.params), row)
                  for row in KEY_TABLE if getattr(row, naming) is not None)
    for naming in NAMINGS}


def _match(key: str, naming: str) -> tuple[KeyRow, dict[str, int | str]] | None:
    for regex, row in _RULES[naming]:
        found = regex.fullmatch(key)
        if found is not None:
            groups: dict[str, int | str] = {'p': found['p']}
            if 'S' in regex.groupindex:
                groups['i'] = int(found['S']) - 1
            elif 'i' in regex.groupindex:
                groups['i'] = int(found['i'])
            if 'j' in regex.groupindex:
                groups['j'] = int(found['j'])
            return row, groups
    return None


def _fill(template: str, i: int = 0, j: int = 0, p: str = '') -> str:
    return template.format(S=i + 1, i=i, j=j, p=p)


def expected_keys(naming: str, architecture: Architecture) -> set[str]:
    """Every key a complete SegFormer segmentation checkpoint in ``naming`` has for ``architecture``."""
    keys = set()
    for row in KEY_TABLE:
        template = getattr(row, naming)
        if template is None or not row.required:
            continue
        if '{j}' in template:
            places = [(i, j) for i, depth in enumerate(architecture.depths) for j in range(depth)
                      if architecture.spatial_reduction[i] or not row.sr_only]
        elif '{i}' in template or '{S}' in template:
            places = [(i, 0) for i in range(len(architecture.depths))]
        else:
            places = [(0, 0)]
        keys.update(_fill(template, i, j, p) for i, j in places for p in row.params)
    return keys


def infer_architecture(state_dict: Mapping[str, Tensor], naming: str) -> Architecture:
    """The architecture a state dict's keys describe: stages and blocks seen, and stages holding
    spatial-reduction weights. Used where no config states it (NVlabs files)."""
    depths: dict[int, int] = {}
    reduction: set[int] = set()
    for key in state_dict:
        matched = _match(key, naming)
        if matched is None or 'i' not in matched[1]:
            continue
        row, groups = matched
        stage = int(groups['i'])
        depths[stage] = max(depths.get(stage, 1), int(groups.get('j', 0)) + 1)
        if row.sr_only:
            reduction.add(stage)
    stages = range(max(depths) + 1) if depths else range(0)
    return Architecture(tuple(depths.get(i, 1) for i in stages), tuple(i in reduction for i in stages))


def _listing(title: str, keys: list[str]) -> str:
    return f'{title} ({len(keys)}):\n' + '\n'.join(f'  {key}' for key in keys)


def convert_state_dict(state_dict: Mapping[str, Tensor], naming: str,
                       architecture: Architecture | None = None) -> OrderedDict[str, Tensor]:
    """Rename and reshape a SegFormer state dict in ``naming`` into mmseg 1.x keys.

    The key set must be exactly that of ``architecture`` (inferred from the keys when ``None``); otherwise
    :class:`ConversionError` lists the missing and the unexpected keys. Query/key/value tensors of a block are
    concatenated [q; k; v] into ``in_proj_weight``/``in_proj_bias``; Mix-FFN linear weights become 1x1 convs.
    """
    if naming not in NAMINGS:
        raise ConversionError(f'unknown naming {naming!r}; expected one of {", ".join(NAMINGS)}')
    architecture = architecture or infer_architecture(state_dict, naming)
    unexpected = sorted(key for key in state_dict if _match(key, naming) is None)
    missing = sorted(expected_keys(naming, architecture) - set(state_dict))
    if missing or unexpected:
        parts = [f'the checkpoint is not a complete SegFormer segmentation model in {naming} naming '
                 f'(stages {len(architecture.depths)}, blocks {list(architecture.depths)})']
        if missing:
            parts.append(_listing('missing keys', missing))
        if unexpected:
            parts.append(_listing('unexpected keys', unexpected))
        raise ConversionError('\n'.join(parts))

    converted: OrderedDict[str, Tensor] = OrderedDict()
    fused: dict[str, list[tuple[int, Tensor]]] = {}
    for key, tensor in state_dict.items():
        row, groups = _match(key, naming)
        if row.mmseg is None:
            continue
        target = _fill(row.mmseg, int(groups.get('i', 0)), int(groups.get('j', 0)), str(groups['p']))
        if row.qkv is not None:
            fused.setdefault(target, []).append((_QKV_ORDER[row.qkv], tensor))
            converted.setdefault(target, tensor)  # holds the key's place until the pieces are joined
        elif row.to_conv1x1 and groups['p'] == 'weight':
            converted[target] = tensor.reshape(*tensor.shape, 1, 1)
        else:
            converted[target] = tensor
    for target, pieces in fused.items():
        converted[target] = torch.cat([tensor for _, tensor in sorted(pieces, key=lambda piece: piece[0])])
    return converted


def _load_pickle(path: Path) -> Any:
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise ConversionError(
            f'{path} could not be read with torch.load(weights_only=True): {error}\n'
            'Only tensors and plain Python containers are accepted from an untrusted file; a pickle that '
            'needs other Python objects could run code when loaded, so it is refused, not unpickled. If you '
            'trust the file, load it yourself and re-save its state_dict (and meta) as plain tensors and '
            'types.') from error


def _checked_classes(classes: Any, origin: str) -> tuple[str, ...]:
    if not isinstance(classes, (list, tuple)) or not all(isinstance(name, str) for name in classes):
        raise ConversionError(f'{origin}: the class names must be a list of strings, got {classes!r}')
    return tuple(classes)


def _checked_palette(palette: Any, origin: str) -> list[list[int]]:
    try:
        colours = [[int(channel) for channel in colour] for colour in palette]
    except (TypeError, ValueError) as error:
        raise ConversionError(f'{origin}: the palette must be a list of RGB triples, '
                              f'got {palette!r}') from error
    if any(len(colour) != 3 for colour in colours):
        raise ConversionError(f'{origin}: the palette must be a list of RGB triples, got {palette!r}')
    return colours


def _describe_unknown(state_dict: Mapping[str, Any]) -> str:
    keys = sorted(map(str, state_dict))
    if any(key.startswith('backbone.layers.') for key in keys):
        hint = 'its keys are already mmseg 1.x names (backbone.layers.*): it needs no conversion'
    elif any(key.startswith('segformer.') for key in keys):
        hint = 'it is a Hugging Face state dict: pass its model directory (with config.json) instead'
    elif any(key.startswith('patch_embed1.') for key in keys):
        hint = ('it looks like an ImageNet MiT backbone without a decode head; mmseg\'s '
                'tools/model_converters/mit2mmseg.py converts those')
    else:
        hint = 'its keys are none of the known SegFormer namings'
    return f'{hint}; first keys: {", ".join(keys[:5]) or "(none)"}'


def read_nvlabs(path: Path) -> SourceCheckpoint:
    """Read an NVlabs / mmseg-0.x SegFormer ``.pth``: ``state_dict`` plus ``meta`` CLASSES and PALETTE."""
    if not path.is_file():
        raise ConversionError(f'unknown format: the nvlabs format is a .pth file; {path} is a directory')
    checkpoint = _load_pickle(path)
    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f'unknown format: {path} holds a {type(checkpoint).__name__}, '
                              'not a checkpoint dict')
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state_dict, Mapping) or not any(
            isinstance(key, str) and key.startswith('backbone.patch_embed') for key in state_dict):
        described = _describe_unknown(state_dict) if isinstance(state_dict, Mapping) else 'no state_dict'
        raise ConversionError(f'unknown format: {path} is not an NVlabs / mmseg-0.x SegFormer checkpoint '
                              f'({described})')
    meta = checkpoint.get('meta') or {}
    if 'CLASSES' not in meta:
        raise ConversionError(f'{path}: meta has no CLASSES, so the class names (and their count) are unknown')
    classes = _checked_classes(meta['CLASSES'], str(path))
    palette = _checked_palette(meta['PALETTE'], str(path)) if meta.get('PALETTE') is not None else None
    return SourceCheckpoint('nvlabs', 'nvlabs', dict(state_dict), classes, palette, origin=path.name)


def _hf_architecture(config: Mapping[str, Any], origin: str) -> Architecture:
    absent = [name for name in _HF_ARCHITECTURE_FIELDS if name not in config]
    if absent:
        raise ConversionError(f'{origin}: config.json lacks {", ".join(absent)}')
    widths, heads, ratios = config['hidden_sizes'], config['num_attention_heads'], config['mlp_ratios']
    head_width = widths[0] // heads[0]
    if any(width != head_width * count for width, count in zip(widths, heads)) or len(set(ratios)) != 1 \
            or config.get('hidden_act', 'gelu') != 'gelu':
        raise ConversionError(
            f'{origin}: mmseg\'s MixVisionTransformer cannot express this model: it needs hidden_sizes = one '
            f'head width x num_attention_heads, one mlp ratio and GELU; got hidden_sizes {widths}, '
            f'num_attention_heads {heads}, mlp_ratios {ratios}, hidden_act {config.get("hidden_act")!r}')
    depths = tuple(int(depth) for depth in config['depths'])
    return Architecture(depths, tuple(int(ratio) > 1 for ratio in config['sr_ratios']))


def _hf_classes(config: Mapping[str, Any], origin: str) -> tuple[str, ...]:
    id2label = config.get('id2label') or {}
    try:
        labels = {int(index): name for index, name in id2label.items()}
    except ValueError as error:
        raise ConversionError(f'{origin}: id2label keys must be class indices, got {list(id2label)}') from error
    if sorted(labels) != list(range(len(labels))):
        raise ConversionError(f'{origin}: id2label must number the classes 0..N-1, got {sorted(labels)}')
    return _checked_classes([labels[index] for index in range(len(labels))], origin)


def _read_hf_weights(directory: Path) -> dict[str, Tensor]:
    safetensors_file, pickle_file = (directory / name for name in _HF_WEIGHT_FILES)
    if safetensors_file.is_file():
        try:
            from safetensors import SafetensorError
            from safetensors.torch import load_file
        except ImportError as error:
            raise ConversionError(f'{safetensors_file} needs the safetensors package: '
                                  'pip install safetensors') from error
        try:
            return load_file(safetensors_file, device='cpu')
        except SafetensorError as error:
            raise ConversionError(f'{safetensors_file} is not a readable safetensors file: {error}') from error
    if pickle_file.is_file():
        weights = _load_pickle(pickle_file)
        if not isinstance(weights, Mapping):
            raise ConversionError(f'{pickle_file} holds a {type(weights).__name__}, not a state dict')
        return dict(weights)
    sharded = ' (sharded checkpoints are not supported)' if any(directory.glob('*.index.json')) else ''
    raise ConversionError(f'unknown format: {directory} has config.json but neither '
                          f'{" nor ".join(_HF_WEIGHT_FILES)}{sharded}')


def read_hf(directory: Path) -> SourceCheckpoint:
    """Read a Hugging Face ``SegformerForSemanticSegmentation`` directory (``config.json`` + weights), in the
    saved (legacy) key names or transformers >= 5's in-memory names."""
    config_file = directory / 'config.json'
    if not config_file.is_file():
        raise ConversionError(f'unknown format: the hf format is a model directory with config.json; '
                              f'{directory} has none')
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise ConversionError(f'{config_file} is not valid JSON: {error}') from error
    model_type = config.get('model_type') if isinstance(config, dict) else None
    if model_type != 'segformer':
        raise ConversionError(f'unknown format: {config_file} has model_type {model_type!r}, not \'segformer\'')
    origin = str(directory)
    state_dict = _read_hf_weights(directory)
    naming = 'hf_memory' if any(key.startswith(('segformer.stages.', 'decode_head.linear_projections.'))
                                for key in state_dict) else 'hf_saved'
    return SourceCheckpoint('hf', naming, state_dict, _hf_classes(config, origin), None,
                            architecture=_hf_architecture(config, origin), origin=directory.name)


def read_source(src: str | Path, source_format: str = 'auto') -> SourceCheckpoint:
    """Read ``src`` as ``source_format``: 'nvlabs', 'hf', or 'auto' (a directory is Hugging Face, a file
    NVlabs; each reader refuses what is not its format)."""
    path = Path(src)
    if not path.exists():
        raise ConversionError(f'{path} does not exist')
    if source_format == 'auto':
        source_format = 'hf' if path.is_dir() else 'nvlabs'
    if source_format == 'nvlabs':
        return read_nvlabs(path)
    if source_format == 'hf':
        return read_hf(path)
    raise ConversionError(f'unknown format {source_format!r}; expected auto, {", ".join(FORMATS)}')


def palette_for(classes: tuple[str, ...]) -> list[list[int]]:
    """mmseg's palette of the dataset with exactly these class names; otherwise mmseg's own fallback for a
    dataset without one (``BaseSegDataset``: ``np.random.seed(42)``, ``randint(0, 255)`` per class)."""
    for dataset in dataset_aliases:
        if tuple(get_classes(dataset)) == classes:
            return [list(map(int, colour)) for colour in get_palette(dataset)]
    return np.random.RandomState(42).randint(0, 255, size=(len(classes), 3)).tolist()


def build_checkpoint(source: SourceCheckpoint) -> dict[str, Any]:
    """The mmengine checkpoint of ``source``: converted ``state_dict`` and ``meta`` with ``dataset_meta``
    (classes, palette), checked for a classifier whose class count is the source config's."""
    state_dict = convert_state_dict(source.state_dict, source.naming, source.architecture)
    num_outputs = state_dict[CLASSIFIER_KEY].shape[0]
    config_name = 'meta CLASSES' if source.format == 'nvlabs' else 'config.json id2label'
    if num_outputs != len(source.classes):
        raise ConversionError(f'{source.origin}: the classifier predicts {num_outputs} classes but the '
                              f'{config_name} names {len(source.classes)}')
    palette = source.palette if source.palette is not None else palette_for(source.classes)
    if len(palette) != len(source.classes):
        raise ConversionError(f'{source.origin}: the palette has {len(palette)} colours for '
                              f'{len(source.classes)} classes')
    meta = {'dataset_meta': {'classes': source.classes, 'palette': palette},
            'converted_from': {'format': source.format, 'naming': source.naming, 'source': source.origin}}
    return {'state_dict': state_dict, 'meta': meta}


def convert_checkpoint(src: str | Path, dst: str | Path, source_format: str = 'auto') -> dict[str, Any]:
    """Convert ``src`` (NVlabs ``.pth`` or Hugging Face directory) and save it to ``dst`` for mmengine's
    ``load_checkpoint`` / ``load_from``; returns the saved checkpoint."""
    checkpoint = build_checkpoint(read_source(src, source_format))
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, dst)
    return checkpoint
