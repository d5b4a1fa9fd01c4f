"""Where a stream's per-image outputs go: one folder per round and segment, so that no round overwrites another.

A continual stream shows the same images once per round; files named by image alone (mmseg's
``output_dir`` and visualisation hook) would keep only the last round's. Images of round 2's fog segment
go to ``<root>/round_2/fog/<image stem>.png``, for the prediction maps (``--out``) and the overlays
(``--show-dir``) alike.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping


def segment_folder(root: str | Path, place: Mapping) -> Path:
    """``root/round_<r>/<segment>`` for the stream place ``dict(round=r, segment=name)``; ``root`` itself for
    an empty place (outside a stream: mmseg's flat layout)."""
    if not place:
        return Path(root)
    return Path(root) / f'round_{place["round"]}' / str(place['segment'])


def image_file(root: str | Path, place: Mapping, img_path: str) -> Path:
    """The PNG of the image ``img_path`` (named by its stem) in the :func:`segment_folder` of ``place``."""
    return segment_folder(root, place) / f'{Path(img_path).stem}.png'
