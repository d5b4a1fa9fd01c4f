"""A MixVisionTransformer whose patch-embedding and spatial-reduction norms have their own config.

mmseg 1.x's ``MixVisionTransformer`` builds every LayerNorm from one ``norm_cfg``. NVlabs' SegFormer (the
source of the Cityscapes checkpoints) does not: its block and stage norms use eps 1e-6 while the
patch-embedding norms and the attention's spatial-reduction norm are ``nn.LayerNorm`` defaults (eps 1e-5).
That difference moves the logits of a converted B5 by ~1e-2, so the exact source model needs both. This
subclass builds the parent unchanged and then rebuilds those two kinds of norm from their own configs; the
module tree and state-dict keys are the parent's.
"""
from __future__ import annotations

from mmcv.cnn import build_norm_layer
from mmseg.models.backbones import MixVisionTransformer
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType


@MODELS.register_module()
class MixVisionTransformerMixedNorm(MixVisionTransformer):
    """``MixVisionTransformer`` with separate norm configs for the patch embeddings and the attention's
    spatial-reduction norm.

    Args:
        patch_embed_norm_cfg: norm of each stage's overlapping patch embedding (``layers[i][0].norm``);
            ``None`` keeps ``norm_cfg``.
        sr_norm_cfg: norm after the attention's spatial-reduction conv (``attn.norm``, stages with
            ``sr_ratio > 1``); ``None`` keeps ``norm_cfg``.
        norm_cfg: every other LayerNorm (``norm1``/``norm2`` of each block and each stage's final norm).
        **kwargs: the remaining :class:`mmseg.models.backbones.MixVisionTransformer` arguments.
    """

    def __init__(self,
                 patch_embed_norm_cfg: OptConfigType = None,
                 sr_norm_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='LN', eps=1e-6),
                 **kwargs) -> None:
        super().__init__(norm_cfg=norm_cfg, **kwargs)
        for patch_embed, blocks, _ in self.layers:
            if patch_embed_norm_cfg is not None:
                patch_embed.norm = build_norm_layer(patch_embed_norm_cfg, patch_embed.embed_dims)[1]
            if sr_norm_cfg is not None:
                for block in blocks:
                    if block.attn.sr_ratio > 1:
                        block.attn.norm = build_norm_layer(sr_norm_cfg, block.attn.embed_dims)[1]
