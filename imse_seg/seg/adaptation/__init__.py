"""The segmentation side of adaptation: the adaptive mmseg model, and CoTTA's segmentation variant."""
from .adaptive_segmentor import AdaptiveSegmentor
from .cotta import CoTTA
from .segmentation import image_region, segmentor_logits

__all__ = ['AdaptiveSegmentor', 'CoTTA', 'image_region', 'segmentor_logits']
