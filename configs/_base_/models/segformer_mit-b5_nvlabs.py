# SegFormer-B5 as NVlabs built it, for their Cityscapes checkpoint converted by tools/convert_checkpoint.py.
# NVlabs' LayerNorm eps: 1e-6 in the block and stage norms, 1e-5 (PyTorch's default) in the patch-embedding
# norms and the attention's spatial-reduction norm; the decode head is NVlabs' (SegFormerMLPHead).
# Normalisation and slide inference as NVlabs' Cityscapes test (segformer-checkpoints.md).
custom_imports = dict(imports=['imse_seg.seg.models'], allow_failed_imports=False)
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    size=(1024, 1024),
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='MixVisionTransformerMixedNorm',
        in_channels=3,
        embed_dims=64,
        num_stages=4,
        num_layers=[3, 6, 40, 3],
        num_heads=[1, 2, 5, 8],
        patch_sizes=[7, 3, 3, 3],
        strides=[4, 2, 2, 2],
        sr_ratios=[8, 4, 2, 1],
        out_indices=(0, 1, 2, 3),
        mlp_ratio=4,
        qkv_bias=True,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.1,
        norm_cfg=dict(type='LN', eps=1e-6),
        patch_embed_norm_cfg=dict(type='LN', eps=1e-5),
        sr_norm_cfg=dict(type='LN', eps=1e-5)),
    decode_head=dict(
        type='SegFormerMLPHead',
        in_channels=[64, 128, 320, 512],
        in_index=[0, 1, 2, 3],
        channels=768,
        dropout_ratio=0.1,
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(1024, 1024), stride=(768, 768)))
