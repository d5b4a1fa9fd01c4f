"""CamVid (SegNet's 11-class version) frames, labelled with the Cityscapes trainIds a Cityscapes model predicts."""
from __future__ import annotations

import copy
from typing import List, Sequence

from mmseg.datasets import BaseSegDataset, CityscapesDataset
from mmseg.registry import DATASETS

from imse_seg.demo.camvid import CAMVID_TO_TRAINID, CAMVID_VOID, IGNORE_INDEX
from imse_seg.third_party import CAMVID

CAMVID_SPLITS = ('train', 'val', 'test')


@DATASETS.register_module()
class CamVidDataset(BaseSegDataset):
    """One split of the CamVid folder (``<split>/<name>.jpg``, ``<split>annot/<name>.png``), optionally
    restricted to some sequences (the file-name prefix, e.g. ``Seq05VD``), in sorted order.

    Labels are read as CamVid ids and mapped by mmseg's own ``label_map`` (applied by ``LoadAnnotations``) to
    the Cityscapes trainId of each class (``CAMVID_TO_TRAINID``; void to 255), so the dataset's classes are
    Cityscapes' and a Cityscapes model is scored on them directly, or over CamVid's 11 classes with
    :class:`~imse_seg.seg.evaluation.StreamIoUMetric`'s ``class_merge``. ``data_root`` defaults to the
    shared CamVid copy (:data:`imse_seg.third_party.CAMVID`, ``$IMSE_SEG_CAMVID``); a missing folder stops
    with the expected path and where CamVid comes from.
    """
    METAINFO = copy.deepcopy(CityscapesDataset.METAINFO)

    def __init__(self, split: str = 'test', sequences: Sequence[str] | None = None,
                 data_root: str | None = None, img_suffix: str = '.jpg', seg_map_suffix: str = '.png',
                 **kwargs) -> None:
        if split not in CAMVID_SPLITS:
            raise ValueError(f'CamVid split {split!r} does not exist; use one of {", ".join(CAMVID_SPLITS)}')
        if 'data_prefix' in kwargs:
            raise TypeError('CamVidDataset derives data_prefix from `split` (<split>/, <split>annot/)')
        self.split = split
        self.sequences = tuple(sequences) if sequences is not None else None
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         data_root=str(CAMVID.require(data_root)),
                         data_prefix=dict(img_path=split, seg_map_path=f'{split}annot'), **kwargs)

    @classmethod
    def get_label_map(cls, new_classes: Sequence[str] | None = None) -> dict[int, int]:
        """CamVid id -> Cityscapes trainId (void -> 255), applied to every label map as it is loaded."""
        return {**CAMVID_TO_TRAINID, CAMVID_VOID: IGNORE_INDEX}

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        if self.sequences is not None:
            data_list = [info for info in data_list
                         if info['img_path'].rsplit('/', 1)[-1].split('_')[0] in self.sequences]
        if not data_list:
            which = f' of sequences {", ".join(self.sequences)}' if self.sequences else ''
            raise FileNotFoundError(f'CamVid split {self.split!r} under {self.data_root} holds no frame{which}')
        return data_list
