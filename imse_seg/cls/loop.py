"""The classification stream loop: predict-and-adapt batch by batch, accuracy per (corruption, severity, round).

A segment's row is written (atomically, by the shared :class:`~imse_seg.reporting.ResultsWriter`) as soon
as its last sample has been scored, so a continual stream writes one row per corruption as it goes, a
gradual one pools the two visits of a severity, and a mixed one writes all rows at the end of each round.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from imse_seg.reporting import ResultsWriter

from .adaptive_classifier import AdaptiveClassifier
from .data import StreamDataset, collate_readable
from .streams import Block

logger = logging.getLogger('imse_seg.cls')
KEY_FIELDS = ('corruption', 'severity', 'round')


@dataclass
class SegmentTally:
    """Running counts of one segment: scored, correct and skipped samples, and when it started."""
    expected: int
    started: float = field(default_factory=time.perf_counter)
    scored: int = 0
    correct: int = 0
    skipped: int = 0

    @property
    def done(self) -> bool:
        return self.scored + self.skipped == self.expected

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / self.scored if self.scored else float('nan')


def run_stream(classifier: AdaptiveClassifier, blocks: Sequence[Block], transform: Callable,
               writer: ResultsWriter, batch_size: int, load: Callable[[str], Image.Image], num_workers: int = 0,
               checkpoint: Callable[[int, dict], None] | None = None, start: int = 0,
               tallies: dict[tuple, SegmentTally] | None = None) -> None:
    """Stream ``blocks`` in order through ``classifier`` (images read by ``load``); write each segment's
    accuracy when it completes. The method is told each batch's round and block (its event log records them).

    After each block, ``checkpoint(next block index, open tallies)`` may save the stream; a resumed stream
    starts at block ``start`` with the ``tallies`` of segments that were still open there.
    """
    expected = Counter(sample.key for block in blocks for sample in block.samples)
    tallies = {} if tallies is None else tallies
    sizes = [-(-len(block.samples) // batch_size) for block in blocks]
    progress = tqdm(total=sum(sizes), initial=sum(sizes[:start]), desc='stream', unit='batch',
                    dynamic_ncols=True)
    for block_index, block in enumerate(blocks):
        if block_index < start:
            continue
        classifier.start_segment(block.name)
        loader = DataLoader(StreamDataset(block.samples, transform, load), batch_size=batch_size, shuffle=False,
                            num_workers=num_workers, collate_fn=collate_readable)
        for batch in loader:
            finished = []
            for unreadable, index in batch.unreadable:
                logger.warning('skipped unreadable image %s: %s', unreadable.path, unreadable.reason)
                key = block.samples[index].key
                tally = tallies.setdefault(key, SegmentTally(expected[key]))
                tally.skipped += 1
                finished.append(key)
            if batch.inputs is not None:
                classifier.method.locate(dict(round=block.samples[0].key[2], segment=block.name))
                hits = (classifier(batch.inputs).argmax(1) == batch.labels).tolist()
                for index, hit in zip(batch.indices, hits):
                    key = block.samples[index].key
                    tally = tallies.setdefault(key, SegmentTally(expected[key]))
                    tally.scored += 1
                    tally.correct += int(hit)
                    finished.append(key)
            for key in dict.fromkeys(finished):
                if tallies[key].done:
                    _write(writer, key, tallies.pop(key))
            progress.update(1)
            progress.set_postfix_str(f'{block.name} r{block.samples[0].key[2]}')
        if checkpoint is not None:
            checkpoint(block_index + 1, tallies)
    progress.close()


def _write(writer: ResultsWriter, key: tuple, tally: SegmentTally) -> None:
    writer.add(dict(zip(KEY_FIELDS, key)), {'accuracy': tally.accuracy, 'error': 100.0 - tally.accuracy},
               num_images=tally.scored, num_skipped=tally.skipped, seconds=time.perf_counter() - tally.started)
    record = writer.records[-1]
    logger.info('%s/%s round %s: accuracy %.1f%% (%d images, %d skipped)', *key, tally.accuracy,
                record['num_images'], record['num_skipped'])
