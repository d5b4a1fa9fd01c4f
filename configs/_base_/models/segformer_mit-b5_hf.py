# SegFormer-B5 as Hugging Face builds it (SegformerForSemanticSegmentation), for weights converted from a
# Hugging Face model directory by tools/convert_checkpoint.py. Same as the NVlabs model except the LayerNorm
# eps: Hugging Face's nn.LayerNorm modules use PyTorch's default 1e-5 everywhere (config.json's
# layer_norm_eps is not read by them).
_base_ = ['./segformer_mit-b5_nvlabs.py']
model = dict(
    backbone=dict(
        norm_cfg=dict(type='LN', eps=1e-5),
        patch_embed_norm_cfg=dict(type='LN', eps=1e-5),
        sr_norm_cfg=dict(type='LN', eps=1e-5)))
