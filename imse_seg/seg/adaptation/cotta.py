"""CoTTA (Wang et al., CVPR 2022) on an mmseg segmentor, as its segmentation code runs it."""
from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import torch
from mmengine.registry import OPTIMIZERS
from torch import Tensor, nn

from imse_seg.core.distributed import average_gradients_across_ranks
from imse_seg.core.mean_teacher import (confident_or_averaged, ema_update, multi_view_probabilities,
                                        stochastic_restore)
from imse_seg.core.update import closure_step
from imse_seg.registry import ADAPTATION

from imse_seg.adaptation.method import AdaptationMethod, Forward, ValidRegion, load_parameters
from imse_seg.adaptation.parameters import AllParameters

COTTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


@ADAPTATION.register_module()
class CoTTA(AdaptationMethod):
    """Mean teacher with augmentation-averaged pseudo-labels and stochastic restore.

    Per batch, with the student, teacher and anchor all in eval mode as in the official segmentation code
    (qinenergy/cotta, ``acdc-submission/mmseg/apis/test.py``, ``single_gpu_cotta``: dropout, drop-path and
    BatchNorm in inference behaviour, so the anchor never moves and the teacher's predictions are
    deterministic): the frozen source ("anchor") model predicts the plain view; the teacher predicts
    ``scales`` x (no flip, flip) views (14 by default); where the anchor's max probability exceeds
    ``confidence`` the teacher's plain-view probabilities are kept, elsewhere the view average. That map
    is the scored prediction and the student's target: the student (all parameters) takes one step on the
    soft cross-entropy to it; the teacher follows by EMA (``ema``) and each student weight element returns
    to its source value with probability ``restore_probability``.
    ``reset_each_segment`` re-creates the optimiser state at segment starts, as the published code does at
    condition changes (teacher and anchor persist).
    """

    def __init__(self, optimizer: Mapping, scales: Sequence[float] = COTTA_SCALES, flip: bool = True,
                 confidence: float = 0.69, ema: float = 0.999, restore_probability: float = 0.01,
                 reset_each_segment: bool = False, seed: int = 0) -> None:
        self.optimizer_cfg = dict(optimizer)
        self.scales = tuple(scales)
        self.flip = flip
        self.confidence = confidence
        self.ema = ema
        self.restore_probability = restore_probability
        self.reset_each_segment = reset_each_segment
        self.generator = torch.Generator().manual_seed(seed)

    def setup(self, segmentor: nn.Module, forward: Forward) -> None:
        super().setup(segmentor, forward)
        self.params = AllParameters()(segmentor).params
        self.source_state = {name: p.detach().clone() for name, p in segmentor.named_parameters()}
        # Copies of a model the runner still holds in train mode: they are not its submodules, so nothing
        # but this method ever switches them.
        self.teacher = copy.deepcopy(segmentor).requires_grad_(False).eval()
        self.anchor = copy.deepcopy(segmentor).requires_grad_(False).eval()
        cfg = dict(self.optimizer_cfg)
        self.optimizer = OPTIMIZERS.get(cfg.pop('type'))(self.params, **cfg)
        average_gradients_across_ranks(self.params)

    def start_segment(self, name: str) -> None:
        if self.reset_each_segment:
            self.optimizer.state.clear()

    def adapt(self, segmentor: nn.Module, inputs: Tensor, valid: ValidRegion | None = None) -> Tensor:
        for model in (segmentor, self.teacher, self.anchor):
            model.eval()
        with torch.no_grad():
            anchor = self.forward(self.anchor, inputs).softmax(dim=1)
            averaged, plain = multi_view_probabilities(lambda x: self.forward(self.teacher, x), inputs,
                                                       self.scales, self.flip)
            target = confident_or_averaged(anchor, plain, averaged, self.confidence)

        def closure() -> Tensor:
            logits = self.forward(segmentor, inputs)
            per_pixel = -(target * logits.log_softmax(dim=1)).sum(dim=1)
            mask = None if valid is None else valid(logits)
            return per_pixel.mean() if mask is None else per_pixel[mask].mean()

        with torch.enable_grad():
            closure_step(self.optimizer, closure)
        ema_update(self.teacher, segmentor, self.ema)
        stochastic_restore(segmentor, self.source_state, self.restore_probability, self.generator)
        return target.clamp_min(1e-12).log()

    def adapted_parameters(self) -> list[nn.Parameter]:
        return list(self.params)

    def state_dict(self) -> dict[str, Any]:
        """Student parameters, optimiser state, teacher and the restore generator.

        The anchor and the restore targets are copies of the source model, rebuilt by ``setup`` from the
        same checkpoint; they never change, so they are not part of the state.
        """
        return dict(params=[p.detach() for p in self.params], optimizer=self.optimizer.state_dict(),
                    teacher=self.teacher.state_dict(), generator=self.generator.get_state())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_parameters(self.params, state['params'], type(self).__name__)
        self.optimizer.load_state_dict(state['optimizer'])
        self.teacher.load_state_dict(state['teacher'])
        self.generator.set_state(state['generator'])
