"""Which parameters a method adapts, chosen by module type or by spectral conversion (not by name rules).

mmseg 1.x names break the name rules of older CTTA code (stage norms are ``layers.{i}.2``, the packed
attention weight is ``in_proj_weight``), so norm layers are found by type.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Sequence

from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from imse_seg.core import SpectralLayer, spectralize, train_only

from imse_seg.registry import ADAPTATION

NORM_TYPES = (_NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass
class ParameterSelection:
    """The parameters to optimise, and the spectral layers created on the way (empty if none)."""
    params: list[nn.Parameter]
    layers: list[SpectralLayer] = field(default_factory=list)


@ADAPTATION.register_module()
class NormParameters:
    """The affine parameters of every normalisation layer (TENT; CoTTA paper's TENT variant)."""

    def __call__(self, model: nn.Module) -> ParameterSelection:
        params = [p for m in model.modules() if isinstance(m, NORM_TYPES)
                  for p in (m.weight, m.bias) if p is not None]
        return ParameterSelection(train_only(model, params))


@ADAPTATION.register_module()
class AllParameters:
    """Every parameter of the model (CoTTA's student)."""

    def __call__(self, model: nn.Module) -> ParameterSelection:
        return ParameterSelection(train_only(model, list(model.parameters())))


@ADAPTATION.register_module()
class SpectralParameters:
    """Convert the ``convert`` layers to spectral layers; train the singular values of those in ``train``.

    IMSE (methods.md 1.1) converts every attention/MLP linear map of the transformer blocks but trains
    only the singular values of the earlier blocks; the converted later blocks serve the diversity loss.
    Patterns are globs over module names (see :func:`imse_seg.core.spectralize`); ``train`` defaults to
    all converted layers.
    """

    def __init__(self, convert: Sequence[str], train: Sequence[str] | None = None,
                 exclude: Sequence[str] | None = None) -> None:
        self.convert = list(convert)
        self.train = list(train) if train is not None else None
        self.exclude = list(exclude) if exclude is not None else None

    def __call__(self, model: nn.Module) -> ParameterSelection:
        layers = spectralize(model, self.convert, self.exclude)
        if self.train is None:
            trained = layers
        else:
            trained = [layer for layer in layers
                       if any(fnmatch.fnmatchcase(layer.name, pattern) for pattern in self.train)]
            if not trained:
                raise ValueError(f'SpectralParameters: train patterns {self.train} match none of the '
                                 f'{len(layers)} converted layers (e.g. {layers[0].name!r})')
        return ParameterSelection(train_only(model, [layer.singular_values for layer in trained]), layers)
