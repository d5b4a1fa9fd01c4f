"""The mean-teacher part CoTTA's segmentation and classification methods share: the student, teacher and
anchor copies, the teacher's EMA and the stochastic restore after each step, and the state they carry."""
from __future__ import annotations

import copy
from typing import Any

import torch
from mmengine.registry import OPTIMIZERS
from torch import nn

from imse_seg.core.mean_teacher import ema_update, stochastic_restore

from .method import AdaptationMethod, load_parameters
from .parameters import AllParameters


class MeanTeacherMethod(AdaptationMethod):
    """A method with a student (every parameter), an EMA teacher and a frozen source anchor (Wang et al.,
    CVPR 2022). Subclasses set ``optimizer_cfg``, ``statistics``, ``ema``, ``restore_probability`` and
    ``generator`` before :meth:`setup_mean_teacher`, and call :meth:`follow_student` after each step."""

    optimizer_cfg: dict
    statistics: dict | None
    ema: float
    restore_probability: float
    generator: torch.Generator

    def setup_mean_teacher(self, model: nn.Module) -> None:
        """Select every parameter (BatchNorm moments by ``statistics``), keep the source values for the
        restore, copy the model into teacher and anchor (not its submodules, so only this method switches
        their modes) and build the student's optimiser."""
        self.params = AllParameters(self.statistics)(model).params
        self.source_state = {name: p.detach().clone() for name, p in model.named_parameters()}
        self.teacher = copy.deepcopy(model).requires_grad_(False).eval()
        self.anchor = copy.deepcopy(model).requires_grad_(False).eval()
        cfg = dict(self.optimizer_cfg)
        self.optimizer = OPTIMIZERS.get(cfg.pop('type'))(self.params, **cfg)

    def follow_student(self, model: nn.Module) -> None:
        """After the student's step: the teacher follows by EMA, and each student weight element returns to
        its source value with ``restore_probability``."""
        ema_update(self.teacher, model, self.ema)
        stochastic_restore(model, self.source_state, self.restore_probability, self.generator)

    def adapted_parameters(self) -> list[nn.Parameter]:
        return list(self.params)

    def state_dict(self) -> dict[str, Any]:
        """Student parameters, optimiser state, teacher and the generator.

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
