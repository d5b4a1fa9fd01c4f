"""How a segmentation method sees an mmseg segmentor: its logits and the image region of a padded batch."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def pad_to_divisor(segmentor: nn.Module, images: Tensor) -> Tensor:
    """``images`` zero-padded at the bottom and right to the pre-processor's test ``size_divisor``.

    A model whose pre-processor pads test inputs to a multiple (EfficientViT: 32) needs every input so
    padded; the pre-processor does it for the batch, this for inputs made later (the rescaled views of
    CoTTA's teacher). Unchanged when the model has no divisor or the size is already a multiple.
    """
    divisor = (getattr(segmentor.data_preprocessor, 'test_cfg', None) or {}).get('size_divisor')
    if not divisor:
        return images
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % divisor, -width % divisor
    if not (pad_h or pad_w):
        return images
    return F.pad(images, (0, pad_w, 0, pad_h), value=segmentor.data_preprocessor.pad_val)


def segmentor_logits(segmentor: nn.Module, inputs: Tensor) -> Tensor:
    """Decode-head logits (B x K x h x w, at the head's resolution) of an mmseg encoder-decoder.

    Inputs are padded as the pre-processor pads (:func:`pad_to_divisor`) and the logits cropped back to
    the part that covers them.
    """
    height, width = inputs.shape[-2:]
    padded = pad_to_divisor(segmentor, inputs)
    logits = segmentor.decode_head.forward(segmentor.extract_feat(padded))
    if padded is inputs:
        return logits
    h, w = logits.shape[-2:]
    return logits[..., :math.ceil(height * h / padded.shape[-2]), :math.ceil(width * w / padded.shape[-1])]


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
