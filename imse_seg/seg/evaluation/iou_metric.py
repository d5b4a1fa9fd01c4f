"""mmseg's ``IoUMetric`` with what a stream needs: per-class IoU kept, and a running mIoU."""
from __future__ import annotations

import numpy as np
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS


@METRICS.register_module()
class StreamIoUMetric(IoUMetric):
    """``IoUMetric`` that keeps the per-class IoU of its last evaluation and reports a running mIoU.

    The reduction is mmseg's own (``compute_metrics``, gathered across ranks by ``evaluate``); this class
    only also stores ``last_per_class_iou`` (class name -> IoU in percent, NaN for a class absent from both
    prediction and ground truth) so that results files can hold it, and offers :meth:`running_miou` over the
    images processed so far on this rank, for progress bars.
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault('iou_metrics', ['mIoU'])
        super().__init__(**kwargs)
        self.last_per_class_iou: dict[str, float] = {}

    def compute_metrics(self, results: list) -> dict[str, float]:
        metrics = super().compute_metrics(results)
        intersect = sum(r[0] for r in results).double()
        union = sum(r[1] for r in results).double()
        iou = (intersect / union).numpy() * 100
        self.last_per_class_iou = dict(zip(self.dataset_meta['classes'], iou.tolist()))
        return metrics

    def running_miou(self) -> float:
        """mIoU (percent) over the images processed since the last evaluation, on this rank."""
        if not self.results:
            return float('nan')
        intersect = sum(r[0] for r in self.results).double()
        union = sum(r[1] for r in self.results).double()
        iou = (intersect / union).numpy()
        return float(np.nanmean(iou) * 100) if np.isfinite(iou).any() else float('nan')
