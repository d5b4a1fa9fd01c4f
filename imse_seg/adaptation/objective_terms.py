"""Config-built loss terms: each factory turns a term config into a core term on the adapted model.

A term config is ``dict(type=..., weight=..., **args)``; the factory receives the
:class:`AdaptationContext` (the model and its spectral layers), which is what the core terms need
beyond their numbers: the layers whose experts the diversity loss reads, the classifier that STAG's
anchors come from. The classifier input a STAG reading captures is handed on in float32 at least, as the
logits are (:mod:`imse_seg.core.precision`).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from torch import Tensor, nn

from imse_seg.core import SpectralLayer, record_expert_activations
from imse_seg.core.objective import DiversityLoss, EntropyLoss, Objective, SelfTrainingLoss, StagLoss
from imse_seg.core.precision import at_least_float32
from imse_seg.core.spectral import linear_module_patterns
from imse_seg.core.stag import StagAlignment, StagRowAlignment, StagWeightAlignment
from imse_seg.errors import ConfigError

from imse_seg.registry import ADAPTATION, build_adaptation

for _alignment in (StagAlignment, StagWeightAlignment, StagRowAlignment):
    ADAPTATION.register_module(module=_alignment)


def objective_term(factory: Callable) -> Callable:
    """Register a term factory; its configs may also hold ``weight`` (taken by :func:`build_objective`)."""
    factory.extra_config_keys = ('weight',)
    return ADAPTATION.register_module(module=factory)


@dataclass
class AdaptationContext:
    """What term factories may use: the model, its spectral layers, the classifier input if captured."""
    model: nn.Module
    layers: list[SpectralLayer] = field(default_factory=list)
    classifier_input: dict[str, Tensor] = field(default_factory=dict)


@objective_term
def EntropyTerm(context: AdaptationContext, margin: float | None = None,
                keep_first_selection: bool = True) -> EntropyLoss:
    """Mean entropy (TENT, ``margin=None``) or reliable entropy with ``e0 = margin ln K`` (SAR/IMSE).

    ``keep_first_selection`` (reliable entropy under SAM): the second forward counts only the samples that
    were reliable in the first (official SAR/IMSE, default) or re-selects from scratch (False); see
    :class:`~imse_seg.core.objective.EntropyLoss`.
    """
    return EntropyLoss(margin, keep_first_selection)


@objective_term
def SelfTrainingTerm(context: AdaptationContext, input_resolution: bool = True) -> SelfTrainingLoss:
    """Cross-entropy to the model's own arg-max (the CoTTA paper's TENT variant), by default at the input's
    resolution as the official code (see :class:`~imse_seg.core.objective.SelfTrainingLoss`)."""
    return SelfTrainingLoss(input_resolution)


@objective_term
def DiversityTerm(context: AdaptationContext, layers: Sequence[str], ratio: float = 1.0) -> DiversityLoss:
    """IMSE's diversity over the spectral layers whose names match ``layers`` (recording switched on)."""
    chosen = [layer for layer in context.layers
              if any(fnmatch.fnmatchcase(layer.name, pattern) for pattern in layers)]
    if not chosen:
        raise ConfigError(f'DiversityTerm: patterns {list(layers)} match no spectral layer '
                          f'({len(context.layers)} converted'
                          f'{", e.g. " + repr(context.layers[0].name) if context.layers else ""})')
    record_expert_activations(chosen)
    return DiversityLoss(chosen, ratio)


@objective_term
def StagTerm(context: AdaptationContext, alignment: str = 'StagAlignment',
             classifier: str = 'decode_head.conv_seg') -> StagLoss:
    """STAG alignment with anchors from the frozen ``classifier`` (mmseg: ``decode_head.conv_seg``; timm
    ViT: ``head``).

    ``alignment`` names the reading (methods.md 2): ``StagAlignment`` (A, feature gradient, default),
    ``StagWeightAlignment`` (B) or ``StagRowAlignment`` (C); B and C need the classifier's input, which a
    forward pre-hook on ``classifier`` captures into the context.
    """
    module = classifier_module(context.model, classifier)
    built = ADAPTATION.get(alignment).from_classifier(module)
    if not isinstance(built, StagAlignment):
        module.register_forward_pre_hook(
            lambda _, args: context.classifier_input.__setitem__('features', at_least_float32(args[0])))
    return StagLoss(built)


def classifier_module(model: nn.Module, name: str) -> nn.Linear | nn.Conv2d:
    """The classifier ``name`` of ``model`` (STAG's anchors), or a :class:`ConfigError` naming the option.

    A decode head without mmseg's ``conv_seg`` (Segmenter's mask head classifies by class embeddings) has
    no default: the message names the option and lists the model's linear modules.
    """
    try:
        module = model.get_submodule(name)
    except AttributeError:
        module = None
    if not isinstance(module, (nn.Linear, nn.Conv2d)):
        found = 'no module' if module is None else f'a {type(module).__name__}, not a linear classifier,'
        raise ConfigError(f'StagTerm: the model has {found} at {name!r}; STAG\'s anchors are the rows of a '
                          'linear classifier with one output per class: name it with the STAG term\'s '
                          'classifier= option (objective.stag.classifier), or leave STAG out for this head. '
                          f'Linear modules (indices as *): {", ".join(linear_module_patterns(model)) or "none"}')
    return module


def build_objective(terms: Mapping[str, Mapping], context: AdaptationContext) -> Objective:
    """``{name: dict(type=..., weight=w, **args)}`` -> :class:`Objective` of weighted core terms."""
    built = {}
    for name, cfg in terms.items():
        cfg = dict(cfg)
        weight = cfg.pop('weight', 1.0)
        built[name] = (weight, build_adaptation(cfg, context=context))
    return Objective(built)
