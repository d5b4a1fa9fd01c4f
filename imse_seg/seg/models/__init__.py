"""Registered model components: the published SegFormer decode head and an MiT with NVlabs' norm eps."""
from .mit_mixed_norm import MixVisionTransformerMixedNorm
from .segformer_mlp_head import SegFormerMLPHead

__all__ = ['MixVisionTransformerMixedNorm', 'SegFormerMLPHead']
