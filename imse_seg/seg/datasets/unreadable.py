"""Skip stream samples whose files cannot be read, instead of ending a long run on one bad image or label."""
from __future__ import annotations

from typing import Any, Sequence

from mmcv.transforms import LoadAnnotations
from mmengine.dataset import pseudo_collate
from mmengine.registry import FUNCTIONS
from torch.utils.data import Dataset

UNREADABLE = 'unreadable'
BAD_LABEL = 'bad_label'
FAULT_MARKERS = (UNREADABLE, BAD_LABEL)
"""The keys of a sample that stands for a fault: ``{kind: (path of the faulty file, reason)}``."""


class SkipUnreadable(Dataset):
    """Wraps a test dataset: a sample whose image or label map cannot be used becomes a fault marker.

    mmengine's ``BaseDataset`` raises on any failure in test mode, and a decoding error (a truncated or
    corrupt file, an image of a format OpenCV cannot read) would otherwise stop the whole stream. When
    loading raises, the pipeline is replayed transform by transform to find the one that failed: a label
    loader (``LoadAnnotations``) makes the marker ``{'bad_label': (label path, reason)}``, anything else
    ``{'unreadable': (image path, reason)}``. A label map that loads but is not one channel (a colour
    image saved as a label) is a ``bad_label`` too. The markers travel through :func:`stream_collate`,
    which leaves them out of the batch; the continual loop counts and reports them. Everything else is
    delegated.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> dict:
        info = self.dataset.get_data_info(index)
        try:
            sample = self.dataset[index]
        except Exception as error:  # any loading or decoding failure of this one sample
            reason = f'{type(error).__name__}: {error}'
            if isinstance(self._failing_transform(index), LoadAnnotations):
                return {BAD_LABEL: (info.get('seg_map_path', f'label of sample {index}'), reason)}
            return {UNREADABLE: (info.get('img_path', f'sample {index}'), reason)}
        problem = label_problem(sample)
        if problem is not None:
            return {BAD_LABEL: (info.get('seg_map_path', f'label of sample {index}'), problem)}
        return sample

    def _failing_transform(self, index: int) -> Any:
        """The first transform of the pipeline that raises on sample ``index`` (None if none does now)."""
        data = self.dataset.get_data_info(index)
        for transform in getattr(getattr(self.dataset, 'pipeline', None), 'transforms', ()):
            try:
                data = transform(data)
            except Exception:  # the one the failed load stopped at
                return transform
            if data is None:
                return None
        return None


def label_problem(sample: dict) -> str | None:
    """Why a packed sample's label map cannot be scored (not a single channel), or None."""
    data_sample = sample.get('data_samples') if isinstance(sample, dict) else None
    label = getattr(data_sample, 'gt_sem_seg', None)
    if label is None:
        return None
    shape = tuple(label.data.shape)
    if len(shape) == 3 and shape[0] == 1:
        return None
    return f'the label map has shape {shape} once loaded, not one channel (a colour image saved as a label?)'


@FUNCTIONS.register_module()
def stream_collate(data_batch: Sequence[dict]) -> dict:
    """``pseudo_collate`` of the usable samples; the faulty ones are listed under their kind
    (``'unreadable'``, ``'bad_label'``)."""
    faulty = {kind: [sample[kind] for sample in data_batch if kind in sample] for kind in FAULT_MARKERS}
    usable = [sample for sample in data_batch if not any(kind in sample for kind in FAULT_MARKERS)]
    batch = pseudo_collate(usable) if usable else {}
    batch.update(faulty)
    return batch
