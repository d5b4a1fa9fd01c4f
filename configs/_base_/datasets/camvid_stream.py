# The CamVid weather stream of the EfficientViT benchmark (docs/demo_data.md), written by
#     python tools/make_demo_data.py --preset efficientvit            # -> data/camvid_stream
# in ACDC's layout: fog -> night -> rain -> snow, 100 CamVid frames each at their own 240x320, labels as
# Cityscapes trainIds. ACDC split `train` is the reported stream (Seq05VD, 0006R0, 0001TP), split `val` the
# tuning stream (0016E5), the only one hyper-parameters are chosen on:
#     --cfg-options test_dataloader.dataset.split=val
# Condition folders clear_<condition> hold the same frames clear
# (configs/efficientvit_camvid_stream_clear.py).
# Input resized by `input_scale` (bicubic, as the reference model's authors), logits cropped of the padding
# and resized to the 240x320 label by mmseg; scored over CamVid's 11 classes through the class merge of
# camvid.py (the adaptation still sees the 19-class logits). 2x input:
#     --cfg-options test_dataloader.dataset.pipeline.1.scale_factor=2.0
_base_ = ['./camvid.py']
data_root = 'data/camvid_stream'
conditions = ['fog', 'night', 'rain', 'snow']
input_scale = 1.5
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale_factor=input_scale, keep_ratio=True, interpolation='bicubic'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    dataset=dict(_delete_=True, type='ACDCDataset', data_root=data_root, split='train',
                 pipeline=test_pipeline))
test_cfg = dict(
    type='ContinualTestLoop',
    rounds=3,
    segments=[dict(name=condition, dataset=dict(condition=condition)) for condition in conditions])
