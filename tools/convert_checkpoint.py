"""Convert a published checkpoint into an mmengine checkpoint for one of imse_seg's model configs.

    python tools/convert_checkpoint.py SRC DST [--format auto|nvlabs|hf|efficientvit]

SegFormer: SRC is NVlabs' / mmseg 0.x ``.pth`` (e.g. ``segformer.b5.1024x1024.city.160k.pth``) or a Hugging
Face model directory (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``), for
``configs/_base_/models/segformer_mit-b5_nvlabs.py`` or ``segformer_mit-b5_hf.py``. EfficientViT
(``--format efficientvit``): SRC is the authors' ``efficientvit_seg_b*_cityscapes.pt``; the tool prints the
model config that matches the widths and depths it converted. Files are read without executing pickled
code; any missing, unexpected or mis-shaped tensor is refused, naming it. Exit status 2 when the source is
refused, with the reason.
"""
from __future__ import annotations

import argparse
import sys

from imse_seg.seg.checkpoint_conversion import ConversionError, convert_checkpoint
from imse_seg.seg.efficientvit_conversion import (B0_CITYSCAPES, B0_CONFIG, EfficientViTArchitecture,
                                                    convert_efficientvit)

CONFIGS = {'nvlabs': 'configs/_base_/models/segformer_mit-b5_nvlabs.py',
           'hf': 'configs/_base_/models/segformer_mit-b5_hf.py'}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='NVlabs / mmseg-0.x .pth file, Hugging Face model directory, or the '
                                    "EfficientViT authors' .pt file")
    parser.add_argument('dst', help='output mmengine checkpoint (.pth)')
    parser.add_argument('--format', choices=('auto', 'nvlabs', 'hf', 'efficientvit'), default='auto',
                        help='source format; auto: a directory is Hugging Face, a file NVlabs (default)')
    return parser.parse_args(argv)


B5 = dict(embed_dims=64, num_layers=[3, 6, 40, 3], in_channels=[64, 128, 320, 512], channels=768)


def segformer_sizes(state_dict: dict) -> dict:
    """Widths and depths of a converted SegFormer state dict, in the model config's terms."""
    stages = sorted({int(key.split('.')[2]) for key in state_dict if key.startswith('backbone.layers.')})
    widths = [state_dict[f'backbone.layers.{i}.0.projection.weight'].shape[0] for i in stages]
    depths = [1 + max(int(key.split('.')[4]) for key in state_dict if key.startswith(f'backbone.layers.{i}.1.'))
              for i in stages]
    return dict(embed_dims=widths[0], num_layers=depths, in_channels=widths,
                channels=state_dict['decode_head.linear_projections.0.weight'].shape[0])


def convert_segformer(args: argparse.Namespace) -> None:
    checkpoint = convert_checkpoint(args.src, args.dst, args.format)
    source = checkpoint['meta']['converted_from']
    classes = checkpoint['meta']['dataset_meta']['classes']
    print(f'converted {args.src} ({source["format"]}, {source["naming"]} key names): '
          f'{len(checkpoint["state_dict"])} tensors, {len(classes)} classes -> {args.dst}')
    sizes = segformer_sizes(checkpoint['state_dict'])
    config = CONFIGS[source['format']]
    if sizes == B5:
        print(f'model config with the matching LayerNorm eps: {config}')
        return
    print(f'model config: {config} (its LayerNorm eps) with the converted widths and depths:\n'
          f'model = dict(backbone=dict(embed_dims={sizes["embed_dims"]}, num_layers={sizes["num_layers"]}), '
          f'decode_head=dict(in_channels={sizes["in_channels"]}, channels={sizes["channels"]}, '
          f'num_classes={len(classes)}))')


def convert_efficientvit_file(args: argparse.Namespace) -> None:
    checkpoint = convert_efficientvit(args.src, args.dst)
    architecture = EfficientViTArchitecture(**checkpoint['meta']['converted_from']['architecture'])
    print(f'converted {args.src} (EfficientViT-Seg): {len(checkpoint["state_dict"])} tensors, '
          f'{architecture.num_classes} classes -> {args.dst}')
    if architecture == B0_CITYSCAPES:
        print(f'model config: {B0_CONFIG}')
        return
    print(f'model config: {B0_CONFIG} with these fields changed (widths, depths and head sizes of the '
          f'converted file):\nmodel = {architecture.model_overrides()!r}')


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.format == 'efficientvit':
            convert_efficientvit_file(args)
        else:
            convert_segformer(args)
    except ConversionError as error:
        print(f'convert_checkpoint: refused: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
