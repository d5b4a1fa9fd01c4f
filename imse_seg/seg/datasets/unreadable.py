"""Skip stream samples whose files cannot be read, instead of ending a long run on one bad image."""
from __future__ import annotations

from typing import Any, Sequence

from mmengine.dataset import pseudo_collate
from mmengine.registry import FUNCTIONS
from torch.utils.data import Dataset

UNREADABLE = 'unreadable'


class SkipUnreadable(Dataset):
    """Wraps a test dataset: a sample whose loading raises becomes an *unreadable* marker.

    mmengine's ``BaseDataset`` raises on any failure in test mode, and a decoding error (a truncated or
    corrupt file, an image of a format OpenCV cannot read) would otherwise stop the whole stream. The
    marker ``{'unreadable': (path, reason)}`` travels through :func:`stream_collate`, which leaves it out
    of the batch; the continual loop counts it and warns. Everything else is delegated.
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
        try:
            return self.dataset[index]
        except Exception as error:  # any loading or decoding failure of this one sample
            path = self.dataset.get_data_info(index).get('img_path', f'sample {index}')
            return {UNREADABLE: (path, f'{type(error).__name__}: {error}')}


@FUNCTIONS.register_module()
def stream_collate(data_batch: Sequence[dict]) -> dict:
    """``pseudo_collate`` of the readable samples; the unreadable ones are listed under ``'unreadable'``."""
    unreadable = [sample[UNREADABLE] for sample in data_batch if UNREADABLE in sample]
    readable = [sample for sample in data_batch if UNREADABLE not in sample]
    batch = pseudo_collate(readable) if readable else {}
    batch[UNREADABLE] = unreadable
    return batch
