"""How well a code bank's shift detector finds the stream's true domain boundaries.

IMSE's spectral code bank (imse_seg/core/code_bank.py) writes one event per adapted batch to
``bank_events.jsonl`` (``batch_index``, ``detected``, the entries stored and retrieved). The stream's true
boundaries are where one segment (a condition in a round) ends and the next begins, known from the
per-segment results. A boundary is *hit* when a detection falls within ``window`` batches at or after it
(the detector sees the new domain only once its first batches arrive); a boundary with none is *missed*;
a detection that follows no boundary within the window is a *false alarm*. Framework-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .results import segment_label


@dataclass(frozen=True)
class Boundary:
    """A true boundary: segment ``after`` starts at batch ``batch`` after ``before``; ``detected_at``: the
    batch of the detection matched to it (None: missed)."""
    batch: int
    before: str
    after: str
    detected_at: int | None = None


@dataclass(frozen=True)
class DetectionScore:
    """Per-boundary outcome plus the false alarms (batch indices)."""
    boundaries: list[Boundary]
    false_alarms: list[int] = field(default_factory=list)

    @property
    def hits(self) -> int:
        return sum(boundary.detected_at is not None for boundary in self.boundaries)

    @property
    def misses(self) -> int:
        return len(self.boundaries) - self.hits


def segment_boundaries(records: Sequence[Mapping[str, Any]], batch_size: int = 1) -> list[tuple[int, str, str]]:
    """``(first batch of the segment, previous segment, this segment)`` for every segment after the first.

    Batches are counted as the loop feeds them: every image the segment scored or skipped, in batches of
    ``batch_size`` that never span two segments (the last one of a segment may be short).
    """
    boundaries, batch = [], 0
    for previous, record in zip(records, records[1:]):
        batch += -(-(previous['num_images'] + previous.get('num_skipped', 0)) // batch_size)
        boundaries.append((batch, label(previous), label(record)))
    return boundaries


def label(record: Mapping[str, Any]) -> str:
    """``night r2``: a segment's condition and round."""
    return f'{segment_label(record["key"])} r{record["key"].get("round", 1)}'


def score_detections(events: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]],
                     window: int = 5, batch_size: int = 1) -> DetectionScore:
    """Match the ``detected`` events to the true boundaries of the stream ``records`` describe (streamed in
    batches of ``batch_size``)."""
    if window < 1:
        raise ValueError(f'window must be at least 1 batch, got {window}')
    detections = sorted(event['batch_index'] for event in events if event.get('detected'))
    unmatched = list(detections)
    boundaries = []
    for batch, before, after in segment_boundaries(records, batch_size):
        hit = next((d for d in unmatched if batch <= d < batch + window), None)
        if hit is not None:
            unmatched.remove(hit)
        boundaries.append(Boundary(batch, before, after, hit))
    return DetectionScore(boundaries, unmatched)


def format_detections(score: DetectionScore, max_alarms: int = 20) -> str:
    """A markdown table, one row per boundary, then the totals and the first ``max_alarms`` false alarms."""
    lines = ['| boundary | first batch | detected at |', '| --- | ---: | ---: |']
    for boundary in score.boundaries:
        found = '-' if boundary.detected_at is None else str(boundary.detected_at)
        lines.append(f'| {boundary.before} -> {boundary.after} | {boundary.batch} | {found} |')
    shown = score.false_alarms[:max_alarms]
    alarms = ', '.join(map(str, shown)) or 'none'
    if len(score.false_alarms) > len(shown):
        alarms += f', ... {len(score.false_alarms) - len(shown)} more'
    return ('\n'.join(lines) + f'\n\n{score.hits} of {len(score.boundaries)} boundaries detected, '
            f'{score.misses} missed; false alarms: {len(score.false_alarms)} (batches: {alarms}).')
