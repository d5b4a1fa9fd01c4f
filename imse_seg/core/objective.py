"""Composable adaptation objectives: each method is a weighted set of loss terms (methods.md 1.2, 1.3, 2).

A term is a small module called on the outputs of one forward pass; an :class:`Objective` sums weighted
terms and reports each part. The methods are configurations of the same pieces, not copies::

    tent      = Objective({'entropy': (1.0, EntropyLoss())})
    tent_stag = Objective({'entropy': (1.0, EntropyLoss()),
                           'stag': (1.0, StagLoss(StagAlignment.from_classifier(head.conv_seg)))})
    imse      = Objective({'entropy': (1.0, EntropyLoss(margin=0.4)),
                           'diversity': (lam, DiversityLoss(layers, ratio=1.0))})
    imse_stag = Objective({**imse.parts(), 'stag': (1.0, StagLoss(alignment))})

with IMSE's optimiser ``SAM(singular_values, torch.optim.Adam, rho=0.05, lr=...)`` (:mod:`.sam`), whose
closure re-runs the forward and this objective. Constructor arguments are plain (numbers, layer lists,
modules) so the adapter layer can register the classes in an mmengine registry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .diversity import diversity
from .entropy import assert_finite, check_logits, check_valid, masked_mean, mean_entropy, reliable_entropy
from .spectral import SpectralLayer


@dataclass
class ForwardOutputs:
    """What one forward pass hands the objective.

    ``logits``: B x K or B x K x H x W. ``valid``: bool mask shaped like the logits without dim 1 (padding
    and ignore-index pixels False; None = all count). ``features``: the classifier's input, B x D [x H x W],
    needed only by the STAG readings that use it. ``input_size``: the model input's H x W, for the terms
    that upsample segmentation logits to it. ``first_logits``: in the second (perturbed) forward of a SAM
    step, the first forward's logits (detached), for the terms that keep the first forward's selection;
    None in a first forward.
    """
    logits: Tensor
    valid: Tensor | None = None
    features: Tensor | None = None
    input_size: tuple[int, int] | None = None
    first_logits: Tensor | None = None


class EntropyLoss(nn.Module):
    """Entropy minimisation: TENT's mean entropy (``margin=None``) or SAR/IMSE's reliable entropy.

    With a margin m, only samples or pixels with ``H < m * ln K`` count (methods.md 1.2; m = 0.4 in SAR and
    IMSE). In the second forward of a SAM step the official rule (SAR, mr-eggplant/SAR ``sar.py``,
    ``forward_and_adapt_sar``, which IMSE reuses) counts the samples that were reliable in the first forward
    *and* are still reliable in the second, averaging their second-forward entropy; that is the default
    (``keep_first_selection=True``). ``keep_first_selection=False`` re-selects from the second forward alone
    (the toolkit's earlier rule). Without SAM there is one forward and the two agree.
    """

    def __init__(self, margin: float | None = None, keep_first_selection: bool = True) -> None:
        super().__init__()
        if margin is None and not keep_first_selection:
            raise ValueError('keep_first_selection=False only changes the reliable-entropy filter: give a '
                             'margin, or leave it at its default')
        self.margin = margin
        self.keep_first_selection = keep_first_selection

    def extra_repr(self) -> str:
        return f'margin={self.margin}, keep_first_selection={self.keep_first_selection}'

    def forward(self, outputs: ForwardOutputs) -> Tensor:
        if self.margin is None:
            return mean_entropy(outputs.logits, outputs.valid)
        first = outputs.first_logits if self.keep_first_selection else None
        return reliable_entropy(outputs.logits, self.margin, outputs.valid, first)


class SelfTrainingLoss(nn.Module):
    """Cross-entropy to the model's own arg-max prediction, over valid samples or pixels.

    The TENT variant the CoTTA paper runs for segmentation (its "TENT" student loss). Official code
    (qinenergy/cotta, ``acdc-submission/mmseg/apis/test.py``, ``single_gpu_tent``): the pseudo-label is the
    prediction at full resolution and mmseg's decode-head loss upsamples the logits to it, so by default
    (``input_resolution=True``) segmentation logits are upsampled (bilinear, ``align_corners=False`` as
    SegFormer's head) to ``ForwardOutputs.input_size`` first and the arg-max is taken there; ``valid`` is
    upsampled with them (nearest). ``input_resolution=False`` works at the head's resolution (the toolkit's
    earlier loss; a quarter of SegFormer's input per side). Classification logits (B x K) are used as they
    are. The gradient with respect to the (upsampled) logits is ``p - onehot(argmax p)``; the pseudo-label is
    not differentiated.
    """

    def __init__(self, input_resolution: bool = True) -> None:
        super().__init__()
        self.input_resolution = input_resolution

    def extra_repr(self) -> str:
        return f'input_resolution={self.input_resolution}'

    def forward(self, outputs: ForwardOutputs) -> Tensor:
        logits, valid = outputs.logits, outputs.valid
        check_logits(logits)
        check_valid(valid, logits)
        if self.input_resolution and logits.dim() == 4:
            if outputs.input_size is None:
                raise ValueError('SelfTrainingLoss(input_resolution=True) needs ForwardOutputs.input_size to '
                                 'upsample segmentation logits')
            size = tuple(outputs.input_size)
            logits = F.interpolate(logits, size=size, mode='bilinear', align_corners=False)
            if valid is not None:
                valid = F.interpolate(valid[:, None].float(), size=size, mode='nearest')[:, 0].bool()
        pseudo = logits.detach().argmax(dim=1)
        return masked_mean(F.cross_entropy(logits, pseudo, reduction='none'), valid)


class DiversityLoss(nn.Module):
    """IMSE's diversity term, returned as ``-diversity`` so that a positive weight lambda maximises it.

    Reads what ``layers`` recorded in the forward pass that produced ``outputs`` (methods.md 1.3; see
    :func:`.diversity.diversity` for the normalisation over layers) and then clears it, so activations are
    never reused by a later call and their graph is released. Raises ``RuntimeError`` naming the first
    layer that recorded nothing (recording off, or the forward did not pass through it).
    """

    def __init__(self, layers: Sequence[SpectralLayer], ratio: float = 1.0) -> None:
        super().__init__()
        if len(layers) == 0:
            raise ValueError('DiversityLoss needs at least one spectral layer')
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f'diversity ratio must be in (0, 1], got {ratio}')
        self.layers = list(layers)
        self.ratio = ratio

    def extra_repr(self) -> str:
        return f'layers={len(self.layers)}, ratio={self.ratio}'

    def forward(self, outputs: ForwardOutputs) -> Tensor:
        activations = []
        for layer in self.layers:
            recorded = layer.expert_activations
            if recorded is None:
                raise RuntimeError(f'spectral layer {layer.name!r} recorded no expert activations: switch '
                                   'recording on with record_expert_activations(layers) before the forward')
            activations.append(recorded)
        for layer in self.layers:
            layer.weight.expert_activations = None
        return -diversity(activations, self.ratio)


class StagLoss(nn.Module):
    """STAG's alignment term: a frozen alignment module (:mod:`.stag`) applied to the forward's outputs."""

    def __init__(self, alignment: nn.Module) -> None:
        super().__init__()
        self.alignment = alignment

    def forward(self, outputs: ForwardOutputs) -> Tensor:
        return self.alignment(outputs.logits, outputs.valid, outputs.features)


class Objective(nn.Module):
    """A weighted sum of named loss terms: ``terms = {name: (weight, term)}``.

    Calling it checks that the logits (and features, if given) are finite, raising
    :class:`~.entropy.NonFiniteError` before any loss is formed, evaluates every term, checks each value is
    finite, and returns ``(total, parts)`` where ``parts`` maps each name (and ``'total'``) to its
    unweighted value as a float, for logging.
    """

    def __init__(self, terms: Mapping[str, tuple[float, nn.Module]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError('an objective needs at least one term')
        if 'total' in terms:
            raise ValueError("'total' is reserved for the summed loss in the logged parts")
        self.terms = nn.ModuleDict({name: term for name, (_, term) in terms.items()})
        self.weights = {name: float(weight) for name, (weight, _) in terms.items()}
        for name, weight in self.weights.items():
            if not math.isfinite(weight):
                raise ValueError(f'weight of term {name!r} is not finite: {weight}')

    def parts(self) -> dict[str, tuple[float, nn.Module]]:
        """The ``{name: (weight, term)}`` mapping this objective was built from (to extend a method)."""
        return {name: (self.weights[name], term) for name, term in self.terms.items()}

    def extra_repr(self) -> str:
        return ', '.join(f'{name}={weight:g}' for name, weight in self.weights.items())

    def forward(self, outputs: ForwardOutputs) -> tuple[Tensor, dict[str, float]]:
        assert_finite(outputs.logits.detach(), 'logits')
        if outputs.features is not None:
            assert_finite(outputs.features.detach(), 'classifier features')
        total: Tensor | None = None
        parts: dict[str, float] = {}
        for name, term in self.terms.items():
            value = term(outputs)
            assert_finite(value.detach(), f'loss term {name!r}')
            parts[name] = float(value.detach())
            weighted = self.weights[name] * value
            total = weighted if total is None else total + weighted
        parts['total'] = float(total.detach())
        return total, parts
