"""The framework-free core of imse_seg: plain PyTorch, no mmseg or timm imports.

- :mod:`.spectral`: spectral layers (IMSE, methods.md 1.1) and their input recording.
- :mod:`.spectral_code`: snapshots of all singular values as one code.
- :mod:`.parameters`: which parameters adapt, and counting them.
- :mod:`.entropy`, :mod:`.diversity`, :mod:`.stag`, :mod:`.objective`: the losses (SAR/IMSE reliable
  entropy, IMSE diversity, STAG alignment) composed per method; :mod:`.sam`, :mod:`.update`: the update.
- :mod:`.mean_teacher`: CoTTA's teacher, multi-view pseudo-labels and stochastic restore.
- :mod:`.norm_statistics`: which moments BatchNorm layers normalise with at test time (source, test, blend).
- :mod:`.recovery`: SAR's model recovery; :mod:`.adapters`, :mod:`.vida`: ViDA's domain adapters and teacher.
- :mod:`.domain_stats`, :mod:`.code_bank`: domain statistics, shift detection and the spectral code bank
  (IMSE, methods.md 1.4).
"""
from .code_bank import (BankEntry, BankEvent, MixtureRetrieval, NewDomainRule, RetrievedCode, SpectralCodeBank,
                        TopOneRetrieval)
from .diversity import diversity, layer_diversity
from .entropy import (NonFiniteError, assert_finite, entropy, entropy_margin, masked_mean, mean_entropy,
                      reliable_entropy, reliable_mask, valid_mask)
from .objective import DiversityLoss, EntropyLoss, ForwardOutputs, Objective, SelfTrainingLoss, StagLoss
from .sam import SAM
from .stag import (StagAlignment, StagRowAlignment, StagWeightAlignment, alignment_loss, entropy_feature_gradient,
                   entropy_gradient, structural_anchors, structural_logit_gradients)
from .update import closure_step
from .adapters import DomainAdapter, domain_adapters, inject_domain_adapters, set_adapter_scales
from .norm_statistics import (BatchStatistics, BlendedStatistics, TestStatistics, norm_statistics_of,
                              remove_norm_statistics, use_norm_statistics)
from .recovery import ModelRecovery, perturbed_reliable_entropy
from .vida import (RandomViews, ema_update_with_adapters, homeostatic_scales, symmetric_cross_entropy,
                   view_uncertainty)
from .domain_stats import (DomainStatistics, RunningStatistics, ThresholdCalibration, channel_statistics,
                           pool_statistics, symmetric_kl)
from .parameters import ParameterCount, count_parameters, train_only, trainable_parameters
from .spectral import SpectralLayer, SpectralWeight, record_expert_activations, spectralize
from .spectral_code import (SpectralCode, check_code_matches, initial_spectral_code, load_spectral_code,
                            reset_spectral_code, spectral_code)

__all__ = [
    'DiversityLoss', 'EntropyLoss', 'ForwardOutputs', 'NonFiniteError', 'Objective', 'SAM', 'SelfTrainingLoss',
    'StagAlignment', 'StagLoss', 'StagRowAlignment', 'StagWeightAlignment', 'alignment_loss', 'assert_finite',
    'closure_step', 'diversity', 'entropy', 'entropy_feature_gradient', 'entropy_gradient', 'entropy_margin',
    'layer_diversity', 'masked_mean', 'mean_entropy', 'reliable_entropy', 'reliable_mask',
    'structural_anchors', 'structural_logit_gradients', 'valid_mask',
    'BankEntry', 'BankEvent', 'DomainStatistics', 'MixtureRetrieval', 'NewDomainRule', 'RetrievedCode',
    'RunningStatistics', 'SpectralCodeBank', 'ThresholdCalibration', 'TopOneRetrieval', 'channel_statistics',
    'pool_statistics', 'symmetric_kl',
    'ParameterCount', 'SpectralCode', 'SpectralLayer', 'SpectralWeight', 'check_code_matches',
    'count_parameters', 'initial_spectral_code', 'load_spectral_code', 'record_expert_activations',
    'reset_spectral_code', 'spectral_code', 'spectralize', 'train_only', 'trainable_parameters',
    'BatchStatistics', 'BlendedStatistics', 'DomainAdapter', 'ModelRecovery', 'RandomViews', 'TestStatistics',
    'domain_adapters', 'ema_update_with_adapters', 'homeostatic_scales', 'inject_domain_adapters',
    'norm_statistics_of', 'perturbed_reliable_entropy', 'remove_norm_statistics', 'set_adapter_scales',
    'symmetric_cross_entropy', 'use_norm_statistics', 'view_uncertainty',
]
