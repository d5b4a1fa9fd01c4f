"""EfficientViT's segmentation head (Cai et al., ICCV 2023) as an mmseg decode head with a ``conv_seg``.

Each input level is projected by a 1x1 conv + norm to ``head_width`` and upsampled (bicubic, as in the
authors' ``SegHead``) by its stride over ``head_stride``; the levels are summed, refined by ``head_depth``
residual MBConvs, expanded by a 1x1 conv + norm + act to ``head_width * final_expand`` channels (skipped
when ``final_expand`` is None) and classified by the base class's ``conv_seg`` (1x1 with bias). So STAG's
anchors, CoTTA, the metric and the checkpoint class check find the classifier where they find SegFormer's.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from mmseg.utils import ConfigType
from torch import Tensor, nn

from .efficientvit import BN, HSWISH, MBConv, conv


@MODELS.register_module()
class EfficientViTSegHead(BaseDecodeHead):
    """The EfficientViT ``SegHead`` with a ``conv_seg`` classifier.

    Args:
        in_channels: Channels of the selected inputs, in ``in_index`` order (B0: 128, 64, 32 for the
            stride-32, -16 and -8 stages).
        in_index: Which backbone outputs feed the head (B0 with the default backbone outputs: 2, 1, 0).
        input_strides: Stride of each selected input (B0: 32, 16, 8).
        head_stride: Stride of the head's output (8).
        head_width: Channels of the fused levels (B0: 32).
        head_depth: Residual MBConvs after the fusion (B0: 1).
        expand_ratio: Their expansion (4).
        final_expand: Expansion of the last conv before the classifier (B0: 4), None for none.
        **kwargs: Other :class:`BaseDecodeHead` arguments (``num_classes``, ``dropout_ratio``,
            ``align_corners``, ...). ``channels`` is derived (``head_width * final_expand``).
    """

    def __init__(self, in_channels: Sequence[int], in_index: Sequence[int], input_strides: Sequence[int],
                 head_stride: int = 8, head_width: int = 32, head_depth: int = 1, expand_ratio: float = 4,
                 final_expand: int | None = 4, norm_cfg: ConfigType = BN, act_cfg: ConfigType = HSWISH,
                 **kwargs) -> None:
        if 'channels' in kwargs:
            raise TypeError('EfficientViTSegHead derives channels from head_width * final_expand')
        if len(input_strides) != len(in_channels):
            raise ValueError(f'EfficientViTSegHead: {len(in_channels)} inputs but {len(input_strides)} strides')
        if any(stride % head_stride for stride in input_strides):
            raise ValueError(f'input strides {tuple(input_strides)} must be multiples of head_stride {head_stride}')
        channels = head_width * (final_expand or 1)
        super().__init__(in_channels=list(in_channels), channels=channels, in_index=list(in_index),
                         input_transform='multiple_select', norm_cfg=norm_cfg, act_cfg=act_cfg, **kwargs)
        self.upsample_factors = [stride // head_stride for stride in input_strides]
        self.lateral_convs = nn.ModuleList(conv(c, head_width, 1, norm_cfg=norm_cfg) for c in self.in_channels)
        self.middle = nn.Sequential(*(MBConv(head_width, head_width, expand_ratio, norm_cfg=norm_cfg,
                                             act_cfg=act_cfg) for _ in range(head_depth)))
        self.fuse = None if final_expand is None else conv(head_width, channels, 1, norm_cfg=norm_cfg,
                                                           act_cfg=act_cfg)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Project, upsample and sum the levels, refine, expand, classify (stride ``head_stride`` logits)."""
        levels = []
        for feature, lateral, factor in zip(self._transform_inputs(inputs), self.lateral_convs,
                                            self.upsample_factors):
            level = lateral(feature)
            if factor != 1:
                level = F.interpolate(level, scale_factor=factor, mode='bicubic', align_corners=False)
            levels.append(level)
        x = self.middle(sum(levels[1:], levels[0]))
        if self.fuse is not None:
            x = self.fuse(x)
        return self.cls_seg(x)
