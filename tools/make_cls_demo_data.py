"""Write the classification demo's ImageNet-C-layout data: ``python tools/make_cls_demo_data.py``.

The digits ``test`` and ``tune`` splits of :mod:`imse_seg.cls.demo_digits`, each corrupted by the 15
ImageNet-C corruptions at severities 1-5 (``imagecorruptions``), under
``<out>/<split>/<corruption>/<severity>/<class>/<index>.png``. Deterministic; about 75,000 PNGs of 32x32.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from imse_seg.cls.demo_digits import write_imagenet_c
from imse_seg.cls.streams import IMAGENET_C_CORRUPTIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='work_dirs/cls_demo/digits_c')
    parser.add_argument('--splits', nargs='+', default=['test', 'tune'])
    parser.add_argument('--severities', nargs='+', type=int, default=[1, 2, 3, 4, 5])
    args = parser.parse_args()
    for split in args.splits:
        started = time.perf_counter()
        count = write_imagenet_c(Path(args.out) / split, split, IMAGENET_C_CORRUPTIONS, args.severities)
        print(f'{split}: {count} images under {Path(args.out) / split} ({time.perf_counter() - started:.0f} s)')


if __name__ == '__main__':
    main()
