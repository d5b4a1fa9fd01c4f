"""mmseg's ``IoUMetric`` for a stream: per-class IoU kept, a running mIoU, faulty samples left out."""
from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from mmengine.logging import MMLogger, print_log
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS

from ..stream_outputs import segment_folder

FAULT = 'fault'
"""First element of the ``results`` entry that stands for a sample left out of the metric."""
FAULT_KINDS = ('bad_label', 'size_mismatch', 'non_finite_prediction')
"""What can make a sample unfit for scoring, as counted in the results files."""


@METRICS.register_module()
class StreamIoUMetric(IoUMetric):
    """``IoUMetric`` that keeps the per-class IoU of its last evaluation and reports a running mIoU.

    The reduction is mmseg's own (``compute_metrics``, gathered across ranks by ``evaluate``); this class
    also stores ``last_per_class_iou`` (class name -> IoU in percent, NaN for a class absent from both
    prediction and ground truth) so that results files can hold it, and offers :meth:`running_miou` over the
    images processed so far on this rank, for progress bars. A sample that cannot be scored is left out
    with a warning and counted by kind (:data:`FAULT_KINDS`) in ``last_faults``: a label map holding values
    outside ``[0, K)`` other than ``ignore_index`` (``bad_label``), a prediction whose size is not the
    label's, e.g. an image stored at another size than its label map (``size_mismatch``), and a sample the
    model marked ``fault`` (``non_finite_prediction``). Faults travel in ``results`` as ``('fault', kind)``
    entries, so they are gathered across ranks with the rest.

    With ``class_merge`` (``{merged class: [dataset class ids]}``, in the order the merged classes are
    reported) predictions and labels are both mapped many-to-one before scoring, e.g. a Cityscapes model's
    19 trainIds onto CamVid's 11 classes (truck, bus, train -> Car); the model still predicts, and adapts
    on, its own classes. Ids in no group are ignored, as ``ignore_index`` is; the reported classes (and
    ``dataset_meta['classes']``) are the merged ones.

    With ``output_dir`` (mmseg's: every prediction written as a label-index PNG, as ``tools/test.py --out``
    asks; here ``tools/adapt.py --out``), a stream's are written by round and segment, to
    ``output_dir/round_<r>/<segment>/<image stem>.png``: the continual loop tells the metric each segment
    it starts (:meth:`start_segment`); mmseg's flat ``output_dir/<image stem>.png`` would keep the last
    round's only. The maps hold the scored classes (the merged ones with ``class_merge``, ``ignore_index``
    where a class is in no group); a sample left out of the metric is not written.

    mmseg's per-class table, which its reduction logs, goes to the log at debug level only (one table per
    segment would flood a long stream; the continual loop logs the run's table once, at the end). The
    metric names stay unprefixed (``mIoU``): the results files and hooks key on them.
    """

    default_prefix = ''

    def __init__(self, class_merge: Mapping[str, Sequence[int]] | None = None, **kwargs) -> None:
        kwargs.setdefault('iou_metrics', ['mIoU'])
        super().__init__(**kwargs)
        self.class_merge = None if class_merge is None else {name: list(ids) for name, ids in class_merge.items()}
        self.merge_table: torch.Tensor | None = None
        self.last_per_class_iou: dict[str, float] = {}
        self.last_faults: Counter[str] = Counter()
        self.output_root = self.output_dir

    def start_segment(self, place: Mapping) -> None:
        """A stream segment begins at ``place`` (``dict(round=r, segment=name)``): its prediction maps, if
        written, go to its own folder under ``output_dir``."""
        if self.output_root is None:
            return
        folder = segment_folder(self.output_root, place)
        folder.mkdir(parents=True, exist_ok=True)
        self.output_dir = str(folder)

    @property
    def dataset_meta(self) -> dict | None:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        """Keep the dataset's classes for checking labels; report the merged ones, if merging."""
        self.source_classes = tuple(dataset_meta['classes'])
        self._dataset_meta = dict(dataset_meta)
        if self.class_merge is None:
            return
        self.merge_table = torch.full((256,), self.ignore_index, dtype=torch.long)
        for merged, ids in enumerate(self.class_merge.values()):
            bad = [i for i in ids if not 0 <= i < len(self.source_classes)]
            if bad:
                raise ValueError(f'class_merge names class ids {bad} outside the dataset\'s '
                                 f'{len(self.source_classes)} classes')
            if (self.merge_table[ids] != self.ignore_index).any():
                raise ValueError(f'class_merge puts a class id of {ids} into two merged classes')
            self.merge_table[ids] = merged
        self._dataset_meta['classes'] = tuple(self.class_merge)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        num_classes = len(self.source_classes)
        kept = []
        for sample in data_samples:
            fault = self._fault(sample, num_classes)
            if fault is None:
                kept.append(sample if self.merge_table is None else self._merged(sample))
                continue
            kind, detail = fault
            self.results.append((FAULT, kind))
            path = sample.get('seg_map_path') if kind == 'bad_label' else None
            print_log(f'left out of the metric: {path or sample.get("img_path", "a sample")}: {detail}',
                      logger='current', level=logging.WARNING)
        if kept:
            super().process(data_batch, kept)

    def add_fault(self, kind: str) -> None:
        """Count a sample left out before it reached the model (e.g. a label map that cannot be loaded)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f'unknown fault kind {kind!r}; one of {FAULT_KINDS}')
        self.results.append((FAULT, kind))

    def _merged(self, sample: dict) -> dict:
        """``sample`` with its prediction and label mapped to the merged classes."""
        table = self.merge_table
        pred = sample['pred_sem_seg']['data']
        merged = dict(sample, pred_sem_seg=dict(data=table.to(pred.device)[pred.long()]))
        if 'gt_sem_seg' in sample:
            label = sample['gt_sem_seg']['data']
            merged['gt_sem_seg'] = dict(data=table.to(label.device)[label.long().clamp(0, 255)])
        return merged

    def _fault(self, sample: dict, num_classes: int) -> tuple[str, str] | None:
        """``(kind, detail)`` if ``sample`` cannot be scored, else None."""
        if sample.get(FAULT):
            return 'non_finite_prediction', sample[FAULT]
        if self.format_only:
            return None
        pred = sample['pred_sem_seg']['data'].squeeze()
        label = sample['gt_sem_seg']['data'].squeeze()
        if pred.shape != label.shape:
            return 'size_mismatch', (f'prediction {tuple(pred.shape)} (the image) and label map '
                                     f'{tuple(label.shape)} differ in size')
        bad = ((label < 0) | (label >= num_classes)) & (label != self.ignore_index)
        if bool(bad.any()):
            values = sorted(set(label[bad].unique().tolist()))
            return 'bad_label', (f'label map holds values {values[:5]} outside [0, {num_classes}) and not '
                                 f'ignore_index {self.ignore_index}')
        return None

    def compute_metrics(self, results: list) -> dict[str, float]:
        scored, self.last_faults = _split(results)
        if not scored:
            self.last_per_class_iou = {name: float('nan') for name in self.dataset_meta['classes']}
            return {name: float('nan') for name in ('aAcc', *self.metrics, 'mAcc')}
        with _logged_at_debug(MMLogger.get_current_instance()):
            metrics = super().compute_metrics(scored)
        self.last_per_class_iou = dict(zip(self.dataset_meta['classes'], (_class_iou(scored) * 100).tolist()))
        return metrics

    def running_miou(self) -> float:
        """mIoU (percent) over the images processed since the last evaluation, on this rank."""
        scored, _ = _split(self.results)
        if not scored:
            return float('nan')
        iou = _class_iou(scored)
        return float(np.nanmean(iou) * 100) if np.isfinite(iou).any() else float('nan')


@contextlib.contextmanager
def _logged_at_debug(logger: logging.Logger) -> Iterator[None]:
    """Within the context, whatever ``logger`` logs is logged at debug level (shown with log_level DEBUG)."""
    def lower(record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, 'DEBUG'
        return True

    logger.addFilter(lower)
    try:
        yield
    finally:
        logger.removeFilter(lower)


def _class_iou(scored: list) -> np.ndarray:
    """Per-class IoU (fraction, NaN where a class is absent from prediction and label) of scored entries."""
    intersect = sum(r[0] for r in scored).double()
    union = sum(r[1] for r in scored).double()
    return (intersect / union).numpy()


def _split(results: list) -> tuple[list, Counter[str]]:
    """The scored entries of ``results`` and the count of faults by kind."""
    faults = Counter({kind: 0 for kind in FAULT_KINDS})
    scored = []
    for entry in results:
        if len(entry) == 2 and entry[0] == FAULT:
            faults[entry[1]] += 1
        else:
            scored.append(entry)
    return scored, faults
