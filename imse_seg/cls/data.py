"""Corruption data sources, listed and read for a stream; a config's ``data.source`` picks one.

- :class:`CorruptionFolders`: ImageNet-C folders, ``<root>/<corruption>/<severity>/<class>/<image>``;
- :class:`CorruptionArrays`: CIFAR-10-C / CIFAR-100-C arrays as RobustBench reads them,
  ``<root>/<corruption>.npy`` (severities 1-5 stacked, N images each) and ``<root>/labels.npy``;
- :class:`CleanFolder`: one ``<root>/<class>/<image>`` folder of uncorrupted images, as the segment
  ``clean``/0 (the source model's own accuracy).

Each is built with the (corruption, severity) folders of the stream, which it checks before any compute (a
missing one is an error that names it and the expected layout); calling it lists a folder's samples as
(item, label), and ``load(item)`` reads one image. Images are read with torchvision's PIL loader; one
that cannot be decoded is not fatal: it becomes an *unreadable* marker that :func:`collate_readable`
leaves out of the batch, and the stream loop counts and reports it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Protocol, Sequence

import numpy as np
from mmengine.registry import Registry
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, default_collate
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, make_dataset

from imse_seg.errors import ConfigError
from imse_seg.third_party import resolve

from .streams import Sample

DATA_SOURCES = Registry('cls_data_source', scope='imse_seg', locations=['imse_seg.cls.data'])
LAYOUT = '<root>/<corruption>/<severity>/<class>/<image>'
ARRAY_LAYOUT = '<root>/<corruption>.npy (severities 1-5 stacked) and <root>/labels.npy'
CLEAN = ('clean', 0)
"""The (corruption, severity) key of uncorrupted images."""


class DataSource(Protocol):
    """What a stream reads: the class names, a folder's (item, label) samples, and an item's image."""
    classes: list[str]

    def __call__(self, corruption: str, severity: int) -> list[tuple[str, int]]: ...

    def load(self, item: str) -> Image.Image: ...


def build_data_source(cfg: Mapping[str, Any], folders: Sequence[tuple[str, int]]) -> DataSource:
    """The registered source ``cfg`` (e.g. ``dict(type='CorruptionArrays', root=...)``) for ``folders``."""
    return DATA_SOURCES.build(dict(cfg), default_args=dict(folders=folders))


@DATA_SOURCES.register_module()
class CorruptionFolders:
    """The (corruption, severity) folders under ``root``, checked up front; call one to list its samples."""

    def __init__(self, root: str | Path, folders: Sequence[tuple[str, int]]) -> None:
        self.root = resolve(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f'ImageNet-C root {self.root} does not exist (expected layout {LAYOUT})')
        missing = [str(self.path(c, s)) for c, s in folders if not self.path(c, s).is_dir()]
        if missing:
            raise FileNotFoundError(f'{len(missing)} stream folder(s) missing under {self.root} (expected '
                                    f'layout {LAYOUT}): {", ".join(missing[:5])}')
        self.classes = self._classes(folders)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}

    def path(self, corruption: str, severity: int) -> Path:
        return self.root / corruption / str(severity)

    def _classes(self, folders: Sequence[tuple[str, int]]) -> list[str]:
        per_folder = {self.path(c, s): sorted(entry.name for entry in self.path(c, s).iterdir() if entry.is_dir())
                      for c, s in folders}
        first, classes = next(iter(per_folder.items()))
        if not classes:
            raise FileNotFoundError(f'{first} has no class folders (expected layout {LAYOUT})')
        for folder, names in per_folder.items():
            if names != classes:
                extra, lacking = sorted(set(names) - set(classes)), sorted(set(classes) - set(names))
                raise ValueError(f'{folder} has other class folders than {first}: extra {extra[:5]}, '
                                 f'missing {lacking[:5]}')
        return classes

    def __call__(self, corruption: str, severity: int) -> list[tuple[str, int]]:
        folder = self.path(corruption, severity)
        try:
            return make_dataset(str(folder), self.class_to_idx, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as error:
            raise FileNotFoundError(f'{folder}: {error}') from error

    def load(self, item: str) -> Image.Image:
        return default_loader(item)


@DATA_SOURCES.register_module()
class CleanFolder:
    """The uncorrupted images of ``root`` (``<root>/<class>/<image>``) as the single folder ``clean``/0.

    ``classes``: the class names in label order (default: the sorted folder names, torchvision's
    ImageFolder convention).
    """

    def __init__(self, root: str | Path, folders: Sequence[tuple[str, int]],
                 classes: Sequence[str] | None = None) -> None:
        self.root = resolve(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f'clean image folder {self.root} does not exist (expected <root>/<class>/'
                                    '<image>)')
        other = [f'{c}/{s}' for c, s in folders if (c, s) != CLEAN]
        if other:
            raise ValueError(f'{self.root} holds clean images only (stream folder clean/0), the stream asks '
                             f'for {", ".join(other[:5])}')
        found = sorted(entry.name for entry in self.root.iterdir() if entry.is_dir())
        self.classes = list(classes) if classes is not None else found
        missing = sorted(set(self.classes) - set(found))
        if missing:
            raise FileNotFoundError(f'{self.root} lacks the class folders {missing[:5]}')
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}

    def __call__(self, corruption: str, severity: int) -> list[tuple[str, int]]:
        return make_dataset(str(self.root), self.class_to_idx, extensions=IMG_EXTENSIONS)

    def load(self, item: str) -> Image.Image:
        return default_loader(item)


@DATA_SOURCES.register_module()
class CorruptionArrays:
    """CIFAR-10-C-style arrays (RobustBench's layout): ``<root>/<corruption>.npy`` of shape
    (5 N, H, W, 3) uint8, severity s in rows (s - 1) N ... s N - 1, and ``<root>/labels.npy`` (5 N,).

    The arrays are memory-mapped (a 50,000-image file is 154 MB); an item is ``<corruption>:<row>``.
    ``images_per_severity`` keeps n images of each severity, evenly spaced (every N/n-th: class-balanced
    in the class-sorted files that tools/make_cifar10c.py writes as in the original's random order), for a
    shorter stream;
    ``classes``: the class names in label order (default: ``0`` ... ``K - 1`` for the K labels found).
    """

    def __init__(self, root: str | Path, folders: Sequence[tuple[str, int]],
                 images_per_severity: int | None = None, classes: Sequence[str] | None = None) -> None:
        self.root = resolve(root)
        labels_path = self.root / 'labels.npy'
        missing = [str(path) for path in [labels_path, *(self.root / f'{c}.npy' for c in dict.fromkeys(
            c for c, _ in folders))] if not path.is_file()]
        if missing:
            raise FileNotFoundError(f'{len(missing)} array file(s) missing (expected layout {ARRAY_LAYOUT}; '
                                    f'tools/make_cifar10c.py writes it): {", ".join(missing[:5])}')
        self.labels = np.load(labels_path)
        if len(self.labels) % 5:
            raise ValueError(f'{labels_path} holds {len(self.labels)} labels, not 5 severities x N images')
        self.per_severity = len(self.labels) // 5
        bad = [f'{c}/{s}' for c, s in folders if s not in range(1, 6)]
        if bad:
            raise ConfigError(f'{self.root}: severities are 1-5, the stream asks for {", ".join(bad[:5])}')
        self.images = {c: self._open(c) for c in dict.fromkeys(c for c, _ in folders)}
        self.count = self.per_severity if images_per_severity is None else min(images_per_severity,
                                                                                self.per_severity)
        self.classes = list(classes) if classes is not None else [str(k) for k in range(int(self.labels.max()) + 1)]

    def _open(self, corruption: str) -> np.ndarray:
        path = self.root / f'{corruption}.npy'
        images = np.load(path, mmap_mode='r')
        if images.shape[0] != len(self.labels) or images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f'{path} is {images.dtype} {images.shape}, expected uint8 ({len(self.labels)}, H, W, '
                             '3) to match labels.npy')
        return images

    def __call__(self, corruption: str, severity: int) -> list[tuple[str, int]]:
        start = (severity - 1) * self.per_severity
        rows = start + np.arange(self.count) * self.per_severity // self.count
        return [(f'{corruption}:{row}', int(self.labels[row])) for row in rows.tolist()]

    def load(self, item: str) -> Image.Image:
        corruption, row = item.rsplit(':', 1)
        return Image.fromarray(np.asarray(self.images[corruption][int(row)]))


class Unreadable(NamedTuple):
    """A sample whose image could not be read, and why."""
    path: str
    reason: str


class StreamDataset(Dataset):
    """The samples of one stream block, read by ``load`` and transformed; an undecodable image yields
    :class:`Unreadable`."""

    def __init__(self, samples: Sequence[Sample], transform: Callable,
                 load: Callable[[str], Image.Image] = default_loader) -> None:
        self.samples = samples
        self.transform = transform
        self.load = load

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int] | tuple[Unreadable, int]:
        sample = self.samples[index]
        try:
            return self.transform(self.load(sample.path)), sample.label, index
        except Exception as error:  # PIL raises several types for truncated or foreign files
            return Unreadable(sample.path, f'{type(error).__name__}: {error}'), index


class Batch(NamedTuple):
    """The readable samples of a batch (inputs, labels, their indices in the block) and the unreadable."""
    inputs: Tensor | None
    labels: Tensor | None
    indices: list[int]
    unreadable: list[tuple[Unreadable, int]]


def collate_readable(items: Sequence[tuple]) -> Batch:
    """Stack the readable items; list the unreadable ones apart (with their block indices)."""
    unreadable = [item for item in items if isinstance(item[0], Unreadable)]
    readable = [item for item in items if not isinstance(item[0], Unreadable)]
    if not readable:
        return Batch(None, None, [], unreadable)
    inputs, labels, indices = default_collate(readable)
    return Batch(inputs, labels, indices.tolist(), unreadable)
