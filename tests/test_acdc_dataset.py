"""ACDCDataset: listing and order, conditions, skipped images without labels, clear folder errors."""
import logging
import os.path as osp
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.logging import MMLogger

import imse_seg  # noqa: F401  (before mmseg)
from imse_seg.seg.datasets import ACDCDataset, describe_segment
from mmseg.registry import DATASETS

TRAIN_IDS = np.array([[0, 1, 2, 18], [255, 5, 10, 13], [0, 0, 255, 7]], dtype=np.uint8)


def _write_pair(root: Path, condition: str, split: str, seq: str, name: str, gt: bool = True) -> None:
    img_dir = root / 'rgb_anon' / condition / split / seq
    img_dir.mkdir(parents=True, exist_ok=True)
    image = np.full((3, 4, 3), len(name), dtype=np.uint8)
    cv2.imwrite(str(img_dir / f'{name}_rgb_anon.png'), image)
    if gt:
        gt_dir = root / 'gt' / condition / split / seq
        gt_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(gt_dir / f'{name}_gt_labelTrainIds.png'), TRAIN_IDS)


@pytest.fixture
def acdc_root(tmp_path: Path) -> Path:
    """fog/train: two sequences written out of order; night/train: one image; fog/val: one image."""
    _write_pair(tmp_path, 'fog', 'train', 'GOPR0478', 'GOPR0478_frame_000005')
    _write_pair(tmp_path, 'fog', 'train', 'GOPR0475', 'GOPR0475_frame_000041')
    _write_pair(tmp_path, 'fog', 'train', 'GOPR0475', 'GOPR0475_frame_000002')
    _write_pair(tmp_path, 'night', 'train', 'GOPR0351', 'GOPR0351_frame_000001')
    _write_pair(tmp_path, 'fog', 'val', 'GOPR0476', 'GOPR0476_frame_000001')
    return tmp_path


@pytest.fixture
def log_records() -> list[logging.LogRecord]:
    """The records that mmengine's current logger emits during the test."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _names(dataset: ACDCDataset) -> list[str]:
    return [osp.basename(dataset.get_data_info(i)['img_path']) for i in range(len(dataset))]


def test_lists_one_condition_sorted_by_path(acdc_root: Path) -> None:
    dataset = DATASETS.build(dict(type='ACDCDataset', data_root=str(acdc_root), condition='fog'))
    assert _names(dataset) == ['GOPR0475_frame_000002_rgb_anon.png', 'GOPR0475_frame_000041_rgb_anon.png',
                               'GOPR0478_frame_000005_rgb_anon.png']
    info = dataset.get_data_info(0)
    assert info['seg_map_path'] == str(
        acdc_root / 'gt/fog/train/GOPR0475/GOPR0475_frame_000002_gt_labelTrainIds.png')
    assert dataset.metainfo['classes'][18] == 'bicycle' and len(dataset.metainfo['palette']) == 19
    assert dataset.missing_gt == []


def test_condition_and_split_select_the_folder(acdc_root: Path) -> None:
    night = ACDCDataset(data_root=str(acdc_root), condition='night')
    fog_val = ACDCDataset(data_root=str(acdc_root), condition='fog', split='val')
    assert _names(night) == ['GOPR0351_frame_000001_rgb_anon.png']
    assert _names(fog_val) == ['GOPR0476_frame_000001_rgb_anon.png']


def test_images_without_gt_are_skipped_with_one_warning(acdc_root: Path, log_records: list) -> None:
    _write_pair(acdc_root, 'fog', 'train', 'GOPR0475', 'GOPR0475_frame_000010', gt=False)
    _write_pair(acdc_root, 'fog', 'train', 'GOPR0478', 'GOPR0478_frame_000001', gt=False)
    dataset = ACDCDataset(data_root=str(acdc_root), condition='fog')
    assert len(dataset) == 3
    assert [osp.basename(p) for p in dataset.missing_gt] == ['GOPR0475_frame_000010_rgb_anon.png',
                                                             'GOPR0478_frame_000001_rgb_anon.png']
    warnings = [r.getMessage() for r in log_records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(f'2 of 5 images in {acdc_root / "rgb_anon/fog/train"} have no ground truth')
    assert str(acdc_root / 'gt/fog/train/<seq>/<name>_gt_labelTrainIds.png') in warnings[0]


def test_split_without_any_gt_is_an_error(acdc_root: Path) -> None:
    _write_pair(acdc_root, 'fog', 'test', 'GOPR0477', 'GOPR0477_frame_000001', gt=False)
    with pytest.raises(FileNotFoundError, match=r'None of the 1 images .* has ground truth at .*gt/fog/test'):
        ACDCDataset(data_root=str(acdc_root), condition='fog', split='test')


def test_missing_folder_names_the_expected_pattern_and_what_exists(acdc_root: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        ACDCDataset(data_root=str(acdc_root), condition='snow')
    message = str(error.value)
    assert f'expected images at {acdc_root}/rgb_anon/snow/train/<seq>/<name>_rgb_anon.png' in message
    assert 'fog/train, fog/val, night/train' in message


def test_empty_folder_is_an_error(acdc_root: Path) -> None:
    (acdc_root / 'rgb_anon' / 'rain' / 'train' / 'GOPR0400').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r'rgb_anon/rain/train holds no \*_rgb_anon.png file'):
        ACDCDataset(data_root=str(acdc_root), condition='rain')


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r'There is no .*/rgb_anon folder'):
        ACDCDataset(data_root=str(tmp_path / 'nowhere'), condition='fog')


def test_data_prefix_is_refused(acdc_root: Path) -> None:
    with pytest.raises(TypeError, match='derives data_prefix from `condition` and `split`'):
        ACDCDataset(data_root=str(acdc_root), condition='fog', data_prefix=dict(img_path='x'))


def test_pipeline_reads_the_label_map_as_train_ids(acdc_root: Path) -> None:
    dataset = ACDCDataset(data_root=str(acdc_root), condition='fog', test_mode=True,
                          pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')])
    sample = dataset[0]
    assert sample['img'].shape == (3, 4, 3)
    assert sample['gt_seg_map'].dtype == np.uint8
    np.testing.assert_array_equal(sample['gt_seg_map'], TRAIN_IDS)


def test_describe_segment_names_count_first_and_last(acdc_root: Path) -> None:
    dataset = ACDCDataset(data_root=str(acdc_root), condition='fog')
    assert describe_segment(dataset) == (
        f'3 images in {acdc_root / "rgb_anon/fog/train"}: first GOPR0475/GOPR0475_frame_000002_rgb_anon.png, '
        'last GOPR0478/GOPR0478_frame_000005_rgb_anon.png')
