# ACDC as the CoTTA protocol streams it (methods.md 3): the train split, 400 images per condition,
# fog -> night -> rain -> snow, batch 1, input resized to 960x540 (keep ratio), logits upsampled to the
# original 1920x1080 for the metric (mmseg's post-processing resizes to ori_shape). Files are streamed in
# sorted order; the loop logs each segment's first and last file.
data_root = 'data/acdc'
conditions = ['fog', 'night', 'rain', 'snow']
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(960, 540), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ACDCDataset', data_root=data_root, split='train', pipeline=test_pipeline))
test_evaluator = dict(type='StreamIoUMetric')
test_cfg = dict(
    type='ContinualTestLoop',
    rounds=10,
    segments=[dict(name=condition, dataset=dict(condition=condition)) for condition in conditions])
