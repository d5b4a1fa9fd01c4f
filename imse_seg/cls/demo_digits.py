"""The offline classification demo's data: scikit-learn's bundled handwritten digits, corrupted as ImageNet-C.

scikit-learn ships the UCI optical-recognition digits (1,797 images of 8x8 pixels, 16 grey levels, 10
classes) inside the package, so the demo needs no download. Each image is upsampled to 32x32 (bicubic),
drawn as dark ink on white paper in RGB, and the set is split once, by a fixed permutation, into
``train`` (source training), ``tune`` (learning-rate tuning) and ``test`` (reported results). The
corruptions are the ImageNet-C functions of the ``imagecorruptions`` package (Hendrycks & Dietterich),
applied per image with a seed per (split, corruption, severity), and written in the ImageNet-C layout
``<root>/<corruption>/<severity>/<class>/<index>.png``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from imagecorruptions import corrupt
from sklearn.datasets import load_digits

IMAGE_SIZE = 32
SPLITS = {'train': (0, 1000), 'tune': (1000, 1300), 'test': (1300, 1797)}
SPLIT_SEED = 0
CLASS_NAMES = tuple(str(digit) for digit in range(10))


def digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``split`` images (N x 32 x 32 x 3 uint8, dark ink on white) and their labels (N,)."""
    if split not in SPLITS:
        raise KeyError(f'unknown digits split {split!r}; the splits are {sorted(SPLITS)}')
    digits = load_digits()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(digits.target))
    start, stop = SPLITS[split]
    chosen = order[start:stop]
    ink = np.stack([cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_CUBIC)
                    for image in digits.images[chosen] / 16.0])
    grey = np.clip(255.0 * (1.0 - ink), 0, 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1), digits.target[chosen].astype(np.int64)


def write_imagenet_c(root: str | Path, split: str, corruptions: Sequence[str],
                     severities: Sequence[int]) -> int:
    """Write ``split`` corrupted by every corruption at every severity under ``root``; return the count.

    NumPy's global generator (which ``imagecorruptions`` draws from) is seeded per (split, position of the
    corruption in ``corruptions``, severity), so a prefix of the standard order reproduces the full tree.
    """
    images, labels = digits_split(split)
    root = Path(root)
    written = 0
    for corruption_index, corruption in enumerate(corruptions):
        for severity in severities:
            np.random.seed(1000 * list(SPLITS).index(split) + 10 * corruption_index + severity)
            for index, (image, label) in enumerate(zip(images, labels)):
                folder = root / corruption / str(severity) / CLASS_NAMES[label]
                folder.mkdir(parents=True, exist_ok=True)
                corrupted = np.asarray(corrupt(image, corruption_name=corruption, severity=severity))
                rgb = np.clip(corrupted, 0, 255).astype(np.uint8)
                cv2.imwrite(str(folder / f'{index:04d}.png'), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                written += 1
    return written
