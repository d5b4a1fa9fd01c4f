"""The framework-free core of imse_seg: plain PyTorch, no mmseg or timm imports.

- :mod:`.spectral`: spectral layers (IMSE, methods.md 1.1) and their input recording.
- :mod:`.spectral_code`: snapshots of all singular values as one code.
- :mod:`.parameters`: which parameters adapt, and counting them.
"""
from .parameters import ParameterCount, count_parameters, train_only, trainable_parameters
from .spectral import SpectralLayer, SpectralWeight, record_expert_activations, spectralize
from .spectral_code import (SpectralCode, check_code_matches, initial_spectral_code, load_spectral_code,
                            reset_spectral_code, spectral_code)

__all__ = [
    'ParameterCount', 'SpectralCode', 'SpectralLayer', 'SpectralWeight', 'check_code_matches',
    'count_parameters', 'initial_spectral_code', 'load_spectral_code', 'record_expert_activations',
    'reset_spectral_code', 'spectral_code', 'spectralize', 'train_only', 'trainable_parameters',
]
