"""Domain-aware spectral code bank: remember each condition's code and start from it when it returns.

IMSE's third part (methods.md 1.4). Once per batch, before the adaptation step, :meth:`SpectralCodeBank.
observe` receives the batch's features (the patch-embedding output of a frozen copy of the backbone),
measures the symmetric KL distance from their per-channel statistics to the running estimate of the current
domain, and declares a shift when it exceeds the threshold. On a shift the bank stores the current spectral
code with the finished domain's statistics (and, if asked, the optimiser state) as a new entry, loads the
code retrieved for the new batch into the spectral layers in place, resets the running statistics and, as
configured, the optimiser. Entry 0 is the source: the unadapted code s0 with statistics of source images,
or of the stream's first batches when none are given.

Retrieval is a strategy object: :class:`TopOneRetrieval` (official default) or :class:`MixtureRetrieval`.
The official code has no rule for a condition unlike every stored one; :class:`NewDomainRule` adds one
(off by default). The official code also appends an entry at every shift, so a stream that repeats its
conditions grows the bank without bound and, when the same images return, ties between a condition's
entries make top-1 retrieve its first-round code forever; ``refresh_entries`` (off by default) stores a
returning condition's code back into the entry it was retrieved from instead.

Every batch yields a :class:`BankEvent`; shifts are also logged on the
``imse_seg.code_bank`` logger. The whole bank (entries, running estimate, threshold, counters, events and
the layers' current code) saves to one file.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from os import PathLike
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import torch
from torch import Tensor

from .domain_stats import (DomainStatistics, RunningStatistics, ThresholdCalibration, channel_statistics,
                           pool_statistics, symmetric_kl)
from .spectral import SpectralLayer
from .spectral_code import (SpectralCode, check_code_matches, initial_spectral_code, load_spectral_code,
                            spectral_code)

logger = logging.getLogger('imse_seg.code_bank')

STATE_VERSION = 1


@dataclass(frozen=True)
class RetrievedCode:
    """A retrieval's result: the code to load, the nearest (or heaviest) entry, and mixture weights.

    ``weights`` is None when ``code`` is exactly the code of entry ``entry`` (top-1).
    """
    code: SpectralCode
    entry: int
    weights: Tensor | None = None


RetrievalStrategy = Callable[[Tensor, Sequence[SpectralCode], SpectralCode], RetrievedCode]


@dataclass(frozen=True)
class TopOneRetrieval:
    """Load the code of the entry nearest to the new batch (official default, methods.md 1.4)."""

    def __call__(self, distances: Tensor, codes: Sequence[SpectralCode],
                 source_code: SpectralCode) -> RetrievedCode:
        entry = int(torch.argmin(distances))
        return RetrievedCode({name: s.clone() for name, s in codes[entry].items()}, entry)


@dataclass(frozen=True)
class MixtureRetrieval:
    """Softmax mixture of all entries around the source: ``s = s0 + sum_i w_i (s_i - s0)`` (methods.md 1.4).

    ``w = softmax(-d / temperature)`` over the distances d of the new batch to every entry (official
    temperature 1). The source entry contributes nothing, so its weight pulls the code towards s0. As the
    temperature goes to 0 the weights become one-hot on the nearest entry: top-1. The sum is taken in
    float64 and cast back to the codes' dtype.
    """
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f'MixtureRetrieval: temperature must be > 0, got {self.temperature}')

    def __call__(self, distances: Tensor, codes: Sequence[SpectralCode],
                 source_code: SpectralCode) -> RetrievedCode:
        weights = torch.softmax(-distances.to(torch.float64) / self.temperature, dim=0)
        mixed = {}
        for name, s0 in source_code.items():
            base = s0.to(torch.float64)
            delta = sum(float(w) * (code[name].to(torch.float64) - base) for w, code in zip(weights, codes))
            mixed[name] = (base + delta).to(s0.dtype)
        return RetrievedCode(mixed, int(torch.argmax(weights)), weights)


@dataclass(frozen=True)
class NewDomainRule:
    """Treat a shift as a new condition when no entry is within ``threshold`` of the new batch.

    Not in the official code, which always loads the nearest entry (methods.md 1.4). When the nearest
    entry's distance exceeds ``threshold`` (None: the bank's shift threshold, i.e. the new batch is as far
    from every entry as a shift is from the running estimate), nothing is retrieved and adaptation goes
    on from ``start_from``: ``'current'`` keeps the code in the layers, ``'source'`` loads s0.
    """
    start_from: Literal['current', 'source'] = 'current'
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.start_from not in ('current', 'source'):
            raise ValueError(f"NewDomainRule: start_from must be 'current' or 'source', got "
                             f'{self.start_from!r}')


@dataclass
class BankEntry:
    """One remembered domain: its code, its statistics, optionally its optimiser state, and when it was
    stored (the batch index of the shift that ended it; None for the source entry)."""
    code: SpectralCode
    statistics: DomainStatistics
    optimizer_state: dict | None = None
    batch_index: int | None = None


@dataclass
class BankEvent:
    """What the bank did with one batch, for the evaluation loop to write out (``dataclasses.asdict``).

    ``distance`` is the symmetric KL from the batch to the running estimate (None when there is none
    yet). On a detected shift, ``stored`` is the index of the entry just stored, ``entry_distances`` the
    batch's distance to every entry, ``retrieved`` the entry loaded (for a mixture, the heaviest one, with
    ``weights``); ``detected`` with ``retrieved`` None means the new-domain rule kept the code or loaded s0;
    ``refreshed`` means ``stored`` is an existing entry whose code was replaced (``refresh_entries``).
    ``where`` is the batch's place in the stream as the task loop gave it (e.g. round, segment, images).
    """
    batch_index: int
    distance: float | None
    detected: bool = False
    stored: int | None = None
    retrieved: int | None = None
    weights: list[float] | None = None
    entry_distances: list[float] | None = None
    refreshed: bool = False
    where: dict | None = None


class SpectralCodeBank:
    """Domain-aware spectral code bank over ``layers`` (IMSE, methods.md 1.4).

    Per batch, call :meth:`observe` with the frozen feature extractor's output before the adaptation
    step. ``channel_dim`` gives the features' channel axis (-1 for B x N x C tokens, 1 for B x C x H x W
    maps); batches with fewer than ``full_batch_size`` samples (dim 0) are reported but neither update
    the statistics nor trigger a shift. Statistics follow an EMA with weight ``momentum`` per batch.

    ``threshold`` is a fixed shift threshold or a :class:`ThresholdCalibration` (default) applied to the
    distances of the first ``warmup_batches`` full batches. When no :meth:`set_source_statistics` came
    before the warm-up ended, entry 0 is s0 with the pooled statistics of those batches (official
    fallback; that entry then describes the first test condition, which top-1 may later prefer over the
    code learned for it). The warm-up runs only while one of the two is missing, and no shift is detected
    during it: the stream's first ``warmup_batches`` full batches must come from one condition.

    ``optimizer`` (the one holding the moments; for SAM, its base optimiser, whose ``state`` and
    ``param_groups`` objects SAM shares and which therefore are loaded in place) is handled on each shift:
    with ``store_optimizer_state`` the new entry keeps a copy of its per-parameter state; then with
    ``reset_optimizer`` (official) its state is cleared (``optimizer.state.clear()``: for Adam the step
    counts and both moment estimates go, ``param_groups`` and the learning rate stay, and the next step
    starts afresh); then, with ``store_optimizer_state``, a top-1 retrieval of an entry that has a stored
    state loads that state.

    ``refresh_entries`` (not in the official code): when the condition that ends began from entry k's code
    (top-1 retrieval of k, or, for the first condition, a fallback entry 0 built from its own batches) and
    its statistics are still within the threshold of entry k's, its code replaces entry k's (statistics
    kept) instead of being appended. Each condition then keeps its latest code, the bank holds one entry
    per condition, and a true source entry (:meth:`set_source_statistics`) is never replaced. Retrieval
    mixtures and the new-domain rule use s0 from the layers, not entry 0, so a refreshed entry 0 is safe.
    """

    def __init__(self, layers: Sequence[SpectralLayer], *, channel_dim: int, full_batch_size: int,
                 threshold: float | ThresholdCalibration = ThresholdCalibration(),
                 retrieval: RetrievalStrategy = TopOneRetrieval(), new_domain: NewDomainRule | None = None,
                 warmup_batches: int = 8, momentum: float = 0.2,
                 optimizer: torch.optim.Optimizer | None = None, reset_optimizer: bool = True,
                 store_optimizer_state: bool = False, refresh_entries: bool = False) -> None:
        self.layers = list(layers)
        if not self.layers:
            raise ValueError('SpectralCodeBank: no spectral layers given')
        if full_batch_size < 1:
            raise ValueError(f'SpectralCodeBank: full_batch_size must be >= 1, got {full_batch_size}')
        calibrating = isinstance(threshold, ThresholdCalibration)
        if warmup_batches < (2 if calibrating else 1):
            raise ValueError(f'SpectralCodeBank: warmup_batches={warmup_batches} is too few'
                             + (' to calibrate the threshold (the first batch has no distance; need >= 2)'
                                if calibrating else ' (need >= 1)'))
        if store_optimizer_state and optimizer is None:
            raise ValueError('SpectralCodeBank: store_optimizer_state needs an optimizer')
        self.channel_dim = channel_dim
        self.full_batch_size = full_batch_size
        self.calibration = threshold if calibrating else None
        self._fixed_threshold = None if calibrating else float(threshold)
        self.threshold: float | None = self._fixed_threshold
        self.retrieval = retrieval
        self.new_domain = new_domain
        self.warmup_batches = warmup_batches
        self.optimizer = optimizer
        self.reset_optimizer = reset_optimizer
        self.store_optimizer_state = store_optimizer_state
        self.refresh_entries = refresh_entries
        self.active_entry: int | None = None
        self.source_given = False
        self.running = RunningStatistics(momentum)
        self.entries: list[BankEntry] = []
        self.events: list[BankEvent] = []
        self.full_batches = 0
        self._warmup_parts: list[DomainStatistics] = []
        self._warmup_counts: list[int] = []
        self._warmup_distances: list[float] = []

    @property
    def warming_up(self) -> bool:
        """True while the threshold or the source entry is still to be derived from the first batches."""
        return self.threshold is None or not self.entries

    @torch.no_grad()
    def set_source_statistics(self, features: Tensor | Iterable[Tensor]) -> None:
        """Create entry 0 from source features: s0 with their pooled statistics (methods.md 1.4).

        ``features``: one tensor or an iterable of batches (same channel layout as the stream), pooled
        exactly; batches are reduced as they come, so a loader of many source images is fine.
        """
        if self.entries:
            raise ValueError('SpectralCodeBank: the source entry already exists')
        batches = [features] if isinstance(features, Tensor) else features
        parts, counts = [], []
        for batch in batches:
            stats = channel_statistics(batch, channel_dim=self.channel_dim)
            self._check_channels(stats)
            parts.append(stats)
            counts.append(batch.numel() // stats.channels)
        self.entries.append(BankEntry(initial_spectral_code(self.layers), pool_statistics(parts, counts)))
        self.source_given = True
        if not self.warming_up:  # given mid-warm-up with a fixed threshold: nothing left to collect
            self._warmup_parts, self._warmup_counts, self._warmup_distances = [], [], []

    @torch.no_grad()
    def observe(self, features: Tensor, batch_index: int, where: Mapping[str, Any] | None = None) -> BankEvent:
        """Account for one batch before its adaptation step; on a shift, load the retrieved code.

        ``where`` (the batch's place in the stream) is kept in the event, for the event log.
        """
        stats = channel_statistics(features, channel_dim=self.channel_dim)
        self._check_channels(stats)
        running = self.running.value
        distance = None if running is None else float(symmetric_kl(stats, running))
        full = features.shape[0] >= self.full_batch_size
        event = BankEvent(batch_index, distance)
        if full and self.warming_up:
            self._warmup_parts.append(stats)
            self._warmup_counts.append(features.numel() // stats.channels)
            if distance is not None:
                self._warmup_distances.append(distance)
        elif full and distance is not None and distance > self.threshold:
            event = self._shift(stats, distance, batch_index)
        if full:
            self.running.update(stats)
            self.full_batches += 1
            if self.warming_up and len(self._warmup_parts) >= self.warmup_batches:
                self._finish_warmup()
        event.where = None if where is None else dict(where)
        self.events.append(event)
        return event

    def _check_channels(self, stats: DomainStatistics) -> None:
        known = self.running.value
        if known is None and self.entries:
            known = self.entries[0].statistics
        if known is not None and known.channels != stats.channels:
            raise ValueError(f'SpectralCodeBank: features have {stats.channels} channels along dim '
                             f'{self.channel_dim}, the bank holds statistics over {known.channels}')

    def _finish_warmup(self) -> None:
        n = len(self._warmup_parts)
        if not self.entries:
            source = pool_statistics(self._warmup_parts, self._warmup_counts)
            self.entries.append(BankEntry(initial_spectral_code(self.layers), source))
            self.active_entry = 0
            logger.info('source entry 0: s0 with the statistics of the first %d full batches', n)
        if self.threshold is None:
            self.threshold = self.calibration(self._warmup_distances)
            logger.info('shift threshold calibrated to %.4g from %d in-domain distances (%s)',
                        self.threshold, len(self._warmup_distances), self.calibration)
        self._warmup_parts, self._warmup_counts, self._warmup_distances = [], [], []

    def _shift(self, stats: DomainStatistics, distance: float, batch_index: int) -> BankEvent:
        snapshot = None
        if self.store_optimizer_state:
            snapshot = copy.deepcopy(self.optimizer.state_dict()['state'])
        stored = self._entry_to_refresh()
        refreshed = stored is not None
        if refreshed:
            entry = self.entries[stored]
            entry.code, entry.optimizer_state = spectral_code(self.layers), snapshot
            entry.batch_index = batch_index
        else:
            self.entries.append(BankEntry(spectral_code(self.layers), self.running.value, snapshot,
                                          batch_index))
            stored = len(self.entries) - 1
        d = symmetric_kl(stats, DomainStatistics.stack([e.statistics for e in self.entries]))
        nearest = int(torch.argmin(d))
        rule = self.new_domain
        limit = None if rule is None else (self.threshold if rule.threshold is None else rule.threshold)
        event = BankEvent(batch_index, distance, True, stored, entry_distances=d.tolist(),
                          refreshed=refreshed)
        head = (f'batch {batch_index}: shift detected (d={distance:.4g} > {self.threshold:.4g}); '
                f'{"refreshed" if refreshed else "stored"} entry {stored}')
        if limit is not None and float(d[nearest]) > limit:
            if rule.start_from == 'source':
                load_spectral_code(self.layers, initial_spectral_code(self.layers))
            retrieved = None
            logger.info('%s; new domain: nearest entry %d at %.4g > %.4g, adapting from the %s code',
                        head, nearest, float(d[nearest]), limit, rule.start_from)
        else:
            retrieved = self.retrieval(d, [e.code for e in self.entries], initial_spectral_code(self.layers))
            load_spectral_code(self.layers, retrieved.code)
            event.retrieved = retrieved.entry
            if retrieved.weights is not None:
                event.weights = retrieved.weights.tolist()
            logger.info('%s; retrieved %s entry %d (distances to entries: %s)', head,
                        'top-1' if retrieved.weights is None else 'mixture, heaviest', retrieved.entry,
                        ', '.join(f'{x:.3g}' for x in event.entry_distances))
        self._shift_optimizer(retrieved)
        self.active_entry = retrieved.entry if retrieved is not None and retrieved.weights is None else None
        self.running.reset()
        return event

    def _entry_to_refresh(self) -> int | None:
        """The entry the ending condition's code goes back into (``refresh_entries``), or None to append."""
        k = self.active_entry
        if not self.refresh_entries or k is None or (k == 0 and self.source_given):
            return None
        if float(symmetric_kl(self.running.value, self.entries[k].statistics)) > self.threshold:
            return None
        return k

    def _shift_optimizer(self, retrieved: RetrievedCode | None) -> None:
        if self.optimizer is None:
            return
        if self.reset_optimizer:
            self.optimizer.state.clear()
        if self.store_optimizer_state and retrieved is not None and retrieved.weights is None:
            state = self.entries[retrieved.entry].optimizer_state
            if state is not None:
                load_optimizer_state_in_place(self.optimizer, state)

    def state_dict(self) -> dict:
        """The whole bank as plain tensors, lists and dicts, plus the layers' current code."""
        return {
            'version': STATE_VERSION,
            'entries': [{'code': {k: v.clone() for k, v in e.code.items()},
                         'statistics': e.statistics.state_dict(),
                         'optimizer_state': copy.deepcopy(e.optimizer_state),
                         'batch_index': e.batch_index} for e in self.entries],
            'running': self.running.state_dict(),
            'threshold': self.threshold,
            'full_batches': self.full_batches,
            'warmup': {'parts': [p.state_dict() for p in self._warmup_parts],
                       'counts': list(self._warmup_counts), 'distances': list(self._warmup_distances)},
            'events': [asdict(e) for e in self.events],
            'current_code': spectral_code(self.layers),
            'active_entry': self.active_entry,
            'source_given': self.source_given,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a bank (and load its current code into the layers); the constructor's options stay.

        Every code is checked against this bank's layers before anything changes; a mismatch raises
        ``ValueError`` naming the first mismatching layer. The threshold in effect is restored too (a state
        saved before calibration leaves this bank's own setting); set ``bank.threshold`` afterwards to seed
        a run whose features have another scale.
        """
        if state.get('version') != STATE_VERSION:
            raise ValueError(f'SpectralCodeBank: state version {state.get("version")!r}, expected '
                             f'{STATE_VERSION}')
        codes = [e['code'] for e in state['entries']] + [state['current_code']]
        for code in codes:
            try:
                check_code_matches(self.layers, code)
            except ValueError as err:
                raise ValueError(f'SpectralCodeBank: the saved bank does not fit these layers: {err}') \
                    from err
        like = {layer.name: layer.singular_values for layer in self.layers}
        self.entries = [BankEntry({k: v.to(like[k]) for k, v in e['code'].items()},
                                  DomainStatistics.from_state_dict(e['statistics']),
                                  copy.deepcopy(e['optimizer_state']), e['batch_index'])
                        for e in state['entries']]
        self.running.load_state_dict(state['running'])
        self.threshold = self._fixed_threshold if state['threshold'] is None else state['threshold']
        self.full_batches = state['full_batches']
        warmup = state['warmup']
        self._warmup_parts = [DomainStatistics.from_state_dict(p) for p in warmup['parts']]
        self._warmup_counts = list(warmup['counts'])
        self._warmup_distances = list(warmup['distances'])
        self.events = [BankEvent(**e) for e in state['events']]
        self.active_entry = state.get('active_entry')
        self.source_given = state.get('source_given', False)
        load_spectral_code(self.layers, state['current_code'])

    def save(self, path: str | PathLike) -> None:
        torch.save(self.state_dict(), path)

    def load(self, path: str | PathLike) -> None:
        self.load_state_dict(torch.load(path, map_location='cpu', weights_only=True))


def load_optimizer_state_in_place(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load the per-parameter ``state`` (a ``state_dict()['state']``) into ``optimizer`` in place.

    ``Optimizer.load_state_dict`` replaces the optimiser's ``state`` and ``param_groups`` with new objects,
    which cuts them off from whoever shares them (SAM shares its base optimiser's: after a plain load,
    setting SAM's learning rate no longer reached the base step). Here torch's own loading (device and dtype
    casts) fills the new objects, whose contents then move into the old ones, which the optimiser keeps.
    The state is deep-copied first (``load_state_dict`` may alias same-device tensors), so steps never edit
    a stored entry.
    """
    live_state, live_groups = optimizer.state, optimizer.param_groups
    optimizer.load_state_dict({'state': copy.deepcopy(state),
                               'param_groups': optimizer.state_dict()['param_groups']})
    loaded_state, loaded_groups = optimizer.state, optimizer.param_groups
    live_state.clear()
    live_state.update(loaded_state)
    for live, loaded in zip(live_groups, loaded_groups, strict=True):
        live.update(loaded)
    optimizer.state, optimizer.param_groups = live_state, live_groups
