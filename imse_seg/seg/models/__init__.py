"""Registered model components: the published SegFormer decode head, an MiT with NVlabs' norm eps, and
the EfficientViT backbone and segmentation head."""
from .efficientvit import EfficientViTBackbone
from .efficientvit_head import EfficientViTSegHead
from .mit_mixed_norm import MixVisionTransformerMixedNorm
from .segformer_mlp_head import SegFormerMLPHead

__all__ = ['EfficientViTBackbone', 'EfficientViTSegHead', 'MixVisionTransformerMixedNorm', 'SegFormerMLPHead']
