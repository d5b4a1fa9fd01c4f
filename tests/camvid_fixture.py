"""A reduced CamVid folder for fast generator runs: a few frames of every sequence of the shared copy."""
from __future__ import annotations

import shutil
from pathlib import Path

REDUCED = {('train', '0006R0'): 3, ('train', '0016E5'): 3, ('train', '0001TP'): 2, ('val', '0016E5'): 8,
           ('test', 'Seq05VD'): 6, ('test', '0001TP'): 2}
"""(CamVid split, sequence) -> how many of its first frames the reduced folder holds."""


def reduce_camvid(camvid: Path, dst: Path) -> Path:
    """Copy the :data:`REDUCED` frames of the CamVid folder ``camvid`` (images and labels) into ``dst``."""
    for split in ('train', 'val', 'test'):
        (dst / split).mkdir(parents=True)
        (dst / f'{split}annot').mkdir()
    for (split, sequence), count in REDUCED.items():
        for image in sorted((camvid / split).glob(f'{sequence}_*.jpg'))[:count]:
            shutil.copy(image, dst / split / image.name)
            shutil.copy(camvid / f'{split}annot' / f'{image.stem}.png', dst / f'{split}annot')
    return dst
