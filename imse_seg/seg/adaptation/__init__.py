"""Adaptation methods for mmseg segmentors, and the model that runs them."""
from .adaptive_segmentor import AdaptiveSegmentor
from .cotta import CoTTA
from .entropy_adaptation import EntropyAdaptation
from .method import AdaptationMethod
from .objective_terms import AdaptationContext
from .parameters import AllParameters, NormParameters, ParameterSelection, SpectralParameters
from .source import Source

__all__ = ['AdaptationContext', 'AdaptationMethod', 'AdaptiveSegmentor', 'AllParameters', 'CoTTA',
           'EntropyAdaptation', 'NormParameters', 'ParameterSelection', 'Source', 'SpectralParameters']
