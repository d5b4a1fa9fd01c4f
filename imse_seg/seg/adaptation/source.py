"""The source model: no adaptation, the reference every method is compared with."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from imse_seg.core import train_only
from imse_seg.registry import ADAPTATION
from .method import AdaptationMethod, segmentor_logits


@ADAPTATION.register_module()
class Source(AdaptationMethod):
    """Predict with the frozen source model (mmseg's whole-image inference, no gradients)."""

    def setup(self, segmentor: nn.Module) -> None:
        train_only(segmentor, [])

    def adapt(self, segmentor: nn.Module, inputs: Tensor, metas: Sequence[dict]) -> Tensor:
        with torch.no_grad():
            return segmentor_logits(segmentor, inputs)
