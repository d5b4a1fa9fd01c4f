"""ConvMixer-256/8 for CIFAR-10 as a timm model, and the key map of the published sequential checkpoint.

timm ships the ConvMixer architecture (:class:`timm.models.convmixer.ConvMixer`) but registers only the
ImageNet variants; ``convmixer_256_8_k9_p4`` registers the CIFAR one (Trockman & Kolter, "Patches Are All
You Need?", TMLR 2023): width 256, 8 blocks, 9 x 9 depthwise kernels, 4 x 4 patches, 32 x 32 inputs
normalised with mean = std = 0.5, as the published CIFAR-10 checkpoint of kentaroy47/vision-transformers-
cifar10 was trained.

That checkpoint is an ``nn.Sequential`` saved through ``DataParallel``: ``module.0`` the patch conv,
``module.2`` its BatchNorm, ``module.3`` ... ``module.<2 + depth>`` the blocks, ``module.<5 + depth>`` the
linear classifier (GELU, pooling and flatten hold no weights). :class:`SequentialConvMixerKeys` renames
those keys to timm's (``stem.*``, ``blocks.<i>.*``, ``head.*``) and refuses any key it does not place.
"""
from __future__ import annotations

import re

from mmengine.registry import Registry
from timm.models import build_model_with_cfg, register_model
from timm.models._registry import generate_default_cfgs
from timm.models.convmixer import ConvMixer
from torch import Tensor

from imse_seg.checkpoint import CheckpointError

CHECKPOINT_KEYS = Registry('checkpoint_keys', scope='imse_seg', locations=['imse_seg.cls.convmixer'])
"""Key maps from a published checkpoint's layout to a timm model's, picked by ``model.checkpoint_keys``."""

default_cfgs = generate_default_cfgs({'convmixer_256_8_k9_p4.cifar10': dict(
    url='', num_classes=10, input_size=(3, 32, 32), pool_size=None, crop_pct=1.0, interpolation='bilinear',
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), first_conv='stem.0', classifier='head', license='mit')})


@register_model
def convmixer_256_8_k9_p4(pretrained: bool = False, **kwargs) -> ConvMixer:
    """ConvMixer-256/8, kernel 9, patch 4: the CIFAR-10 model (its weights are read from a local file);
    ``kwargs`` may change the sizes (a smaller one for tests)."""
    model_args = dict(dict(dim=256, depth=8, kernel_size=9, patch_size=4), **kwargs)
    return build_model_with_cfg(ConvMixer, 'convmixer_256_8_k9_p4', pretrained,
                                feature_cfg=dict(out_indices=3, feature_cls='getter'), **model_args)


@CHECKPOINT_KEYS.register_module()
class SequentialConvMixerKeys:
    """Renames a sequential ConvMixer state dict (``[module.]<index>.<rest>``) to timm's ConvMixer keys.

    Index 0 and 2 are the stem's conv and BatchNorm (``stem.0``, ``stem.2``), 3 ... 2 + ``depth`` the
    blocks (``blocks.<index - 3>``), 5 + ``depth`` the classifier (``head``); any other key is an error
    (:class:`~imse_seg.checkpoint.CheckpointError` naming it), so a file of another layout or depth is
    refused rather than half-loaded.
    """

    pattern = re.compile(r'^(?:module\.)?(\d+)\.(.+)$')

    def __init__(self, depth: int = 8) -> None:
        self.depth = depth

    def __call__(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        renamed, unplaced = {}, []
        for key, value in state.items():
            target = self.target(key)
            if target is None:
                unplaced.append(key)
            else:
                renamed[target] = value
        if unplaced:
            raise CheckpointError(f'{len(unplaced)} key(s) are not those of a sequential ConvMixer of depth '
                                  f'{self.depth} (module.0 stem conv, module.2 its BatchNorm, module.3-'
                                  f'{2 + self.depth} blocks, module.{5 + self.depth} classifier): '
                                  f'{", ".join(unplaced[:5])}')
        return renamed

    def target(self, key: str) -> str | None:
        """timm's name for ``key``, or None where the sequential layout has no such weight."""
        match = self.pattern.match(key)
        if match is None:
            return None
        index, rest = int(match.group(1)), match.group(2)
        if index in (0, 2):
            return f'stem.{index}.{rest}'
        if 3 <= index < 3 + self.depth:
            return f'blocks.{index - 3}.{rest}'
        if index == 5 + self.depth:
            return f'head.{rest}'
        return None
