# The published EfficientViT-Seg-B0 Cityscapes model, unadapted, on the clear CamVid test frames (Seq05VD,
# 171 frames) at 2x input, scored over CamVid's 11 classes: the source accuracy the reference reaches with
# its authors' code (60.8 mIoU; 57.9 at 1.5x: ../shared/reference/efficientvit_seg_b0/README.md).
#     python tools/convert_checkpoint.py ../shared/weights/efficientvit_seg_b0_cityscapes.pt \
#         data/checkpoints/efficientvit-seg-b0_cityscapes.pth --format efficientvit
#     python tools/adapt.py configs/efficientvit_camvid_clear.py            # 1.5x: add
#         --cfg-options "test_dataloader.dataset.pipeline.1.scale_factor=1.5"
_base_ = [
    './_base_/models/efficientvit-seg-b0_cityscapes.py',
    './_base_/datasets/camvid.py',
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
randomness = dict(seed=0, deterministic=True)
custom_hooks = [dict(type='AdaptationSetupHook', method={{_base_.source}})]
