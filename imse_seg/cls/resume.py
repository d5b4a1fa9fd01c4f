"""The classification stream's checkpoint: saved after every block, so ``--resume`` continues a stopped run.

It holds what the next block needs to go on exactly as an uninterrupted run: the model's and the method's
state, the random generators, the results so far and the tallies of segments still open (a gradual stream
pools two visits of a severity). It reuses the segmentation path's framework-free file format
(:mod:`imse_seg.seg.engine.stream_checkpoint`: atomic writes, a fingerprint of the run that a checkpoint
of another config, model or source checkpoint fails).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from imse_seg.reporting import ResultsWriter
from imse_seg.third_party import resolve
from imse_seg.seg.engine.stream_checkpoint import (STREAM_CHECKPOINT, SegmentProgress, StreamPosition,
                                                   fingerprint, load_stream_checkpoint, rng_state,
                                                   save_stream_checkpoint, set_rng_state)

from .adaptive_classifier import AdaptiveClassifier
from .loop import SegmentTally


class ClassificationCheckpoint:
    """Saves and loads the stream state of one classification run in ``work_dir``."""

    def __init__(self, work_dir: str | Path, cfg: Mapping[str, Any], model: nn.Module) -> None:
        self.path = Path(work_dir) / STREAM_CHECKPOINT
        parts = {name: cfg.get(name) for name in ('model', 'transform', 'data', 'stream', 'method', 'seed')}
        source = cfg['model'].get('checkpoint')
        self.fingerprint = fingerprint(parts, model, str(resolve(source)) if source else None)

    def save(self, classifier: AdaptiveClassifier, writer: ResultsWriter, next_block: int,
             tallies: dict[tuple, SegmentTally]) -> None:
        save_stream_checkpoint(self.path, fingerprint=self.fingerprint, position=StreamPosition(segment=next_block),
                               progress=SegmentProgress(), model=classifier.model.state_dict(),
                               method=classifier.method.state_dict(), records=writer.records, rng=rng_state(),
                               tallies=[[list(key), asdict(tally)] for key, tally in tallies.items()])

    def load(self, classifier: AdaptiveClassifier, writer: ResultsWriter) -> tuple[int, dict[tuple, SegmentTally]]:
        """Load the saved state into ``classifier`` and ``writer``; return the next block and open tallies."""
        checkpoint = load_stream_checkpoint(self.path, self.fingerprint)
        classifier.model.load_state_dict(checkpoint['model'])
        classifier.method.load_state_dict(checkpoint['method'])
        writer.reset(checkpoint['records'])
        set_rng_state(checkpoint['rng'])
        tallies = {tuple(key): SegmentTally(**tally) for key, tally in checkpoint['tallies']}
        return checkpoint['position'].segment, tallies
