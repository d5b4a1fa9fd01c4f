# The bundled CPU demo of the Cityscapes -> ACDC protocol (issue 11): the tiny SegFormer trained on clear
# CamVid frames (data/demo_source/) adapts online, batch 1, to the demo's ACDC-layout stream
# fog -> night -> rain -> snow, repeated, with the flagship method IMSE + STAG. Same dataset class, hook,
# loop and metric as configs/acdc_ctta.py; only the model, the data root, the frame size and the stream
# length differ. `python tools/run_demo.py` generates the data and runs every method; one method alone:
#     python tools/adapt.py configs/demo_ctta.py
# The reported stream is ACDC split `train` (frames the source never saw); split `val` is the tuning
# stream rendered from clear validation frames, the only one hyper-parameters were chosen on:
#     python tools/adapt.py configs/demo_ctta.py --cfg-options test_dataloader.dataset.split=val
_base_ = [
    './demo/_base_/segformer_tiny.py',
    './_base_/datasets/acdc.py',
    './_base_/default_runtime.py',
    './demo/_base_/methods.py',
]
custom_imports = dict(imports=['imse_seg.seg'], allow_failed_imports=False)
model = dict(
    _delete_=True,
    type='AdaptiveSegmentor',
    module={{_base_.model}},
    data_preprocessor={{_base_.data_preprocessor}})
load_from = 'data/demo_source/segformer_tiny_camvid.pth'
# The frames are 120 x 160 already: no resize.
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
test_dataloader = dict(num_workers=0, dataset=dict(data_root='data/demo', pipeline=test_pipeline))
test_cfg = dict(rounds=3)
default_hooks = dict(logger=dict(interval=100))
randomness = dict(seed=0, deterministic=True)
custom_hooks = [dict(type='AdaptationSetupHook', method={{_base_.imse_stag}})]
