"""The interface every test-time adaptation method implements, and the shared forward."""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn


def segmentor_logits(segmentor: nn.Module, inputs: Tensor) -> Tensor:
    """Decode-head logits (B x K x h x w, at the head's resolution) of an mmseg encoder-decoder."""
    return segmentor.decode_head.forward(segmentor.extract_feat(inputs))


def image_region(logits: Tensor, input_size: Sequence[int], metas: Sequence[dict]) -> Tensor | None:
    """Mask (B x h x w) of the logits that cover the image rather than the pre-processor's padding.

    None when no sample of the batch is padded, so unpadded streams pay nothing.
    """
    height, width = input_size
    shapes = [meta['img_shape'][:2] for meta in metas]
    if all(tuple(shape) == (height, width) for shape in shapes):
        return None
    h, w = logits.shape[-2:]
    mask = torch.zeros(logits.shape[0], h, w, dtype=torch.bool, device=logits.device)
    for index, (img_h, img_w) in enumerate(shapes):
        mask[index, :math.ceil(img_h * h / height), :math.ceil(img_w * w / width)] = True
    return mask


class AdaptationMethod:
    """One online adaptation method: set up once on the loaded model, then predict-and-adapt per batch.

    ``adapt`` returns the logits that are scored for the batch (detached, at the decode head's resolution);
    by the usual test-time protocol they come from the forward made *before* this batch's update.
    ``state_dict``/``load_state_dict`` carry what must survive an interruption (optimiser, bank, teacher).
    """

    def setup(self, segmentor: nn.Module) -> None:
        """Prepare the method on the loaded segmentor (select parameters, build optimiser...)."""

    def adapt(self, segmentor: nn.Module, inputs: Tensor, metas: Sequence[dict]) -> Tensor:
        """Predict ``inputs`` (B x 3 x H x W, pre-processed) and adapt on them; return the scored logits.

        ``metas`` are the samples' meta information (``img_shape`` tells padding from image).
        """
        raise NotImplementedError

    def start_segment(self, name: str) -> None:
        """A new stream segment begins; most methods ignore it (they are not told about shifts)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f'{type(self).__name__} holds no state, got keys {sorted(state)}')
