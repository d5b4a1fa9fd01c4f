"""Hard pseudo-labels (Lee 2013) as an imse_seg adaptation method: the example of docs/adding_a_method.md.

For each batch the model predicts, then takes one optimiser step on the cross-entropy between its
prediction and the prediction's own arg-max, over the pixels (or images) predicted with a probability of at
least ``threshold``; the parameters that adapt are a registered selection (by default the normalisation
layers' affine parameters, as TENT's). The scored prediction is the one made before the step.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from mmengine.registry import OPTIMIZERS
from torch import Tensor, nn

from imse_seg.adaptation import AdaptationMethod, Forward, ValidRegion
from imse_seg.adaptation.method import load_parameters
from imse_seg.registry import ADAPTATION, build_adaptation


@ADAPTATION.register_module()
class PseudoLabel(AdaptationMethod):
    """Self-training on confident hard pseudo-labels.

    Args:
        optimizer: An mmengine ``OPTIMIZERS`` config without params, e.g. ``dict(type='SGD', lr=1e-3)``.
        threshold: The least predicted probability of a pixel (or image) that trains.
        parameters: The registered parameter selection that adapts; None: ``NormParameters``.
    """

    def __init__(self, optimizer: Mapping, threshold: float = 0.9, parameters: Mapping | None = None) -> None:
        self.optimizer_cfg = dict(optimizer)
        self.threshold = threshold
        self.parameters_cfg = dict(parameters or dict(type='NormParameters'))

    def setup(self, model: nn.Module, forward: Forward) -> None:
        super().setup(model, forward)
        self.params = build_adaptation(self.parameters_cfg)(model).params
        cfg = dict(self.optimizer_cfg)
        self.optimizer = OPTIMIZERS.get(cfg.pop('type'))(self.params, **cfg)

    def adapt(self, model: nn.Module, inputs: Tensor, valid: ValidRegion | None = None) -> Tensor:
        with torch.enable_grad():
            logits = self.forward(model, inputs)
            confidence, labels = logits.detach().softmax(dim=1).max(dim=1)
            trains = confidence >= self.threshold
            region = None if valid is None else valid(logits)
            if region is not None:
                trains &= region
            if trains.any():
                loss = F.cross_entropy(logits, labels, reduction='none')[trains].mean()
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        return logits.detach()

    def adapted_parameters(self) -> list[nn.Parameter]:
        return list(self.params)

    def state_dict(self) -> dict[str, Any]:
        return dict(params=[p.detach() for p in self.params], optimizer=self.optimizer.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_parameters(self.params, state['params'], type(self).__name__)
        self.optimizer.load_state_dict(state['optimizer'])
