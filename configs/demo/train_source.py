# Trains the demo's source model (configs/demo/_base_/segformer_tiny.py) from scratch on the clear source
# domain of the generated demo tree (tools/make_demo_data.py --preset tiny_segformer: 305 daylight CamVid
# frames at 120 x 160 in the Cityscapes layout) and validates on the clear val split (101 frames). Run it
# through tools/train_source.py, which seeds it and writes the stripped checkpoint; docs/demo_source.md has
# the command, the time and the scores.
#
# Augmentation: random rescale 0.5-2.0, 120 x 160 crop, flip and mmseg's PhotoMetricDistortion with its
# defaults, the augmentation of mmseg's own Cityscapes SegFormer recipe (the real benchmark's source model
# was trained with it). It varies brightness (+-32), contrast and saturation (x0.5-1.5) and hue (+-18):
# mild global colour changes, none of the demo's target shifts (depth-dependent fog, darkness with noise
# and lights, streaks, drops, bleaching).
#
# Loss: cross-entropy with mmseg's online hard example mining (OHEMPixelSampler: pixels whose predicted
# probability of their true class is below 0.7, at least 4000 per 120 x 160 crop, about a fifth, as
# mmseg's Cityscapes OHEM recipes keep 100000 of a 512 x 1024 crop), so that the pixels of thin and rare
# classes (pole, sign, fence, rider), which stay hard, keep their weight once road and sky are learnt.
# (Per-class weights are not an option here: mmseg 1.2.2's CrossEntropyLoss fails with class_weight
# when labels hold the ignore index 255.)
_base_ = ['../_base_/default_runtime.py', './_base_/segformer_tiny.py']
data_root = 'data/demo'
crop_size = (120, 160)
max_iters = 4000
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(sampler=dict(type='OHEMPixelSampler', thresh=0.7, min_kept=4000)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(160, 120), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='CityscapesDataset', data_root=data_root,
                 data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CityscapesDataset', data_root=data_root,
                 data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
                 pipeline=test_pipeline))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=8e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys=dict(pos_block=dict(decay_mult=0.0), norm=dict(decay_mult=0.0))))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=300),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=300, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1000)
val_cfg = dict(type='ValLoop')
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1))
randomness = dict(seed=0, deterministic=True)
