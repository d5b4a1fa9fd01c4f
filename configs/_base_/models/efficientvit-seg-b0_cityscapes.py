# EfficientViT-Seg-B0 (Cai et al., ICCV 2023) as its authors trained it on Cityscapes (19 trainIds), for
# their published checkpoint converted by
#     python tools/convert_checkpoint.py efficientvit_seg_b0_cityscapes.pt CKPT --format efficientvit
# Inputs as the authors evaluate: RGB, (x / 255 - mean) / std with mean 0.485/0.456/0.406 and std
# 0.229/0.224/0.225 (here in 0-255 terms), zero-padded at the bottom/right to a multiple of 32 (mmseg crops
# the prediction back). `model(inputs, mode='tensor')` returns the head's stride-8 logits. B1-B3 are the
# same modules with other widths, depths and head sizes (tools/convert_checkpoint.py prints them).
custom_imports = dict(imports=['imse_seg.seg.models'], allow_failed_imports=False)
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    size_divisor=32,
    pad_val=0,
    seg_pad_val=255,
    test_cfg=dict(size_divisor=32))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='EfficientViTBackbone',
        widths=(8, 16, 32, 64, 128),
        depths=(1, 2, 2, 2, 2),
        head_dim=16,
        expand_ratio=4,
        out_indices=(1, 2, 3),
        norm_cfg=norm_cfg),
    decode_head=dict(
        type='EfficientViTSegHead',
        in_channels=(128, 64, 32),
        in_index=(2, 1, 0),
        input_strides=(32, 16, 8),
        head_stride=8,
        head_width=32,
        head_depth=1,
        expand_ratio=4,
        final_expand=4,
        num_classes=19,
        dropout_ratio=0.0,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
