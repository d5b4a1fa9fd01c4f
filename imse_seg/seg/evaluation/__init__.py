from .iou_metric import StreamIoUMetric

__all__ = ['StreamIoUMetric']
