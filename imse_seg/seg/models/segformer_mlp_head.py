"""SegFormer's all-MLP decode head exactly as NVlabs and Hugging Face compute it.

mmseg 1.x's ``SegformerHead`` is a different head: a conv + BN + ReLU per level and the levels concatenated
c1..c4. The published SegFormer weights (NVlabs' ``SegFormerHead``, Hugging Face's
``SegformerDecodeHead``) project each level with a plain linear layer (no norm, no activation), upsample
to the first level, concatenate c4, c3, c2, c1 and fuse with a bias-free 1x1 conv + BN + ReLU. mmseg's head
can only imitate that in eval mode; with the fuse BN in train mode (TENT, BN statistics adaptation) it
cannot. This head computes the published function, so converted checkpoints give the source numbers.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import ConfigType
from torch import Tensor


@MODELS.register_module()
class SegFormerMLPHead(BaseDecodeHead):
    """The SegFormer (NVlabs / Hugging Face) all-MLP head.

    ``linear_projections[i]`` maps level ``i`` (input order c1..c4) from ``in_channels[i]`` to ``channels``
    (the decoder width); ``fusion_conv`` is the 1x1 fuse conv (bias-free because a norm follows), its norm
    (``norm_cfg``, BN in the published models) and ``act_cfg`` (ReLU); then the base class's dropout and
    ``conv_seg`` classifier. The dropout is ``Dropout2d`` as in NVlabs' head (Hugging Face's is element-wise
    ``Dropout``); eval mode switches either off.

    Args:
        interpolate_mode: upsampling mode of the projected levels. Defaults to 'bilinear'.
        norm_cfg: norm after the fuse conv; required, since the published head has one.
        **kwargs: :class:`BaseDecodeHead` arguments (``in_channels``, ``in_index``, ``channels``,
            ``num_classes``, ``dropout_ratio``, ``align_corners``, ...).
    """

    def __init__(self,
                 interpolate_mode: str = 'bilinear',
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 **kwargs) -> None:
        if norm_cfg is None:
            raise ValueError('SegFormerMLPHead needs a norm_cfg: the published head has a BN after its '
                             'bias-free fuse conv')
        super().__init__(input_transform='multiple_select', norm_cfg=norm_cfg, **kwargs)
        self.interpolate_mode = interpolate_mode
        self.linear_projections = nn.ModuleList(
            nn.Linear(in_channels, self.channels) for in_channels in self.in_channels)
        self.fusion_conv = ConvModule(
            in_channels=self.channels * len(self.in_channels),
            out_channels=self.channels,
            kernel_size=1,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Per-level linear projection, upsampling to level 0, fuse of the levels in reverse order."""
        inputs = self._transform_inputs(inputs)
        size = inputs[0].shape[2:]
        projected = []
        for feature, projection in zip(inputs, self.linear_projections):
            batch, _, height, width = feature.shape
            tokens = projection(feature.flatten(2).transpose(1, 2))
            level = tokens.transpose(1, 2).reshape(batch, self.channels, height, width)
            projected.append(resize(level, size=size, mode=self.interpolate_mode,
                                    align_corners=self.align_corners))
        fused = self.fusion_conv(torch.cat(projected[::-1], dim=1))
        return self.cls_seg(fused)
