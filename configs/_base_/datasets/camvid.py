# CamVid frames (../shared/data/camvid, or $IMSE_SEG_CAMVID) scored over CamVid's 11 classes: a Cityscapes
# model's 19 trainIds are merged many-to-one as in ../shared/reference/efficientvit_seg_b0/README.md; the
# labels, mapped to trainIds by CamVidDataset, go through the same merge. Input resized by `input_scale`
# (bicubic, as the reference), logits cropped of the padding and resized to the 240x320 label by mmseg.
input_scale = 2.0
camvid_merge = dict(Sky=[10], Building=[2, 3], Pole=[5], Road=[0], Pavement=[1], Tree=[8, 9],
                    SignSymbol=[6, 7], Fence=[4], Car=[13, 14, 15, 16], Pedestrian=[11],
                    Bicyclist=[12, 17, 18])
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale_factor=input_scale, keep_ratio=True, interpolation='bicubic'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CamVidDataset', split='test', sequences=['Seq05VD'], pipeline=test_pipeline))
test_evaluator = dict(type='StreamIoUMetric', class_merge=camvid_merge)
test_cfg = dict(type='ContinualTestLoop', rounds=1, segments=[dict(name='clear')])
