"""How a segmentation method sees an mmseg segmentor: its logits and the image region of a padded batch."""
from __future__ import annotations

import math
from typing import Sequence

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
