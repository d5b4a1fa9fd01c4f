"""The source model: no adaptation, the reference every method is compared with."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from imse_seg.core import train_only
from imse_seg.registry import ADAPTATION

from .method import AdaptationMethod, Forward, ValidRegion


@ADAPTATION.register_module()
class Source(AdaptationMethod):
    """Predict with the frozen source model (no gradients, nothing trains)."""

    def setup(self, model: nn.Module, forward: Forward) -> None:
        super().setup(model, forward)
        train_only(model, [])

    def adapt(self, model: nn.Module, inputs: Tensor, valid: ValidRegion | None = None) -> Tensor:
        with torch.no_grad():
            return self.forward(model, inputs)
