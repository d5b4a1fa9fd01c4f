"""ViDA (Liu et al., "ViDA: Homeostatic Visual Domain Adapter for Continual Test Time Adaptation", ICLR 2024).

Follows Yangsenqiao/vida ``imagenet/vida.py`` and ``imagenet/inject_vida.py`` (with ``imagenet/conf.py``,
``imagenet/cfgs/vit/vida.yaml`` and ``imagenet/imagenetc.py`` for the defaults); the segmentation setting,
which has no public code, follows the paper with the choices written in the methods files.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import torch
from mmengine.registry import OPTIMIZERS
from torch import Tensor, nn

from imse_seg.core.adapters import domain_adapters, inject_domain_adapters, set_adapter_scales
from imse_seg.core.distributed import average_gradients_across_ranks
from imse_seg.core.parameters import train_only
from imse_seg.core.update import closure_step
from imse_seg.core.vida import (RandomViews, ema_update_with_adapters, homeostatic_scales, symmetric_cross_entropy,
                                view_uncertainty)
from imse_seg.registry import ADAPTATION, build_adaptation

from .method import AdaptationMethod, Forward, ValidRegion, load_parameters
from .norm_statistics import apply_norm_statistics

ADAPTATION.register_module(module=RandomViews)


@ADAPTATION.register_module()
class ViDA(AdaptationMethod):
    """Domain adapters beside the dense layers, a mean teacher, and the homeostatic knowledge allotment.

    Set-up (``configure_model``, ``copy_model_and_optimizer``): a :class:`~imse_seg.core.adapters.DomainAdapter`
    (ranks ``low_rank``, ``high_rank``) beside every layer matching ``targets``; every parameter of the
    model and of its adapters trains (the official ``collect_params``), in two groups: the model's with
    ``optimizer``'s lr, the adapters' with ``adapter_lr``. The teacher is a copy of the injected model,
    in eval mode, never differentiated. Per batch (``forward_and_adapt``):

    1. the teacher predicts ``views`` (``RandomViews``: 10 augmented views); their uncertainty
       (:func:`~imse_seg.core.vida.view_uncertainty`, ``uncertainty_scale`` 0.1) sets the adapters' scales
       of student and teacher (:func:`~imse_seg.core.vida.homeostatic_scales` with
       ``uncertainty_threshold``);
    2. the teacher predicts the batch: the scored prediction and the student's target;
    3. the student takes one step on the symmetric cross-entropy to it (valid pixels only);
    4. the teacher follows by EMA, ``teacher_momentum`` for the model's parameters and ``adapter_momentum``
       for the adapters'.

    Deviations, each for a reason: the official ``set_scale`` sets ``scale1`` with ``if`` and ``scale2`` with
    ``elif`` on modules that have both, so its high-rank scale stays 1.0; ``allot_high_rank=True`` (default)
    sets both scales as the paper's equations do, ``False`` reproduces the official code. Models stay in
    eval mode (the official student runs in train mode; on BatchNorm models choose ``statistics``, e.g.
    ``TestStatistics`` for the official train-mode BN). The official adapters start from a checkpoint
    warmed up on source data; here they start from their initialisation (zero up-projections: the source
    model). ``predict`` (the divergence guard's fallback) is the teacher's, like the scored prediction.
    """

    def __init__(self, targets: Sequence[str], optimizer: Mapping, adapter_lr: float, low_rank: int = 1,
                 high_rank: int = 128, views: Mapping | None = None, uncertainty_threshold: float = 0.2,
                 uncertainty_scale: float = 0.1, teacher_momentum: float = 0.999, adapter_momentum: float = 0.8,
                 allot_high_rank: bool = True, statistics: Mapping | None = None, seed: int = 0) -> None:
        self.targets = list(targets)
        self.optimizer_cfg = dict(optimizer)
        self.adapter_lr = adapter_lr
        self.low_rank = low_rank
        self.high_rank = high_rank
        self.views = build_adaptation(views if views is not None else dict(type='RandomViews'))
        self.uncertainty_threshold = uncertainty_threshold
        self.uncertainty_scale = uncertainty_scale
        self.teacher_momentum = teacher_momentum
        self.adapter_momentum = adapter_momentum
        self.allot_high_rank = allot_high_rank
        self.statistics = None if statistics is None else dict(statistics)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.scales = (1.0, 1.0)

    def setup(self, model: nn.Module, forward: Forward) -> None:
        super().setup(model, forward)
        apply_norm_statistics(model, self.statistics)
        inject_domain_adapters(model, self.targets, self.low_rank, self.high_rank, self.seed)
        adapter_ids = {id(p) for adapter in domain_adapters(model) for p in adapter.parameters()}
        self.params = train_only(model, list(model.parameters()))
        model_params = [p for p in self.params if id(p) not in adapter_ids]
        adapter_params = [p for p in self.params if id(p) in adapter_ids]
        cfg = dict(self.optimizer_cfg)
        self.optimizer = OPTIMIZERS.get(cfg.pop('type'))(
            [dict(params=model_params), dict(params=adapter_params, lr=self.adapter_lr)], **cfg)
        average_gradients_across_ranks(self.params)
        self.teacher = copy.deepcopy(model).eval().requires_grad_(False)
        self.student = model

    def adapt(self, model: nn.Module, inputs: Tensor, valid: ValidRegion | None = None) -> Tensor:
        with torch.no_grad():
            views = self.views(lambda x: self.forward(self.teacher, x), inputs, self.generator)
            uncertainty = view_uncertainty(views, None if valid is None else valid(views[0]),
                                           self.uncertainty_scale)
            low, high = homeostatic_scales(uncertainty, self.uncertainty_threshold)
            self._set_scales((low, high if self.allot_high_rank else 1.0))
            target = self.forward(self.teacher, inputs)

        def closure() -> Tensor:
            logits = self.forward(model, inputs)
            return symmetric_cross_entropy(logits, target, None if valid is None else valid(logits))

        with torch.enable_grad():
            closure_step(self.optimizer, closure)
        ema_update_with_adapters(self.teacher, model, self.teacher_momentum, self.adapter_momentum)
        return target

    def predict(self, model: nn.Module, inputs: Tensor) -> Tensor:
        """The teacher's logits with the current scales, as scored by :meth:`adapt`."""
        with torch.no_grad():
            return self.forward(self.teacher, inputs)

    def _set_scales(self, scales: tuple[float, float]) -> None:
        self.scales = (float(scales[0]), float(scales[1]))
        for model in (self.student, self.teacher):
            set_adapter_scales(model, *self.scales)

    def adapted_parameters(self) -> list[nn.Parameter]:
        return list(self.params)

    def state_dict(self) -> dict[str, Any]:
        """Student parameters (adapters included), optimiser, teacher, view generator and adapter scales."""
        return dict(params=[p.detach() for p in self.params], optimizer=self.optimizer.state_dict(),
                    teacher=self.teacher.state_dict(), generator=self.generator.get_state(),
                    scales=list(self.scales))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_parameters(self.params, state['params'], type(self).__name__)
        self.optimizer.load_state_dict(state['optimizer'])
        self.teacher.load_state_dict(state['teacher'])
        self.generator.set_state(state['generator'])
        self._set_scales(tuple(state['scales']))
