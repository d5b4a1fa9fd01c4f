"""CamVid frames -> the demo benchmark: Cityscapes-layout source domain, ACDC-layout weather streams.

This module reads the CamVid copy in ``data/camvid`` (SegNet's 11 classes), maps its labels to the 19
Cityscapes trainIds, chooses which frames go where, and writes them in the real Cityscapes and ACDC file
layouts, so that mmseg's own ``CityscapesDataset`` and an ACDC loader read them unchanged. The choice of
frames and every rendered pixel depend only on the seed, the size and the frame count: rebuilding with the
same arguments gives a bit-identical tree. ``docs/demo_data.md`` documents the splits and the mapping.
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .weather import CONDITIONS, WeatherParams, render

CAMVID_CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree', 'SignSymbol', 'Fence', 'Car',
                  'Pedestrian', 'Bicyclist')
CAMVID_VOID = 11
# CamVid class id -> Cityscapes trainId. Bicyclist -> rider: the label covers the person and the bicycle
# together, mostly the person, and Cityscapes calls a person on a bicycle a rider.
CAMVID_TO_TRAINID = {0: 10, 1: 2, 2: 5, 3: 0, 4: 1, 5: 8, 6: 7, 7: 4, 8: 13, 9: 11, 10: 12}
IGNORE_INDEX = 255

SPLITS = ('train', 'val', 'test')
SOURCE_SEQUENCES = ('0006R0', '0016E5')   # daylight sequences of CamVid's train split: the source domain
VAL_SEQUENCE = '0016E5'                   # CamVid val: clear validation and the tuning stream
CLEAR_TARGET_SEQUENCE = 'Seq05VD'         # daylight, CamVid test: fog, rain and snow of the target
DUSK_SEQUENCE = '0001TP'                  # dusk, CamVid train + test: night of the target
TARGET_SPLIT = 'train'                    # ACDC split of the reported stream (as the CoTTA protocol)
TUNING_SPLIT = 'val'                      # ACDC split of the tuning stream, rendered from CamVid val
WEATHER_CONDITIONS = ('fog', 'rain', 'snow')

_LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _camvid_id, _train_id in CAMVID_TO_TRAINID.items():
    _LUT[_camvid_id] = _train_id


class CamVidError(RuntimeError):
    """The CamVid folder is missing, incomplete or holds a file that cannot be used."""


@dataclass(frozen=True)
class CamVidFrame:
    """One labelled CamVid frame: its split, sequence, file stem and the two files."""
    split: str
    sequence: str
    stem: str
    image: Path
    label: Path


@dataclass(frozen=True)
class DemoItem:
    """One frame to write: where (``layout``, ``split``), under which ``condition`` (None: clear)."""
    layout: str              # 'cityscapes' or 'acdc'
    split: str
    condition: str | None
    frame: CamVidFrame


def to_train_ids(label: np.ndarray) -> np.ndarray:
    """Map a CamVid label map (ids 0..11) to Cityscapes trainIds, void (11) to 255."""
    return _LUT[label]


def list_camvid(root: Path) -> list[CamVidFrame]:
    """List the frames of a CamVid folder (``<split>/*.jpg`` + ``<split>annot/*.png``), checking pairs."""
    root = Path(root)
    if not root.is_dir():
        raise CamVidError(f'CamVid folder {root} does not exist; the project ships it in data/camvid')
    missing = [name for split in SPLITS for name in (split, f'{split}annot') if not (root / name).is_dir()]
    if missing:
        raise CamVidError(f'CamVid folder {root} is incomplete: no {", ".join(missing)} folder')
    frames = []
    for split in SPLITS:
        images = {p.stem: p for p in (root / split).glob('*.jpg')}
        labels = {p.stem: p for p in (root / f'{split}annot').glob('*.png')}
        unpaired = sorted(images.keys() ^ labels.keys())
        if unpaired:
            raise CamVidError(f'CamVid folder {root} is incomplete: {len(unpaired)} frame(s) of split '
                              f'{split!r} lack an image or a label, e.g. {unpaired[:3]}')
        frames += [CamVidFrame(split, stem.split('_')[0], stem, images[stem], labels[stem])
                   for stem in sorted(images)]
    return frames


def read_frame(frame: CamVidFrame) -> tuple[np.ndarray, np.ndarray]:
    """Decode a frame as (RGB ``uint8`` H x W x 3, trainId ``uint8`` H x W)."""
    bgr = cv2.imread(str(frame.image), cv2.IMREAD_COLOR)
    label = cv2.imread(str(frame.label), cv2.IMREAD_UNCHANGED)
    for path, array in ((frame.image, bgr), (frame.label, label)):
        if array is None:
            raise CamVidError(f'cannot decode {path}')
    if label.ndim != 2 or label.shape != bgr.shape[:2] or label.dtype != np.uint8:
        raise CamVidError(f'{frame.label} is not a {bgr.shape[0]}x{bgr.shape[1]} 8-bit label map')
    if label.max() > CAMVID_VOID:
        raise CamVidError(f'{frame.label} holds class id {label.max()}; CamVid ids are 0..{CAMVID_VOID}')
    return np.ascontiguousarray(bgr[..., ::-1]), to_train_ids(label)


def cityscapes_paths(root: Path, split: str, sequence: str, stem: str) -> tuple[Path, Path]:
    """Image and trainId label paths of a frame in the Cityscapes layout (sequence as the city)."""
    return (Path(root) / 'leftImg8bit' / split / sequence / f'{stem}_leftImg8bit.png',
            Path(root) / 'gtFine' / split / sequence / f'{stem}_gtFine_labelTrainIds.png')


def acdc_paths(root: Path, condition: str, split: str, sequence: str, stem: str) -> tuple[Path, Path]:
    """Image and trainId label paths of a frame in the ACDC layout."""
    return (Path(root) / 'rgb_anon' / condition / split / sequence / f'{stem}_rgb_anon.png',
            Path(root) / 'gt' / condition / split / sequence / f'{stem}_gt_labelTrainIds.png')


def write_png(path: Path, array: np.ndarray) -> bytes:
    """Write an RGB (H x W x 3) or single-channel ``uint8`` array as PNG atomically; return the bytes."""
    data = array[..., ::-1] if array.ndim == 3 else array
    ok, encoded = cv2.imencode('.png', np.ascontiguousarray(data), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise OSError(f'cannot encode {path} as PNG')
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f'.{path.name}.partial')
    data = encoded.tobytes()
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return data


def spread(frames: list[CamVidFrame], count: int, group: int = 0, groups: int = 1) -> list[CamVidFrame]:
    """``count`` frames evenly spread over ``frames`` in order, shifted for ``group`` of ``groups``.

    Frame ``j`` of group ``g`` is ``frames[floor((j + g / groups) * len(frames) / count)]``: the groups
    interleave, so they share no frame while ``count * groups <= len(frames)``, and each covers the whole
    sequence (similar scenes in every condition).
    """
    if not 1 <= count <= len(frames):
        sequences = '/'.join(sorted({f.sequence for f in frames}))
        raise CamVidError(f'cannot take {count} frames per condition from the {len(frames)} frames of '
                          f'{sequences}')
    return [frames[int((j + group / groups) * len(frames) / count)] for j in range(count)]


def plan_demo(frames: list[CamVidFrame], frames_per_condition: int) -> list[DemoItem]:
    """Assign CamVid frames to the source domain, the reported target stream and the tuning stream.

    Cityscapes layout: ``train`` = daylight train frames of 0006R0 and 0016E5, ``val`` = CamVid val
    (0016E5), ``test`` = the clear originals of the target's fog, rain and snow frames (a clear reference on
    the same frames; never tune on it). ACDC layout: split ``train`` (reported) = fog, rain and snow on
    interleaved Seq05VD frames and night on 0001TP (dusk) frames; split ``val`` (tuning) = all four
    conditions on interleaved CamVid val frames.
    """
    def pool(split: str | None, sequences: tuple[str, ...]) -> list[CamVidFrame]:
        chosen = [f for f in frames if f.sequence in sequences and split in (None, f.split)]
        if not chosen:
            where = f'split {split!r}' if split else 'any split'
            raise CamVidError(f'CamVid folder is incomplete: no frame of {"/".join(sequences)} in {where}')
        return sorted(chosen, key=lambda f: f.stem)

    source = pool('train', SOURCE_SEQUENCES)
    val = pool('val', (VAL_SEQUENCE,))
    clear_target = pool('test', (CLEAR_TARGET_SEQUENCE,))
    dusk = pool(None, (DUSK_SEQUENCE,))
    n = frames_per_condition
    items = [DemoItem('cityscapes', 'train', None, f) for f in source]
    items += [DemoItem('cityscapes', 'val', None, f) for f in val]
    weather = {c: spread(clear_target, n, g, len(WEATHER_CONDITIONS))
               for g, c in enumerate(WEATHER_CONDITIONS)}
    test = sorted({f for chosen in weather.values() for f in chosen}, key=lambda f: f.stem)
    items += [DemoItem('cityscapes', 'test', None, f) for f in test]
    target = dict(weather, night=spread(dusk, n))
    items += [DemoItem('acdc', TARGET_SPLIT, c, f) for c in CONDITIONS for f in target[c]]
    items += [DemoItem('acdc', TUNING_SPLIT, c, f) for g, c in enumerate(CONDITIONS)
              for f in spread(val, n, g, len(CONDITIONS))]
    return items


def frame_rng(seed: int, item: DemoItem) -> np.random.Generator:
    """A generator for one rendered frame that depends on the seed and the frame's identity only."""
    key = zlib.crc32(f'{item.split}/{item.condition}/{item.frame.stem}'.encode())
    return np.random.default_rng(np.random.SeedSequence([seed, key]))


def _resize(image: np.ndarray, label: np.ndarray, size: tuple[int, int] | None, name: str
            ) -> tuple[np.ndarray, np.ndarray]:
    if size is None or size == image.shape[:2]:
        return image, label
    height, width = size
    if height > image.shape[0] or width > image.shape[1]:
        raise CamVidError(f'size {height}x{width} exceeds the copied frames ({name} is '
                          f'{image.shape[0]}x{image.shape[1]}); the generator only shrinks them')
    return (cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA),
            cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST_EXACT))


def build_demo_tree(camvid_root: Path, out: Path, seed: int, frames_per_condition: int,
                    size: tuple[int, int] | None = None, params: WeatherParams = WeatherParams(),
                    progress: Callable[[str], None] = lambda message: None) -> dict:
    """Write the whole demo tree under ``out`` and its ``manifest.json``; return the manifest.

    Weather is rendered on the copied frames, then frames and labels are shrunk to ``size`` (H, W) when
    given (area for images, nearest for labels). The manifest records the arguments, the parameters, the
    ordered frames of every stream and the SHA-256 of every file written.
    """
    out = Path(out)
    items = plan_demo(list_camvid(camvid_root), frames_per_condition)
    files: dict[str, str] = {}
    streams: dict[str, list[str]] = {}
    groups: dict[tuple[str, str, str | None], list[DemoItem]] = {}
    for item in items:
        groups.setdefault((item.layout, item.split, item.condition), []).append(item)
    for (layout, split, condition), members in groups.items():
        for item in members:
            image, label = read_frame(item.frame)
            if condition is not None:
                image = render(condition, image, label, frame_rng(seed, item), params)
            image, label = _resize(image, label, size, str(item.frame.image))
            frame = item.frame
            paths = (cityscapes_paths(out, split, frame.sequence, frame.stem) if layout == 'cityscapes'
                     else acdc_paths(out, condition, split, frame.sequence, frame.stem))
            for path, array in zip(paths, (image, label)):
                files[path.relative_to(out).as_posix()] = hashlib.sha256(write_png(path, array)).hexdigest()
            written_size = list(image.shape[:2])
        name = f'{layout}/{split}' + (f'/{condition}' if condition else '')
        streams[name] = [item.frame.stem for item in members]
        progress(f'{name}: {len(members)} frames')
    manifest = dict(seed=seed, frames_per_condition=frames_per_condition,
                    size=written_size, params=asdict(params),
                    target_split=TARGET_SPLIT, tuning_split=TUNING_SPLIT, streams=streams,
                    files=dict(sorted(files.items())))
    manifest_path = out / 'manifest.json'
    temporary = out / '.manifest.json.partial'
    temporary.write_text(json.dumps(manifest, indent=1) + '\n')
    os.replace(temporary, manifest_path)
    return manifest
