"""Convert a published SegFormer checkpoint into an mmseg 1.x checkpoint for imse_seg's SegFormer configs.

    python tools/convert_checkpoint.py SRC DST [--format auto|nvlabs|hf]

SRC is NVlabs' / mmseg 0.x ``.pth`` (e.g. ``segformer.b5.1024x1024.city.160k.pth``) or a Hugging Face model
directory (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``); DST is the mmengine checkpoint
to give ``load_from`` with ``configs/_base_/models/segformer_mit-b5_nvlabs.py`` (NVlabs source) or
``segformer_mit-b5_hf.py`` (Hugging Face source). Files are read without executing pickled code (see
:mod:`imse_seg.seg.checkpoint_conversion`). Exit status 2 when the source is refused, with the reason.
"""
from __future__ import annotations

import argparse
import sys

from imse_seg.seg.checkpoint_conversion import ConversionError, convert_checkpoint

CONFIGS = {'nvlabs': 'configs/_base_/models/segformer_mit-b5_nvlabs.py',
           'hf': 'configs/_base_/models/segformer_mit-b5_hf.py'}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='NVlabs / mmseg-0.x .pth file, or Hugging Face model directory')
    parser.add_argument('dst', help='output mmengine checkpoint (.pth)')
    parser.add_argument('--format', choices=('auto', 'nvlabs', 'hf'), default='auto',
                        help='source format; auto: a directory is Hugging Face, a file NVlabs (default)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        checkpoint = convert_checkpoint(args.src, args.dst, args.format)
    except ConversionError as error:
        print(f'convert_checkpoint: refused: {error}', file=sys.stderr)
        return 2
    source = checkpoint['meta']['converted_from']
    classes = checkpoint['meta']['dataset_meta']['classes']
    print(f'converted {args.src} ({source["format"]}, {source["naming"]} key names): '
          f'{len(checkpoint["state_dict"])} tensors, {len(classes)} classes -> {args.dst}')
    print(f'model config with the matching LayerNorm eps: {CONFIGS[source["format"]]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
