"""ACDC (Adverse Conditions Dataset with Correspondences) for the Cityscapes -> ACDC stream."""
import copy
import logging
import os.path as osp
from typing import List

import mmengine.fileio as fileio
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmseg.datasets import BaseSegDataset, CityscapesDataset
from mmseg.registry import DATASETS

ACDC_CONDITIONS = ('fog', 'night', 'rain', 'snow')


@DATASETS.register_module()
class ACDCDataset(BaseSegDataset):
    """One condition and split of ACDC, labelled with the 19 Cityscapes trainIds.

    The layout is ACDC's own::

        data_root/rgb_anon/<condition>/<split>/<seq>/<name>_rgb_anon.png
        data_root/gt/<condition>/<split>/<seq>/<name>_gt_labelTrainIds.png

    so a segment of the continual stream is chosen by ``condition`` (``fog``, ``night``, ``rain``,
    ``snow``, or any other folder under ``rgb_anon``) and ``split`` (``train``, ``val``, ``test``), and
    ``data_prefix`` is derived from them rather than passed (a loop builds one dataset per condition by
    changing one field). Files are listed recursively and sorted by path, as mmseg's ``BaseSegDataset``
    does, so the stream order is the sorted order. Images without a ground-truth file are dropped with one
    warning saying how many and where; a missing or empty image folder raises ``FileNotFoundError`` at
    once, naming the expected path pattern, instead of failing deep inside mmengine.

    Args:
        condition (str): Folder under ``rgb_anon/`` and ``gt/``, e.g. ``'fog'``.
        split (str): Folder under the condition, e.g. ``'train'``. Defaults to ``'train'``, the split
            that the CoTTA protocol adapts on.
        img_suffix (str): Defaults to ``'_rgb_anon.png'``.
        seg_map_suffix (str): Defaults to ``'_gt_labelTrainIds.png'``.
        **kwargs: Any other argument of :class:`mmseg.datasets.BaseSegDataset` except ``data_prefix``.
    """
    METAINFO = copy.deepcopy(CityscapesDataset.METAINFO)

    def __init__(self,
                 condition: str,
                 split: str = 'train',
                 img_suffix: str = '_rgb_anon.png',
                 seg_map_suffix: str = '_gt_labelTrainIds.png',
                 **kwargs) -> None:
        if 'data_prefix' in kwargs:
            raise TypeError('ACDCDataset derives data_prefix from `condition` and `split` '
                            f'(rgb_anon/<condition>/<split>, gt/<condition>/<split>); got '
                            f'data_prefix={kwargs["data_prefix"]!r}')
        self.condition = condition
        self.split = split
        self.missing_gt: List[str] = []
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            data_prefix=dict(img_path=osp.join('rgb_anon', condition, split),
                             seg_map_path=osp.join('gt', condition, split)),
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """List the images (sorted by path) after checking that the image folder holds some."""
        img_dir = self.data_prefix['img_path']
        pattern = osp.join(img_dir, '<seq>', f'<name>{self.img_suffix}')
        if not fileio.isdir(img_dir, backend_args=self.backend_args):
            raise FileNotFoundError(f'ACDC image folder {img_dir} does not exist; expected images at '
                                    f'{pattern}. {self._present_segments()}')
        data_list = super().load_data_list()
        if not data_list:
            raise FileNotFoundError(f'ACDC image folder {img_dir} holds no *{self.img_suffix} file; '
                                    f'expected images at {pattern}. {self._present_segments()}')
        return data_list

    def filter_data(self) -> List[dict]:
        """Drop the images that have no ground-truth file, with one warning, and keep the order."""
        kept, self.missing_gt = [], []
        for info in self.data_list:
            if fileio.exists(info['seg_map_path'], backend_args=self.backend_args):
                kept.append(info)
            else:
                self.missing_gt.append(info['img_path'])
        if not self.missing_gt:
            return kept
        gt_pattern = osp.join(self.data_prefix['seg_map_path'], '<seq>', f'<name>{self.seg_map_suffix}')
        if not kept:
            raise FileNotFoundError(f'None of the {len(self.missing_gt)} images in '
                                    f'{self.data_prefix["img_path"]} has ground truth at {gt_pattern} '
                                    '(ACDC withholds the test-split labels).')
        print_log(f'{len(self.missing_gt)} of {len(self.data_list)} images in '
                  f'{self.data_prefix["img_path"]} have no ground truth at {gt_pattern} and are skipped '
                  f'(first: {self.missing_gt[0]}).', logger='current', level=logging.WARNING)
        return kept

    def _present_segments(self) -> str:
        """Name the ``<condition>/<split>`` folders that do exist, to help fix a wrong argument."""
        root = osp.join(self.data_root or '', 'rgb_anon')
        if not fileio.isdir(root, backend_args=self.backend_args):
            return f'There is no {root} folder (ACDC conditions: {", ".join(ACDC_CONDITIONS)}).'
        present = []
        for condition in sorted(fileio.list_dir_or_file(root, list_file=False,
                                                        backend_args=self.backend_args)):
            splits = fileio.list_dir_or_file(osp.join(root, condition), list_file=False,
                                             backend_args=self.backend_args)
            present.extend(f'{condition}/{split}' for split in sorted(splits))
        return f'Present under {root}: {", ".join(present) or "nothing"}.'


def describe_segment(dataset: BaseDataset) -> str:
    """One log line naming a dataset's size and its first and last image, to check the stream order.

    Paths are given relative to the dataset's image folder (``data_prefix['img_path']``).
    """
    img_dir = dataset.data_prefix.get('img_path') or '.'
    count = len(dataset)
    if count == 0:
        return f'0 images in {img_dir}'
    first, last = (osp.relpath(dataset.get_data_info(i)['img_path'], img_dir) for i in (0, count - 1))
    return f'{count} images in {img_dir}: first {first}, last {last}'
