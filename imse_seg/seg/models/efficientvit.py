"""EfficientViT (Cai et al., ICCV 2023) as an mmseg backbone: MBConv stages, then ReLU linear attention.

Written from the paper ("EfficientViT: Lightweight Multi-Scale Attention for High-Resolution Dense
Prediction") and the structure of the published checkpoints; the authors' implementation
(mit-han-lab/efficientvit, ``efficientvit/models/efficientvit/backbone.py`` and ``models/nn/ops.py``) was
read to settle details and reproduces to float tolerance (``tests/test_efficientvit.py`` checks the
published B0 Cityscapes model against the authors' logits). The parts:

- a stem (3x3 conv, stride 2) and residual depthwise-separable blocks;
- two stages of MBConv blocks (1x1 expansion, 3x3 depthwise, 1x1 projection), the first of each with
  stride 2 and no shortcut;
- two stages that open with a stride-2 MBConv without norms in its first two convs ("fewer norm") and
  continue with :class:`EfficientViTBlock` s: lightweight multi-scale linear attention (:class:`LiteMLA`)
  followed by an MBConv, each residual.

Every 1x1 conv with ``groups=1`` (attention ``qkv`` and ``proj``, MBConv ``expand`` and ``project``) is a
dense linear map over channels, which is what IMSE decomposes (methods.md 1.1); depthwise and grouped
convs are not. B0-B3 differ only in the constructor arguments (widths, depths, head dimension).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType
from torch import Tensor, nn

from imse_seg.core.precision import float32_region

BN = dict(type='BN')
HSWISH = dict(type='HSwish')
ATTENTION_EPS = 1e-15
"""Added to the linear attention's normaliser (the authors' value)."""


def conv(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
         bias: bool = False, norm_cfg: OptConfigType = None, act_cfg: OptConfigType = None) -> ConvModule:
    """Conv ("same" padding), optional norm, optional activation (never in place: the layers adapt)."""
    return ConvModule(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                      groups=groups, bias=bias, norm_cfg=norm_cfg, act_cfg=act_cfg, inplace=False)


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv + norm + act, then 1x1 projection + norm (the stem's blocks)."""

    def __init__(self, channels: int, norm_cfg: ConfigType, act_cfg: ConfigType) -> None:
        super().__init__()
        self.depthwise = conv(channels, channels, 3, groups=channels, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.project = conv(channels, channels, 1, norm_cfg=norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.project(self.depthwise(x))


class MBConv(nn.Module):
    """Inverted residual: 1x1 ``expand`` -> 3x3 depthwise (``stride``) -> 1x1 ``project``.

    ``fewer_norm`` (the first block of the attention stages, and the local half of every
    :class:`EfficientViTBlock`): the expansion and depthwise convs have a bias and no norm; only the
    projection is normalised. ``shortcut`` adds the input (only when shapes allow).
    """

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: float, stride: int = 1,
                 shortcut: bool = True, fewer_norm: bool = False, norm_cfg: ConfigType = BN,
                 act_cfg: ConfigType = HSWISH) -> None:
        super().__init__()
        if shortcut and (stride != 1 or in_channels != out_channels):
            raise ValueError(f'MBConv: a shortcut needs stride 1 and equal widths, got stride {stride}, '
                             f'{in_channels} -> {out_channels} channels')
        mid = round(in_channels * expand_ratio)
        inner_norm = None if fewer_norm else norm_cfg
        self.shortcut = shortcut
        self.expand = conv(in_channels, mid, 1, bias=fewer_norm, norm_cfg=inner_norm, act_cfg=act_cfg)
        self.depthwise = conv(mid, mid, 3, stride, groups=mid, bias=fewer_norm, norm_cfg=inner_norm,
                              act_cfg=act_cfg)
        self.project = conv(mid, out_channels, 1, norm_cfg=norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.shortcut else out


class LiteMLA(nn.Module):
    """Lightweight multi-scale linear attention (the paper's section 3.1).

    ``qkv`` (1x1) makes queries, keys and values for ``heads = channels // head_dim`` heads; each of
    ``scales`` adds a multi-scale copy by a depthwise ``s x s`` conv followed by a grouped 1x1 conv (one
    group per head and q/k/v), so attention runs on ``heads * (1 + len(scales))`` heads. With the ReLU
    kernel, per head and for N = H W tokens (paper eq. 2-3)::

        out_i = (sum_j v_j relu(k_j)^T) relu(q_i) / (sum_j relu(k_j)^T relu(q_i) + eps)

    computed in O(N) as ``[V; 1] K^T`` then times Q, the appended row of ones giving the normaliser. When
    N <= head_dim the quadratic form ``V (K^T Q / column sums)`` costs less and is used, as in the
    authors' code. ``proj`` (1x1 + norm) maps the concatenated heads back to ``channels``. Under autocast
    the attention itself runs in float32, as the authors' ``relu_linear_att`` does (``autocast(enabled=False)``):
    in bfloat16 its normaliser's sums lose the precision the division needs.
    """

    def __init__(self, channels: int, head_dim: int, scales: Sequence[int] = (5,),
                 norm_cfg: ConfigType = BN) -> None:
        super().__init__()
        heads = channels // head_dim
        if heads < 1:
            raise ValueError(f'LiteMLA: {channels} channels give no head of dimension {head_dim}')
        total = heads * head_dim
        self.head_dim = head_dim
        self.qkv = nn.Conv2d(channels, 3 * total, 1, bias=False)
        self.aggregation = nn.ModuleList(
            nn.Sequential(nn.Conv2d(3 * total, 3 * total, scale, padding=scale // 2, groups=3 * total,
                                    bias=False),
                          nn.Conv2d(3 * total, 3 * total, 1, groups=3 * heads, bias=False))
            for scale in scales)
        self.proj = conv(total * (1 + len(scales)), channels, 1, norm_cfg=norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [aggregate(qkv) for aggregate in self.aggregation], dim=1)
        with float32_region(qkv):
            out = self._attention(qkv.float())
        return self.proj(out)

    def _attention(self, qkv: Tensor) -> Tensor:
        """The ReLU linear attention of the multi-scale ``qkv`` maps (B x 3 heads d x H x W)."""
        batch, _, height, width = qkv.shape
        d = self.head_dim
        qkv = qkv.reshape(batch, -1, 3 * d, height * width)
        q, k, v = F.relu(qkv[:, :, :d]), F.relu(qkv[:, :, d:2 * d]), qkv[:, :, 2 * d:]
        if height * width > d:
            values = F.pad(v, (0, 0, 0, 1), value=1.0)
            out = (values @ k.transpose(-1, -2)) @ q
            out = out[:, :, :-1] / (out[:, :, -1:] + ATTENTION_EPS)
        else:
            weights = k.transpose(-1, -2) @ q
            out = v @ (weights / (weights.sum(dim=2, keepdim=True) + ATTENTION_EPS))
        return out.reshape(batch, -1, height, width)


class EfficientViTBlock(nn.Module):
    """Residual :class:`LiteMLA` (context), then a residual fewer-norm :class:`MBConv` (local)."""

    def __init__(self, channels: int, head_dim: int, expand_ratio: float, scales: Sequence[int] = (5,),
                 norm_cfg: ConfigType = BN, act_cfg: ConfigType = HSWISH) -> None:
        super().__init__()
        self.attention = LiteMLA(channels, head_dim, scales, norm_cfg)
        self.mbconv = MBConv(channels, channels, expand_ratio, fewer_norm=True, norm_cfg=norm_cfg,
                             act_cfg=act_cfg)

    def forward(self, x: Tensor) -> Tensor:
        return self.mbconv(x + self.attention(x))


@MODELS.register_module()
class EfficientViTBackbone(BaseModule):
    """EfficientViT B-series backbone; returns the outputs of ``stages[i]`` for ``i`` in ``out_indices``.

    Args:
        widths: Channels of the stem and the four stages (B0: 8, 16, 32, 64, 128).
        depths: Residual blocks of the stem, MBConv blocks of stages 0-1, attention blocks of stages 2-3
            (B0: 1, 2, 2, 2, 2). Stride: 2 (stem), then 4, 8, 16, 32 at the end of stages 0-3.
        head_dim: Dimension of an attention head (B0/B1: 16, B2/B3: 32).
        expand_ratio: MBConv expansion of the stages (4).
        scales: Kernel sizes of the attention's multi-scale aggregation ((5,)).
        out_indices: Which stages' outputs to return (default: strides 8, 16, 32).
    """

    def __init__(self, widths: Sequence[int] = (8, 16, 32, 64, 128), depths: Sequence[int] = (1, 2, 2, 2, 2),
                 head_dim: int = 16, expand_ratio: float = 4, scales: Sequence[int] = (5,),
                 in_channels: int = 3, out_indices: Sequence[int] = (1, 2, 3), norm_cfg: ConfigType = BN,
                 act_cfg: ConfigType = HSWISH, init_cfg: OptConfigType = None) -> None:
        super().__init__(init_cfg)
        if len(widths) != 5 or len(depths) != 5:
            raise ValueError(f'EfficientViTBackbone takes 5 widths and 5 depths (stem + 4 stages), got '
                             f'{len(widths)} and {len(depths)}')
        if not set(out_indices) <= set(range(4)):
            raise ValueError(f'out_indices {tuple(out_indices)} must index the 4 stages (0-3)')
        self.out_indices = tuple(out_indices)
        self.stem = nn.Sequential(
            conv(in_channels, widths[0], 3, stride=2, norm_cfg=norm_cfg, act_cfg=act_cfg),
            *(DepthwiseSeparable(widths[0], norm_cfg, act_cfg) for _ in range(depths[0])))
        stages = []
        for index, (width, depth) in enumerate(zip(widths[1:], depths[1:])):
            previous = widths[index]
            if index < 2:
                blocks = [MBConv(previous if i == 0 else width, width, expand_ratio, stride=2 if i == 0 else 1,
                                 shortcut=i > 0, norm_cfg=norm_cfg, act_cfg=act_cfg) for i in range(depth)]
            else:
                blocks = [MBConv(previous, width, expand_ratio, stride=2, shortcut=False, fewer_norm=True,
                                 norm_cfg=norm_cfg, act_cfg=act_cfg)]
                blocks += [EfficientViTBlock(width, head_dim, expand_ratio, scales, norm_cfg, act_cfg)
                           for _ in range(depth)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        x = self.stem(x)
        outs = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.out_indices:
                outs.append(x)
        return tuple(outs)
