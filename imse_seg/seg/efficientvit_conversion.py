"""Convert the authors' EfficientViT-Seg checkpoints (mit-han-lab/efficientvit) to this project's mmseg model.

The published file (e.g. ``efficientvit_seg_b0_cityscapes.pt``) holds ``{'state_dict': ...}`` with the
authors' module names (``backbone.input_stem.op_list.*``, ``backbone.stages.*.op_list.*``, ``head.*``).
:func:`rename_key` maps each name to :class:`~imse_seg.seg.models.EfficientViTBackbone` /
:class:`~imse_seg.seg.models.EfficientViTSegHead` names (no tensor changes: the layers are the same);
:func:`infer_architecture` reads the widths, depths and head sizes from the tensor shapes; the converted
state is then checked, strictly, against a model built with that architecture: any name the renaming does
not know, any missing, unexpected or mis-shaped tensor is refused with :class:`ConversionError` naming it.
The file is read with ``torch.load(weights_only=True)``: no pickled code runs.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from mmseg.utils.class_names import get_classes, get_palette
from torch import Tensor

from .checkpoint_conversion import ConversionError

CLASSIFIER_KEY = 'decode_head.conv_seg.weight'
CITYSCAPES_CLASSES = tuple(get_classes('cityscapes'))

# Ordered renaming rules: (pattern on the authors' name, replacement). The residual wrappers' ``main`` and
# the sequential containers' ``op_list`` disappear; block parts get the names of this project's modules.
_RULES: tuple[tuple[str, str], ...] = (
    (r'^backbone\.input_stem\.op_list\.', 'backbone.stem.'),
    (r'^backbone\.stages\.(\d+)\.op_list\.', r'backbone.stages.\1.'),
    (r'\.context_module\.main\.', '.attention.'),
    (r'\.local_module\.main\.', '.mbconv.'),
    (r'\.main\.', '.'),
    (r'\.inverted_conv\.', '.expand.'),
    (r'\.depth_conv\.', '.depthwise.'),
    (r'\.point_conv\.', '.project.'),
    (r'\.attention\.qkv\.conv\.', '.attention.qkv.'),
    (r'\.aggreg\.', '.aggregation.'),
    (r'^head\.input_ops\.(\d+)\.(op_list\.0\.)?', r'decode_head.lateral_convs.\1.'),
    (r'^head\.middle\.op_list\.', 'decode_head.middle.'),
    (r'\.norm\.', '.bn.'),
)
_OUTPUT = re.compile(r'^head\.output_ops\.0\.op_list\.(\d+)\.(conv|norm)\.(.+)$')
_KNOWN = re.compile(r'^(backbone\.(stem|stages)|decode_head\.(lateral_convs|middle|fuse|conv_seg))\.')


@dataclass(frozen=True)
class EfficientViTArchitecture:
    """The constructor arguments that tell B0-B3 (and a head) apart, read from a state dict."""
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    head_dim: int
    head_width: int
    head_depth: int
    final_expand: int | None
    num_classes: int

    def model_overrides(self) -> dict[str, Any]:
        """The ``model`` fields of ``configs/_base_/models/efficientvit-seg-b0_cityscapes.py`` to change."""
        widths = self.widths
        return dict(backbone=dict(widths=widths, depths=self.depths, head_dim=self.head_dim),
                    decode_head=dict(in_channels=(widths[4], widths[3], widths[2]), head_width=self.head_width,
                                     head_depth=self.head_depth, final_expand=self.final_expand,
                                     num_classes=self.num_classes))


B0_CITYSCAPES = EfficientViTArchitecture((8, 16, 32, 64, 128), (1, 2, 2, 2, 2), 16, 32, 1, 4, 19)
B0_CONFIG = 'configs/_base_/models/efficientvit-seg-b0_cityscapes.py'


def rename_key(key: str, classifier_index: int) -> str:
    """This project's name for the authors' tensor ``key`` (``classifier_index``: the position of the
    classifier in ``head.output_ops.0``, 1 with a final expansion conv, 0 without)."""
    output = _OUTPUT.match(key)
    if output:
        index, kind, leaf = int(output.group(1)), output.group(2), output.group(3)
        if index == classifier_index and kind == 'conv':
            return f'decode_head.conv_seg.{leaf}'
        if index == 0 and classifier_index == 1:
            return f'decode_head.fuse.{"conv" if kind == "conv" else "bn"}.{leaf}'
        raise ConversionError(f'unexpected tensor {key!r} in the head output')
    for pattern, replacement in _RULES:
        key = re.sub(pattern, replacement, key)
    return key


def _count(keys: set[str], pattern: str) -> int:
    regex = re.compile(pattern)
    indices = {int(m.group(1)) for key in keys if (m := regex.match(key))}
    return max(indices) + 1 if indices else 0


def infer_architecture(state_dict: Mapping[str, Tensor]) -> EfficientViTArchitecture:
    """Widths, depths and head sizes of a converted (this project's names) EfficientViT-Seg state dict."""
    keys = set(state_dict)
    try:
        stem = state_dict['backbone.stem.0.conv.weight'].shape[0]
        widths = [stem]
        depths = [_count(keys, r'^backbone\.stem\.(\d+)\.') - 1]
        for stage in range(4):
            blocks = _count(keys, rf'^backbone\.stages\.{stage}\.(\d+)\.')
            widths.append(state_dict[f'backbone.stages.{stage}.0.project.conv.weight'].shape[0])
            depths.append(blocks if stage < 2 else blocks - 1)
        head_dim = state_dict['backbone.stages.2.1.attention.aggregation.0.1.weight'].shape[1]
        head_width = state_dict['decode_head.lateral_convs.0.conv.weight'].shape[0]
        classifier = state_dict[CLASSIFIER_KEY]
    except KeyError as error:
        raise ConversionError(f'not an EfficientViT-Seg B-series state dict: no tensor {error.args[0]!r}') from None
    fuse = state_dict.get('decode_head.fuse.conv.weight')
    return EfficientViTArchitecture(
        tuple(widths), tuple(depths), head_dim, head_width, _count(keys, r'^decode_head\.middle\.(\d+)\.'),
        None if fuse is None else fuse.shape[0] // head_width, classifier.shape[0])


def build_model(architecture: EfficientViTArchitecture) -> torch.nn.Module:
    """The project's backbone and head with ``architecture``, as one module (for the strict check)."""
    from .models import EfficientViTBackbone, EfficientViTSegHead

    overrides = architecture.model_overrides()
    model = torch.nn.Module()
    model.backbone = EfficientViTBackbone(**overrides['backbone'])
    model.decode_head = EfficientViTSegHead(in_index=(2, 1, 0), input_strides=(32, 16, 8),
                                            **overrides['decode_head'])
    return model


def convert_state_dict(state_dict: Mapping[str, Tensor]) -> tuple[OrderedDict[str, Tensor], EfficientViTArchitecture]:
    """Rename every tensor, infer the architecture and check the result strictly against that model."""
    outputs = [int(m.group(1)) for key in state_dict if (m := _OUTPUT.match(key))]
    if not outputs:
        raise ConversionError('not an EfficientViT-Seg checkpoint: no head.output_ops.0 classifier '
                              f'(first tensor: {next(iter(state_dict), "none")!r})')
    renamed: OrderedDict[str, Tensor] = OrderedDict()
    for key, tensor in state_dict.items():
        new = rename_key(key, max(outputs))
        if not _KNOWN.match(new):
            raise ConversionError(f'unexpected tensor {key!r}: not part of an EfficientViT-Seg B-series model')
        renamed[new] = tensor
    architecture = infer_architecture(renamed)
    expected = build_model(architecture).state_dict()
    missing = [key for key in expected if key not in renamed]
    unexpected = [key for key in renamed if key not in expected]
    if missing or unexpected:
        parts = [f'{len(missing)} missing (first: {missing[0]!r})' if missing else '',
                 f'{len(unexpected)} unexpected (first: {unexpected[0]!r})' if unexpected else '']
        raise ConversionError(f'the tensors do not make the inferred model {asdict(architecture)}: '
                              + ', '.join(p for p in parts if p))
    for key, tensor in renamed.items():
        if tensor.shape != expected[key].shape:
            raise ConversionError(f'tensor {key!r} has shape {tuple(tensor.shape)}, the inferred model '
                                  f'needs {tuple(expected[key].shape)}')
    return renamed, architecture


def read_state_dict(path: Path) -> Mapping[str, Tensor]:
    """The authors' state dict from ``path`` (``{'state_dict': ...}`` or a bare state dict)."""
    try:
        loaded = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise ConversionError(f'{path}: cannot be read as a tensors-only torch file ({error.__class__.__name__}: '
                              f'{str(error).splitlines()[0] if str(error) else ""})') from None
    state = loaded.get('state_dict', loaded) if isinstance(loaded, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConversionError(f'{path}: holds no state dict of tensors')
    return state


def convert_efficientvit(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Convert ``src`` and save an mmengine checkpoint (Cityscapes class names and palette in its meta,
    for a 19-class model) to ``dst``; returns the saved checkpoint with the inferred architecture."""
    path = Path(src)
    if not path.is_file():
        raise ConversionError(f'{path} does not exist')
    state_dict, architecture = convert_state_dict(read_state_dict(path))
    if architecture.num_classes == len(CITYSCAPES_CLASSES):
        classes, palette = CITYSCAPES_CLASSES, [list(map(int, c)) for c in get_palette('cityscapes')]
    else:
        raise ConversionError(f'{path}: the classifier predicts {architecture.num_classes} classes; only '
                              f'Cityscapes models ({len(CITYSCAPES_CLASSES)} classes) name their classes here')
    meta = {'dataset_meta': {'classes': classes, 'palette': palette},
            'converted_from': {'format': 'efficientvit', 'source': str(path),
                               'architecture': asdict(architecture)}}
    checkpoint = {'state_dict': state_dict, 'meta': meta}
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, dst)
    return checkpoint
