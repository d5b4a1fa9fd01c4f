"""ImageNet-C folder data: ``<root>/<corruption>/<severity>/<class>/<image>``, listed and read for a stream.

Every folder a stream needs is checked before any compute (a missing one is an error that names it and the
expected layout), and all must hold the same class folders, whose sorted names give the class indices
(the ImageNet-C convention: the sorted WordNet ids). Images are read with torchvision's PIL loader; one
that cannot be decoded is not fatal: it becomes an *unreadable* marker that :func:`collate_readable`
leaves out of the batch, and the stream loop counts and reports it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from torch import Tensor
from torch.utils.data import Dataset, default_collate
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, make_dataset

from .streams import Sample

LAYOUT = '<root>/<corruption>/<severity>/<class>/<image>'


class CorruptionFolders:
    """The (corruption, severity) folders under ``root``, checked up front; call one to list its samples."""

    def __init__(self, root: str | Path, folders: Sequence[tuple[str, int]]) -> None:
        self.root = Path(root)
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


class Unreadable(NamedTuple):
    """A sample whose image could not be read, and why."""
    path: str
    reason: str


class StreamDataset(Dataset):
    """The samples of one stream block, transformed; an undecodable image yields :class:`Unreadable`."""

    def __init__(self, samples: Sequence[Sample], transform: Callable) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int] | tuple[Unreadable, int]:
        sample = self.samples[index]
        try:
            return self.transform(default_loader(sample.path)), sample.label, index
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
