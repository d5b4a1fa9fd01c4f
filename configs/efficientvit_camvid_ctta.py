# The EfficientViT benchmark (issue 18): the published EfficientViT-Seg-B0 Cityscapes model adapts online,
# batch 1, to CamVid frames under fog -> night -> rain -> snow (configs/_base_/datasets/camvid_stream.py,
# 3 rounds, 1.5x input), with the flagship method IMSE + STAG. Data and checkpoint, once:
#     python tools/convert_checkpoint.py ../shared/weights/efficientvit_seg_b0_cityscapes.pt \
#         data/checkpoints/efficientvit-seg-b0_cityscapes.pth --format efficientvit
#     python tools/make_demo_data.py --preset efficientvit
#     python tools/adapt.py configs/efficientvit_camvid_ctta.py
# The other methods' configs (efficientvit_camvid_ctta_<method>.py) inherit from this one and swap the method.
_base_ = [
    './_base_/models/efficientvit-seg-b0_cityscapes.py',
    './_base_/datasets/camvid_stream.py',
    './_base_/default_runtime.py',
    './_base_/methods/efficientvit.py',
]
custom_imports = dict(imports=['imse_seg.seg'], allow_failed_imports=False)
model = dict(
    _delete_=True,
    type='AdaptiveSegmentor',
    module={{_base_.model}},
    data_preprocessor={{_base_.data_preprocessor}})
load_from = 'data/checkpoints/efficientvit-seg-b0_cityscapes.pth'
test_dataloader = dict(num_workers=0)
test_cfg = dict(rounds=3)
default_hooks = dict(logger=dict(interval=100))
randomness = dict(seed=0, deterministic=True)
custom_hooks = [dict(type='AdaptationSetupHook', method={{_base_.imse_stag}})]
