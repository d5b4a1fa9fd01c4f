"""Write CIFAR-10-C from the CIFAR-10 test JPEGs: ``python tools/make_cifar10c.py [--extra] [options]``.

The 15 corruptions (``--extra`` adds the 4 held-out ones) at severities 1-5 with CIFAR-10-C's own parameters
(:mod:`imse_seg.cls.cifar10c`), in RobustBench's layout: ``<out>/<corruption>.npy`` (50000, 32, 32, 3) uint8,
severity s in rows 10000 (s - 1) .. 10000 s - 1, and ``<out>/labels.npy``. The source is ``--cifar10``, else
``$IMSE_SEG_CIFAR10``, else ``data/cifar10`` of the shared folder (``../shared``). Files already complete are
skipped (``--force`` rewrites them); each corruption's time is printed. Deterministic per ``--seed``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from imse_seg.cli import exit_with
from imse_seg.cls.cifar10c import CORRUPTIONS, EXTRA_CORRUPTIONS
from imse_seg.cls.cifar10c_writer import write_cifar10c
from imse_seg.third_party import CIFAR10_TEST


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cifar10', help='folder with manifest.csv and test/<class>/NNNN.jpg (default: '
                                          f'${CIFAR10_TEST.env}, else <shared>/{CIFAR10_TEST.relative})')
    parser.add_argument('--out', default='data/cifar10c', help='output folder (default: data/cifar10c)')
    parser.add_argument('--corruptions', nargs='+', choices=CORRUPTIONS + EXTRA_CORRUPTIONS, default=CORRUPTIONS,
                        metavar='NAME', help='corruptions to write (default: the 15 of CIFAR-10-C)')
    parser.add_argument('--extra', action='store_true', help='also write ' + ', '.join(EXTRA_CORRUPTIONS))
    parser.add_argument('--seed', type=int, default=0, help='base seed (default 0)')
    parser.add_argument('--workers', type=int, default=1, help='processes (default 1)')
    parser.add_argument('--force', action='store_true',
                        help='rewrite corruptions already complete (and labels.npy if it differs)')
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error('--workers must be at least 1')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    source = CIFAR10_TEST.require(args.cifar10)
    names = list(dict.fromkeys(list(args.corruptions) + (list(EXTRA_CORRUPTIONS) if args.extra else [])))
    started = time.perf_counter()
    seconds = write_cifar10c(source, Path(args.out), names, seed=args.seed, workers=args.workers, force=args.force)
    written = [name for name, taken in seconds.items() if taken is not None]
    print(f'{len(written)} corruptions written, {len(seconds) - len(written)} already complete, under {args.out} '
          f'({time.perf_counter() - started:.0f} s)')
    return 0


if __name__ == '__main__':
    exit_with(main)
