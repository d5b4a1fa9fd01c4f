"""Which parameters a method adapts, chosen by module type or by spectral conversion (not by name rules).

mmseg 1.x names break the name rules of older CTTA code (stage norms are ``layers.{i}.2``, the packed
attention weight is ``in_proj_weight``), so norm layers are found by type; name globs only exclude.

Every selection also sets which moments the model's BatchNorm layers normalise with (``statistics``, see
:mod:`.norm_statistics`; None: the source's running moments), so that TENT, IMSE and CoTTA configure it
the same way.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from imse_seg.core import SpectralLayer, spectralize, train_only
from imse_seg.errors import ConfigError

from imse_seg.registry import ADAPTATION
from .norm_statistics import apply_norm_statistics

NORM_TYPES = (_NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass
class ParameterSelection:
    """The parameters to optimise, and the spectral layers created on the way (empty if none)."""
    params: list[nn.Parameter]
    layers: list[SpectralLayer] = field(default_factory=list)


@ADAPTATION.register_module()
class NormParameters:
    """The affine parameters of the normalisation layers (TENT; CoTTA paper's TENT variant; SAR).

    ``exclude``: globs over module names (``fnmatch``, ``*`` crosses dots) of norm layers that stay frozen;
    SAR (``sar.collect_params``) leaves out the top of the network, e.g. a ViT-B's blocks 9-11 and its final
    norm. Each pattern must match a norm layer. ``statistics``: the BatchNorm moments (module docstring).
    """

    def __init__(self, exclude: Sequence[str] | None = None, statistics: Mapping | None = None) -> None:
        self.exclude = list(exclude or [])
        self.statistics = None if statistics is None else dict(statistics)

    def __call__(self, model: nn.Module) -> ParameterSelection:
        apply_norm_statistics(model, self.statistics)
        norms = [(name, m) for name, m in model.named_modules() if isinstance(m, NORM_TYPES)]
        for pattern in self.exclude:
            if not any(fnmatch.fnmatchcase(name, pattern) for name, _ in norms):
                raise ValueError(f'NormParameters: exclude pattern {pattern!r} matches no norm layer of '
                                 f'{type(model).__name__} (e.g. {norms[0][0] if norms else None!r})')
        params = [p for name, m in norms
                  if not any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude)
                  for p in (m.weight, m.bias) if p is not None]
        return ParameterSelection(train_only(model, params))


@ADAPTATION.register_module()
class AllParameters:
    """Every parameter of the model (CoTTA's student); ``statistics``: the BatchNorm moments."""

    def __init__(self, statistics: Mapping | None = None) -> None:
        self.statistics = None if statistics is None else dict(statistics)

    def __call__(self, model: nn.Module) -> ParameterSelection:
        apply_norm_statistics(model, self.statistics)
        return ParameterSelection(train_only(model, list(model.parameters())))


@ADAPTATION.register_module()
class SpectralParameters:
    """Convert the ``convert`` layers to spectral layers; train the singular values of those in ``train``.

    IMSE (methods.md 1.1) converts every attention/MLP linear map of the transformer blocks but trains
    only the singular values of the earlier blocks; the converted later blocks serve the diversity loss.
    Patterns are globs over module names (see :func:`imse_seg.core.spectralize`); ``train`` defaults to
    all converted layers. ``statistics``: the BatchNorm moments (module docstring).
    """

    def __init__(self, convert: Sequence[str], train: Sequence[str] | None = None,
                 exclude: Sequence[str] | None = None, statistics: Mapping | None = None) -> None:
        self.convert = list(convert)
        self.train = list(train) if train is not None else None
        self.exclude = list(exclude) if exclude is not None else None
        self.statistics = None if statistics is None else dict(statistics)

    def __call__(self, model: nn.Module) -> ParameterSelection:
        apply_norm_statistics(model, self.statistics)
        layers = spectralize(model, self.convert, self.exclude)
        if self.train is None:
            trained = layers
        else:
            trained = [layer for layer in layers
                       if any(fnmatch.fnmatchcase(layer.name, pattern) for pattern in self.train)]
            if not trained:
                raise ConfigError(f'SpectralParameters: train patterns {self.train} match none of the '
                                  f'{len(layers)} converted layers (e.g. {layers[0].name!r})')
        return ParameterSelection(train_only(model, [layer.singular_values for layer in trained]), layers)
