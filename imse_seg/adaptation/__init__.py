"""Adaptation methods for any model: registered, config-built glue over :mod:`imse_seg.core`.

No mmseg or timm here: a task adapter (segmentation in :mod:`imse_seg.seg`, classification in
:mod:`imse_seg.cls`) hands a method the model and how to run it.
"""
from .entropy_adaptation import EntropyAdaptation
from .guard import DivergenceGuard, GuardEvent
from .method import AdaptationMethod, Forward, ValidRegion, clone_state
from .norm_statistics import NormStatisticsAdaptation, apply_norm_statistics
from .objective_terms import AdaptationContext, build_objective
from .parameters import AllParameters, NormParameters, ParameterSelection, SpectralParameters
from .sar import SAR
from .source import Source
from .vida import ViDA

__all__ = ['AdaptationContext', 'AdaptationMethod', 'AllParameters', 'DivergenceGuard', 'EntropyAdaptation',
           'Forward', 'GuardEvent', 'NormParameters', 'NormStatisticsAdaptation', 'ParameterSelection', 'SAR',
           'Source', 'SpectralParameters', 'ValidRegion', 'ViDA', 'apply_norm_statistics', 'build_objective',
           'clone_state']
