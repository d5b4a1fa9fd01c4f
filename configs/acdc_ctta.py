# Cityscapes -> ACDC continual test-time adaptation (the CoTTA protocol, methods.md 3) with the flagship
# method, IMSE + STAG, on NVlabs' SegFormer-B5 converted by tools/convert_checkpoint.py.
#     python tools/adapt.py configs/acdc_ctta.py (checkpoint as data/README.md says)
# The other methods' configs (acdc_ctta_<method>.py) inherit from this one and swap the method.
_base_ = [
    './_base_/models/segformer_mit-b5_nvlabs.py',
    './_base_/datasets/acdc.py',
    './_base_/default_runtime.py',
    './_base_/methods/segformer.py',
]
custom_imports = dict(imports=['imse_seg.seg'], allow_failed_imports=False)
# The 960x540 input is one slide window; the model sees it unpadded, as in the published code.
model = dict(
    _delete_=True,
    type='AdaptiveSegmentor',
    module={{_base_.model}},
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0, seg_pad_val=255))
load_from = 'data/checkpoints/segformer_mit-b5_cityscapes_nvlabs.pth'
custom_hooks = [dict(type='AdaptationSetupHook', method={{_base_.imse_stag}})]
