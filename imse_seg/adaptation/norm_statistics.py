"""BatchNorm statistics at test time: the registered components, and BN statistics adaptation as a method.

A method's parameter selection (``NormParameters``, ``SpectralParameters``, ``AllParameters``) and CoTTA, SAR
and ViDA take ``statistics=dict(type=...)``: ``TestStatistics`` (published TENT: the test batch's moments)
or ``BlendedStatistics`` (Schneider et al. 2020: source and test moments mixed with a weight on the test
batch); none (the default) keeps the source's running moments, the toolkit's behaviour so far. The
mechanism and the equations are in :mod:`imse_seg.core.norm_statistics`.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from imse_seg.core.norm_statistics import BlendedStatistics, TestStatistics, use_norm_statistics
from imse_seg.core.parameters import train_only
from imse_seg.registry import ADAPTATION, build_adaptation

from .method import AdaptationMethod, Forward, ValidRegion

for _statistics in (TestStatistics, BlendedStatistics):
    ADAPTATION.register_module(module=_statistics)


def apply_norm_statistics(model: nn.Module, statistics: Mapping | None) -> list[str]:
    """Build ``statistics`` and hook it on every BatchNorm layer of ``model``; return the layers' names.

    None leaves the model as it is (source moments). A config given for a model without any BatchNorm
    layer is an error: it would silently change nothing (LayerNorm models such as ViT and SegFormer's
    backbone have no running moments to replace).
    """
    if statistics is None:
        return []
    names = use_norm_statistics(model, build_adaptation(statistics))
    if not names:
        raise ValueError(f'{statistics["type"]} configured, but {type(model).__name__} has no BatchNorm layer: '
                         'there are no running moments to replace (LayerNorm/GroupNorm models are unchanged '
                         'by test statistics)')
    return names


@ADAPTATION.register_module()
class NormStatisticsAdaptation(AdaptationMethod):
    """BN statistics adaptation: the source model, its BatchNorm layers normalising with ``statistics``.

    No gradient and no state: each batch is predicted once, its own moments entering every BN layer (with
    ``TestStatistics``: the "BN adapt" baseline of Schneider et al. 2020 and Nado et al. 2020, TENT's
    ``norm`` method) or blended with the source's (``BlendedStatistics``, Schneider et al.'s prior). The
    first row of most CTTA tables. A model without BatchNorm layers is refused at set-up.
    """

    def __init__(self, statistics: Mapping) -> None:
        self.statistics_cfg = dict(statistics)

    def setup(self, model: nn.Module, forward: Forward) -> None:
        super().setup(model, forward)
        train_only(model, [])
        apply_norm_statistics(model, self.statistics_cfg)

    def adapt(self, model: nn.Module, inputs: Tensor, valid: ValidRegion | None = None) -> Tensor:
        with torch.no_grad():
            return self.forward(model, inputs)
