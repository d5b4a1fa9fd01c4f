"""CamVid frames -> the benchmark trees: ACDC-layout weather streams (the demo adds a Cityscapes-layout source).

This module reads CamVid (SegNet's 11 classes) from the shared folder (:data:`imse_seg.third_party.CAMVID`:
``../shared/data/camvid`` or ``$IMSE_SEG_CAMVID``; the project does not ship it), maps its labels to the 19
Cityscapes trainIds, chooses which frames go where (a *plan*: :func:`plan_camvid_stream` for the
EfficientViT benchmark, :func:`plan_demo` for the tiny-SegFormer demo), and writes them in the real ACDC and
Cityscapes file layouts, so that ``ACDCDataset`` and mmseg's own ``CityscapesDataset`` read them unchanged.
The choice of frames and every rendered pixel depend only on the preset, the seed, the size and the frame
count: rebuilding with the same arguments gives a bit-identical tree. ``docs/demo_data.md`` documents the
plans and the mapping.
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from ..third_party import CAMVID
from .weather import CONDITIONS, WeatherParams, render

if TYPE_CHECKING:
    from .presets import DemoPreset

CAMVID_CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree', 'SignSymbol', 'Fence', 'Car',
                  'Pedestrian', 'Bicyclist')
CAMVID_VOID = 11
# CamVid class id -> Cityscapes trainId. Bicyclist -> rider: the label covers the person and the bicycle
# together, mostly the person, and Cityscapes calls a person on a bicycle a rider.
CAMVID_TO_TRAINID = {0: 10, 1: 2, 2: 5, 3: 0, 4: 1, 5: 8, 6: 7, 7: 4, 8: 13, 9: 11, 10: 12}
IGNORE_INDEX = 255

SPLITS = ('train', 'val', 'test')
# The tiny-SegFormer demo (plan_demo): a Cityscapes-layout source domain and small weather streams.
SOURCE_SEQUENCES = ('0006R0', '0016E5')   # daylight sequences of CamVid's train split: the source domain
VAL_SEQUENCE = '0016E5'                   # CamVid val: clear validation and the tuning stream
CLEAR_TARGET_SEQUENCE = 'Seq05VD'         # daylight, CamVid test: fog, rain and snow of the target
DUSK_SEQUENCE = '0001TP'                  # dusk, CamVid train + test: night of the target
TARGET_SPLIT = 'train'                    # ACDC split of the reported stream (as the CoTTA protocol)
TUNING_SPLIT = 'val'                      # ACDC split of the tuning stream, rendered from CamVid val
WEATHER_CONDITIONS = ('fog', 'rain', 'snow')
# The EfficientViT benchmark (plan_camvid_stream): no source domain (the source model is Cityscapes').
REPORTED_DAYLIGHT = ('Seq05VD', '0006R0')  # CamVid test + train; night is rendered on these only
REPORTED_DUSK = ('0001TP',)                # CamVid train + test, real dusk; fog, rain and snow only
TUNING_SEQUENCES = ('0016E5',)             # CamVid train + val: the tuning stream, never reported
CLEAR_PREFIX = 'clear_'                    # ACDC-layout folder of the clear originals of a condition

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
    """One frame to write: where (``layout``, ``split``, ACDC ``condition`` folder; None in Cityscapes
    layout) and the CamVid frame it comes from. A condition folder that is one of :data:`CONDITIONS` is
    rendered with that weather; any other (``clear_<condition>``) holds the frame as CamVid has it."""
    layout: str              # 'cityscapes' or 'acdc'
    split: str
    condition: str | None
    frame: CamVidFrame

    @property
    def weather(self) -> str | None:
        """The weather rendered on this frame, or None for a clear copy."""
        return self.condition if self.condition in CONDITIONS else None


def to_train_ids(label: np.ndarray) -> np.ndarray:
    """Map a CamVid label map (ids 0..11) to Cityscapes trainIds, void (11) to 255."""
    return _LUT[label]


def list_camvid(root: str | Path | None = None) -> list[CamVidFrame]:
    """List the frames of a CamVid folder (``<split>/*.jpg`` + ``<split>annot/*.png``), checking pairs.

    ``root`` defaults to the shared copy (:data:`~imse_seg.third_party.CAMVID`); a missing folder raises
    :class:`~imse_seg.third_party.MissingThirdPartyFile` naming the path expected and where CamVid comes
    from, an incomplete one :class:`CamVidError`.
    """
    root = CAMVID.require(root)
    if not root.is_dir():
        raise CamVidError(f'CamVid folder {root} is not a folder')
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


def _pool(frames: list[CamVidFrame], splits: tuple[str, ...], sequences: tuple[str, ...]
          ) -> list[CamVidFrame]:
    """The frames of ``sequences`` in CamVid ``splits``, in path order (sequence, then time)."""
    chosen = [f for f in frames if f.sequence in sequences and f.split in splits]
    if not chosen:
        raise CamVidError(f'CamVid folder is incomplete: no frame of {"/".join(sequences)} in split(s) '
                          f'{"/".join(splits)}')
    return sorted(chosen, key=lambda f: (f.sequence, f.stem))


def interleave(frames: list[CamVidFrame], conditions: tuple[str, ...], count: int
               ) -> dict[str, list[CamVidFrame]]:
    """``count`` frames for each of ``conditions``, interleaved over ``frames`` (:func:`spread`)."""
    return {c: spread(frames, count, g, len(conditions)) for g, c in enumerate(conditions)}


def plan_demo(frames: list[CamVidFrame], frames_per_condition: int) -> list[DemoItem]:
    """The tiny-SegFormer demo: a source domain, a reported target stream and a tuning stream.

    Cityscapes layout: ``train`` = daylight train frames of 0006R0 and 0016E5, ``val`` = CamVid val
    (0016E5), ``test`` = the clear originals of the target's fog, rain and snow frames (a clear reference on
    the same frames; never tune on it). ACDC layout: split ``train`` (reported) = fog, rain and snow on
    interleaved Seq05VD frames and night on 0001TP (dusk) frames; split ``val`` (tuning) = all four
    conditions on interleaved CamVid val frames.
    """
    source = _pool(frames, ('train',), SOURCE_SEQUENCES)
    val = _pool(frames, ('val',), (VAL_SEQUENCE,))
    clear_target = _pool(frames, ('test',), (CLEAR_TARGET_SEQUENCE,))
    dusk = _pool(frames, SPLITS, (DUSK_SEQUENCE,))
    n = frames_per_condition
    items = [DemoItem('cityscapes', 'train', None, f) for f in source]
    items += [DemoItem('cityscapes', 'val', None, f) for f in val]
    weather = interleave(clear_target, WEATHER_CONDITIONS, n)
    test = sorted({f for chosen in weather.values() for f in chosen}, key=lambda f: f.stem)
    items += [DemoItem('cityscapes', 'test', None, f) for f in test]
    target = dict(weather, night=spread(dusk, n))
    items += [DemoItem('acdc', TARGET_SPLIT, c, f) for c in CONDITIONS for f in target[c]]
    items += [DemoItem('acdc', TUNING_SPLIT, c, f) for c, chosen in interleave(val, CONDITIONS, n).items()
              for f in chosen]
    return items


def plan_camvid_stream(frames: list[CamVidFrame], frames_per_condition: int) -> list[DemoItem]:
    """The EfficientViT benchmark: a reported and a tuning fog -> night -> rain -> snow stream, each frame
    also written clear, from sequences that share nothing.

    **Reported** (ACDC split ``train``), from Seq05VD (CamVid test) and 0006R0 (train), both daylight, and
    0001TP (train + test, real dusk): night is rendered on daylight frames only, ``n`` of them spread over
    the daylight pool; fog, rain and snow interleave over all the other reported frames (daylight and dusk),
    so each sees the same mix of scenes. **Tuning** (split ``val``), from 0016E5 (train + val, daylight):
    the pool's even positions carry fog and rain, the odd ones night and snow. When a pool holds fewer than
    its conditions need (the defaults: 296 frames for 3 x 100, 152-153 for 2 x 100), interleaved conditions
    reuse frames, rendered differently; the pairing keeps reuse between conditions that are not neighbours
    in the stream (fog-rain, night-snow). The clear original of every frame goes to condition folder
    ``clear_<condition>``, so a model's score under a condition and on the same frames clear can be compared.
    """
    n = frames_per_condition
    daylight = _pool(frames, SPLITS, REPORTED_DAYLIGHT)
    dusk = _pool(frames, SPLITS, REPORTED_DUSK)
    tuning = _pool(frames, SPLITS, TUNING_SEQUENCES)
    night = spread(daylight, n)
    taken = set(night)
    rest = sorted([f for f in daylight if f not in taken] + dusk, key=lambda f: (f.sequence, f.stem))
    reported = dict(night=night, **interleave(rest, WEATHER_CONDITIONS, n))
    tuned = {**interleave(tuning[0::2], ('fog', 'rain'), n), **interleave(tuning[1::2], ('night', 'snow'), n)}
    items = []
    for split, chosen in ((TARGET_SPLIT, reported), (TUNING_SPLIT, tuned)):
        for condition in CONDITIONS:
            for folder in (condition, f'{CLEAR_PREFIX}{condition}'):
                items += [DemoItem('acdc', split, folder, f) for f in chosen[condition]]
    return items


def frame_rng(seed: int, item: DemoItem) -> np.random.Generator:
    """A generator for one rendered frame that depends on the seed and the frame's identity only."""
    key = zlib.crc32(f'{item.split}/{item.condition}/{item.frame.stem}'.encode())
    return np.random.default_rng(np.random.SeedSequence([seed, key]))


def shrink(image: np.ndarray, label: np.ndarray, size: tuple[int, int] | None, name: str
           ) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (area) and ``label`` (nearest) resized to ``size`` (H, W); never enlarged."""
    if size is None or size == image.shape[:2]:
        return image, label
    height, width = size
    if height > image.shape[0] or width > image.shape[1]:
        raise CamVidError(f'size {height}x{width} exceeds the CamVid frames ({name} is '
                          f'{image.shape[0]}x{image.shape[1]}); the generator only shrinks them')
    return (cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA),
            cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST_EXACT))


def make_frame(item: DemoItem, seed: int, params: WeatherParams, size: tuple[int, int] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """The (RGB image, trainId labels) written for ``item``: the CamVid frame shrunk to ``size``, then
    rendered with its weather (if any) at that size, so pixel-sized parameters refer to the written frame.
    The generator and the calibration both call this, so they see the same pixels."""
    image, label = shrink(*read_frame(item.frame), size, str(item.frame.image))
    if item.weather is not None:
        image = render(item.weather, image, label, frame_rng(seed, item), params)
    return image, label


def build_demo_tree(out: Path, preset: DemoPreset, seed: int = 0, frames_per_condition: int | None = None,
                    size: tuple[int, int] | None = None, camvid_root: str | Path | None = None,
                    progress: Callable[[int, int], None] = lambda done, total: None) -> dict:
    """Write ``preset``'s tree under ``out`` and its ``manifest.json``; return the manifest.

    ``frames_per_condition`` and ``size`` (H, W) default to the preset's; ``camvid_root`` to the shared
    CamVid copy. ``progress(done, total)`` is called after each frame is written. The manifest records the
    preset, the arguments, the renderer parameters, the ordered frames of every stream and the SHA-256 of
    every file.
    """
    out = Path(out)
    frames_per_condition = frames_per_condition or preset.frames_per_condition
    size = size or preset.size
    items = preset.plan(list_camvid(camvid_root), frames_per_condition)
    files: dict[str, str] = {}
    streams: dict[str, list[str]] = {}
    written_size: list[int] = []
    for done, item in enumerate(items, 1):
        image, label = make_frame(item, seed, preset.weather, size)
        frame = item.frame
        paths = (cityscapes_paths(out, item.split, frame.sequence, frame.stem) if item.layout == 'cityscapes'
                 else acdc_paths(out, item.condition, item.split, frame.sequence, frame.stem))
        for path, array in zip(paths, (image, label)):
            files[path.relative_to(out).as_posix()] = hashlib.sha256(write_png(path, array)).hexdigest()
        name = f'{item.layout}/{item.split}' + (f'/{item.condition}' if item.condition else '')
        streams.setdefault(name, []).append(frame.stem)
        written_size = list(image.shape[:2])
        progress(done, len(items))
    manifest = dict(preset=preset.name, seed=seed, frames_per_condition=frames_per_condition,
                    size=written_size, params=asdict(preset.weather),
                    target_split=TARGET_SPLIT, tuning_split=TUNING_SPLIT, streams=streams,
                    files=dict(sorted(files.items())))
    manifest_path = out / 'manifest.json'
    temporary = out / '.manifest.json.partial'
    temporary.write_text(json.dumps(manifest, indent=1) + '\n')
    os.replace(temporary, manifest_path)
    return manifest
