"""Generate a benchmark tree from CamVid: ACDC-layout weather streams (the demo adds a Cityscapes-layout source).

    python tools/make_demo_data.py [--preset efficientvit|tiny_segformer] [--out DIR] [--camvid DIR]
        [--seed 0] [--size HxW] [--frames-per-condition N] [--force]

``--preset efficientvit`` (default) writes the EfficientViT benchmark to ``data/camvid_stream``;
``--preset tiny_segformer`` the tiny-SegFormer demo to ``data/demo`` at 120x160. CamVid is read from
``--camvid``, else ``$IMSE_SEG_CAMVID``, else ``../shared/data/camvid``; the project does not ship it.
The tree is built in a hidden sibling folder and moved into place only when complete, so ``--out`` holds
either the previous tree or the new one, never a partial one. A non-empty ``--out`` is replaced only with
``--force``, and only if it holds a ``manifest.json`` (a tree this tool wrote). The same arguments give a
bit-identical tree. See docs/demo_data.md for what is written.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from imse_seg.demo import PRESETS, CamVidError, build_demo_tree
from imse_seg.third_party import CAMVID, MissingThirdPartyFile


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``120x160``) into positive integers."""
    try:
        height, width = (int(part) for part in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected HxW, e.g. 120x160; got {text!r}') from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f'size must be positive; got {text!r}')
    return height, width


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--preset', choices=sorted(PRESETS), default='efficientvit',
                        help='which tree: frame plan, renderer parameters, size (default efficientvit)')
    parser.add_argument('--camvid', type=Path, default=None,
                        help='the CamVid folder (default: $IMSE_SEG_CAMVID or ../shared/data/camvid)')
    parser.add_argument('--out', type=Path, default=None,
                        help="the tree to write (default: the preset's, data/camvid_stream or data/demo)")
    parser.add_argument('--seed', type=int, default=0, help='seed of every random choice in the rendering')
    parser.add_argument('--size', type=parse_size, default=None,
                        help="HxW of the written frames, at most CamVid's 240x320 (default: the preset's)")
    parser.add_argument('--frames-per-condition', type=int, default=None,
                        help="frames per condition in each weather stream (default: the preset's)")
    parser.add_argument('--force', action='store_true', help='replace an existing tree at --out')
    args = parser.parse_args(argv)
    if args.frames_per_condition is not None and args.frames_per_condition < 1:
        parser.error('--frames-per-condition must be at least 1')
    if args.seed < 0:
        parser.error('--seed must be a non-negative integer')
    args.out = args.out or Path(PRESETS[args.preset].out)
    return args


def check_out(out: Path, force: bool) -> None:
    """Refuse a non-empty ``out`` without ``force``, and any non-empty folder this tool did not write."""
    if out.exists() and not out.is_dir():
        raise CamVidError(f'{out} exists and is not a folder')
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise CamVidError(f'{out} is not empty; pass --force to replace the tree there')
    if not (out / 'manifest.json').is_file():
        raise CamVidError(f'{out} has no manifest.json, so it was not written by this tool; '
                          'refusing to replace it (delete it yourself if it is disposable)')


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out, preset = args.out, PRESETS[args.preset]
    started = time.perf_counter()
    staging = out.parent / f'.{out.name}.partial-{os.getpid()}'
    try:
        check_out(out, args.force)
        camvid = CAMVID.require(args.camvid)
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f'writing the {preset.name} tree from {camvid} to {out} (seed {args.seed})', flush=True)
        with tqdm(unit='frame', desc=preset.name, dynamic_ncols=True) as bar:
            def advance(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)
            manifest = build_demo_tree(staging, preset, args.seed, args.frames_per_condition, args.size,
                                       camvid, progress=advance)
    except (CamVidError, MissingThirdPartyFile) as error:
        shutil.rmtree(staging, ignore_errors=True)
        print(f'error: {error}', file=sys.stderr)
        return 2
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.is_dir():
        retired = out.parent / f'.{out.name}.old-{os.getpid()}'
        out.rename(retired)
        staging.rename(out)
        shutil.rmtree(retired)
    else:
        staging.rename(out)
    for name, stems in manifest['streams'].items():
        print(f'  {name}: {len(stems)} frames')
    height, width = manifest['size']
    print(f'done: {len(manifest["files"]) // 2} frames at {height}x{width} in {out} '
          f'({time.perf_counter() - started:.1f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
