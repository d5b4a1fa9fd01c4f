"""A tiny ACDC-layout tree, a random-weight tiny SegFormer checkpoint and a config over them."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

import imse_seg  # noqa: F401  (before mmseg)

REPO = Path(__file__).resolve().parents[1]
CONDITIONS = ('fog', 'night', 'rain', 'snow')
IMAGE_SHAPE = (64, 128)
IMAGES_PER_CONDITION = 3

TINY_SEGMENTOR = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0, seg_pad_val=255),
    backbone=dict(type='MixVisionTransformer', embed_dims=16, num_layers=[1, 1, 1, 1],
                  num_heads=[1, 2, 4, 8], sr_ratios=[8, 4, 2, 1]),
    decode_head=dict(type='SegformerHead', in_channels=[16, 32, 64, 128], in_index=[0, 1, 2, 3],
                     channels=32, num_classes=19, norm_cfg=dict(type='BN', requires_grad=True),
                     align_corners=False),
    test_cfg=dict(mode='whole'))


def write_acdc_tree(root: Path, seed: int = 0, images_per_condition: int = IMAGES_PER_CONDITION) -> Path:
    """rgb_anon/<cond>/train/<seq>/*_rgb_anon.png and gt/... with smooth colours and trainId labels."""
    rng = np.random.default_rng(seed)
    h, w = IMAGE_SHAPE
    for c, condition in enumerate(CONDITIONS):
        for i in range(images_per_condition):
            name = f'GOPR{c}{i:03d}_frame_{i:06d}'
            img_dir = root / 'rgb_anon' / condition / 'train' / f'GOPR{c}'
            gt_dir = root / 'gt' / condition / 'train' / f'GOPR{c}'
            img_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            labels = np.zeros((h, w), np.uint8)
            labels[h // 2:] = 0          # road
            labels[:h // 3] = 10         # sky
            labels[h // 3:h // 2] = 2    # building
            labels[h // 2:, rng.integers(10, w - 20):][:, :12] = 13  # a car
            labels[0, :5] = 255
            palette = rng.integers(0, 256, (19, 3))
            image = palette[labels.clip(0, 18)].astype(np.float64)
            image = (image * (0.4 + 0.2 * c) + rng.normal(0, 8, image.shape)).clip(0, 255).astype(np.uint8)
            cv2.imwrite(str(img_dir / f'{name}_rgb_anon.png'), image)
            cv2.imwrite(str(gt_dir / f'{name}_gt_labelTrainIds.png'), labels)
    return root


def write_tiny_checkpoint(path: Path, num_classes: int = 19, seed: int = 0) -> Path:
    """A random-weight tiny SegFormer saved as an mmengine checkpoint with plain meta."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    torch.manual_seed(seed)
    cfg = dict(TINY_SEGMENTOR, decode_head=dict(TINY_SEGMENTOR['decode_head'], num_classes=num_classes))
    model = MODELS.build(cfg)
    torch.save({'state_dict': model.state_dict(), 'meta': {'note': 'tiny random SegFormer for tests'}}, path)
    return path


def write_config(path: Path, data_root: Path, method: str, rounds: int = 2, extra: str = '') -> Path:
    """A config over the repo's real bases, with the tiny model and data swapped in (``extra``: more lines)."""
    path.write_text(f'''
_base_ = ['{REPO}/configs/_base_/datasets/acdc.py', '{REPO}/configs/_base_/default_runtime.py',
          '{REPO}/configs/_base_/methods/segformer.py']
custom_imports = dict(imports=['imse_seg.seg'], allow_failed_imports=False)
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(128, 64), keep_ratio=True),
                 dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
test_dataloader = dict(num_workers=0, dataset=dict(data_root='{data_root}', pipeline=test_pipeline))
test_cfg = dict(rounds={rounds})
model = dict(type='AdaptiveSegmentor', module={TINY_SEGMENTOR!r})
custom_hooks = [dict(type='AdaptationSetupHook', method={{{{_base_.{method}}}}})]
{extra}
''')
    return path


def register_parameter_trace_hook() -> None:
    """Register ``ParameterTraceHook``: after every test iteration, append each rank's trainable
    parameter checksum to ``<work_dir>/trace_rank<r>.txt`` (for the distributed test)."""
    from mmengine.dist import get_rank
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    if 'ParameterTraceHook' in HOOKS.module_dict:
        return

    @HOOKS.register_module()
    class ParameterTraceHook(Hook):
        def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            model = runner.model.module if hasattr(runner.model, 'module') and \
                hasattr(runner.model.module, 'method') else runner.model
            params = [p.detach().double() for p in model.module.parameters() if p.requires_grad]
            checksum = sum(float((p * (1 + torch.arange(p.numel()).reshape(p.shape))).sum()) for p in params)
            with open(Path(runner.work_dir) / f'trace_rank{get_rank()}.txt', 'a') as handle:
                handle.write(f'{checksum!r}\n')


register_parameter_trace_hook()
