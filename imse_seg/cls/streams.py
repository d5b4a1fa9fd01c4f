"""The classification stream settings: which (corruption, severity) folders come in which order, in rounds.

A stream is a list of :class:`Block` s: stretches of samples that are batched on their own (a batch never
spans two blocks) and at whose start the method hears ``start_segment``. Each sample carries its
*segment key* ``{corruption, severity, round}``; accuracy is reported per key. Settings (CoTTA, SAR, RoTTA
protocols):

- continual: :class:`SequentialStream` over the 15 corruptions at severity 5, in the standard order;
- gradual: the same with ``severities=(1, 2, 3, 4, 5, 4, 3, 2, 1)`` per corruption (a severity met twice
  in a corruption is one segment: its two visits are pooled);
- recurring: ``rounds=N`` (the whole sequence N times; nothing is reset between rounds);
- mixed: :class:`MixedStream`, all corruptions' samples shuffled into one block per round;
- single-sample: any of them with batch size 1 (the data config);
- label shift: an ``order=dict(type='DirichletOrder', concentration=...)`` inside each block, or
  ``dict(type='ClassSortedOrder')`` (one class after another).

Components are registered in ``STREAMS`` and built from configs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from mmengine.registry import Registry

STREAMS = Registry('cls_stream', scope='imse_seg', locations=['imse_seg.cls.streams'])

IMAGENET_C_CORRUPTIONS = (
    'gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur', 'glass_blur', 'motion_blur',
    'zoom_blur', 'snow', 'frost', 'fog', 'brightness', 'contrast', 'elastic_transform', 'pixelate',
    'jpeg_compression')
"""The 15 ImageNet-C test corruptions in the order of the continual benchmark (CoTTA and followers)."""

GRADUAL_SEVERITIES = (1, 2, 3, 4, 5, 4, 3, 2, 1)


@dataclass(frozen=True)
class Sample:
    """One stream sample: its file, class index and segment key."""
    path: str
    label: int
    key: tuple[str, int, int]  # (corruption, severity, round)


@dataclass(frozen=True)
class Block:
    """A stretch of the stream batched on its own; ``name`` is what ``start_segment`` receives."""
    name: str
    samples: tuple[Sample, ...]


Folder = Callable[[str, int], Sequence[tuple[str, int]]]
"""Lists the (path, label) samples of one (corruption, severity) folder."""


@STREAMS.register_module()
class ShuffledOrder:
    """Uniformly shuffled samples: i.i.d. labels within a block (the usual ImageNet-C protocol)."""

    def __call__(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(len(labels))


@STREAMS.register_module()
class ClassSortedOrder:
    """Samples sorted by class (ties in source order): the harshest label shift, one class after another."""

    def __call__(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.argsort(labels, kind='stable')


@STREAMS.register_module()
class DirichletOrder:
    """Label-shifted order (non-i.i.d. classes over time, as in NOTE/RoTTA).

    Time is cut into ``slots`` equal slots; each class spreads its samples over them with proportions drawn
    from ``Dir(concentration * 1)``, and the stream visits the slots in order (shuffled within a slot).
    Small concentrations put each class in a few slots: long runs of one class, so the class distribution
    of a batch is far from uniform and keeps changing; a large one approaches :class:`ShuffledOrder`.
    """

    def __init__(self, concentration: float = 0.1, slots: int = 10) -> None:
        if concentration <= 0 or slots < 1:
            raise ValueError(f'DirichletOrder needs concentration > 0 and slots >= 1, got {concentration}, {slots}')
        self.concentration = concentration
        self.slots = slots

    def __call__(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        slot_of = np.empty(len(labels), dtype=np.int64)
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(self.slots, self.concentration))
            cuts = np.round(np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
            for slot, part in enumerate(np.split(members, cuts)):
                slot_of[part] = slot
        jitter = rng.random(len(labels))
        return np.lexsort((jitter, slot_of))


def _ordered(samples: list[Sample], order: Callable, rng: np.random.Generator) -> tuple[Sample, ...]:
    labels = np.array([sample.label for sample in samples], dtype=np.int64)
    return tuple(samples[i] for i in order(labels, rng))


def _build_order(order: Mapping | None) -> Callable:
    return STREAMS.build(dict(order)) if order is not None else ShuffledOrder()


@STREAMS.register_module()
class SequentialStream:
    """Corruption after corruption, each through ``severities``, the whole sequence ``rounds`` times.

    Continual: ``severities=(5,)``; gradual: :data:`GRADUAL_SEVERITIES`; recurring: ``rounds > 1``. Every
    visit of a folder is one block, with the samples in ``order`` (default shuffled, drawn afresh per
    visit from ``seed``).
    """

    def __init__(self, corruptions: Sequence[str] = IMAGENET_C_CORRUPTIONS, severities: Sequence[int] = (5,),
                 rounds: int = 1, order: Mapping | None = None, seed: int = 0) -> None:
        if rounds < 1 or not corruptions or not severities:
            raise ValueError('SequentialStream needs corruptions, severities and rounds >= 1')
        self.corruptions, self.severities = list(corruptions), list(severities)
        self.rounds, self.order, self.seed = rounds, _build_order(order), seed

    def folders(self) -> list[tuple[str, int]]:
        """The distinct (corruption, severity) folders the stream reads."""
        return list(dict.fromkeys((c, s) for c in self.corruptions for s in self.severities))

    def blocks(self, folder: Folder) -> list[Block]:
        rng = np.random.default_rng(self.seed)
        blocks = []
        for round_index in range(1, self.rounds + 1):
            for corruption in self.corruptions:
                for severity in self.severities:
                    key = (corruption, severity, round_index)
                    samples = [Sample(path, label, key) for path, label in folder(corruption, severity)]
                    blocks.append(Block(f'{corruption}/{severity}', _ordered(samples, self.order, rng)))
        return blocks


@STREAMS.register_module()
class MixedStream:
    """All corruptions at one severity shuffled together into a single block per round (SAR's mixed shifts)."""

    def __init__(self, corruptions: Sequence[str] = IMAGENET_C_CORRUPTIONS, severity: int = 5, rounds: int = 1,
                 order: Mapping | None = None, seed: int = 0) -> None:
        if rounds < 1 or not corruptions:
            raise ValueError('MixedStream needs corruptions and rounds >= 1')
        self.corruptions, self.severity = list(corruptions), severity
        self.rounds, self.order, self.seed = rounds, _build_order(order), seed

    def folders(self) -> list[tuple[str, int]]:
        return [(corruption, self.severity) for corruption in self.corruptions]

    def blocks(self, folder: Folder) -> list[Block]:
        rng = np.random.default_rng(self.seed)
        blocks = []
        for round_index in range(1, self.rounds + 1):
            samples = [Sample(path, label, (corruption, self.severity, round_index))
                       for corruption in self.corruptions
                       for path, label in folder(corruption, self.severity)]
            blocks.append(Block(f'mixed/{self.severity}', _ordered(samples, self.order, rng)))
        return blocks


def build_stream(cfg: Mapping) -> SequentialStream | MixedStream:
    """A stream setting from its config, e.g. ``dict(type='SequentialStream', severities=[5])``."""
    return STREAMS.build(dict(cfg))
