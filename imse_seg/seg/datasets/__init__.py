"""Datasets of the continual streams, registered in mmseg's ``DATASETS`` registry on import."""
from .acdc import ACDC_CONDITIONS, ACDCDataset, describe_segment
from .camvid import CamVidDataset
from .unreadable import BAD_LABEL, UNREADABLE, SkipUnreadable, stream_collate

__all__ = ['ACDC_CONDITIONS', 'ACDCDataset', 'BAD_LABEL', 'CamVidDataset', 'SkipUnreadable', 'UNREADABLE',
           'describe_segment', 'stream_collate']
