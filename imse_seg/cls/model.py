"""timm classifiers built offline: ``timm.create_model(..., pretrained=False)`` plus a local checkpoint.

Nothing is fetched from a hub. The checkpoint (``.pth``/``.pt`` or ``.safetensors``, a bare state dict or
one under ``state_dict``/``model``, read by timm's own :func:`timm.models.load_state_dict`) must be a file
that exists and whose classifier predicts the configured number of classes; both are checked before
loading, with errors that say which file and which shapes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
from timm.models import load_state_dict
from torch import nn


class CheckpointError(ValueError):
    """A classifier checkpoint that is missing, unreadable, or does not fit the configured model."""


def build_classifier(name: str, num_classes: int, checkpoint: str | Path | None = None,
                     **model_args: Any) -> nn.Module:
    """The timm model ``name`` with a ``num_classes`` head, loaded (strictly) from ``checkpoint``.

    ``model_args`` go to :func:`timm.create_model` (e.g. ``img_size=32, patch_size=4, embed_dim=96,
    depth=6, num_heads=3`` for the demo ViT). Without ``checkpoint`` the weights stay random (training
    from scratch). The model is returned in eval mode.
    """
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **model_args)
    if checkpoint is not None:
        model.load_state_dict(read_checkpoint(checkpoint, model, num_classes))
    return model.eval()


def read_checkpoint(path: str | Path, model: nn.Module, num_classes: int) -> dict:
    """The state dict in ``path``, after checking that its classifier has ``num_classes`` outputs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'classifier checkpoint {path} does not exist (train the demo one with '
                              'tools/train_cls_source.py, or put a timm checkpoint there)')
    try:
        state = load_state_dict(str(path))
    except Exception as error:  # torch/safetensors raise many types for a corrupt or foreign file
        raise CheckpointError(f'classifier checkpoint {path} cannot be read: {error}') from error
    head = model.get_classifier()
    key = next(name for name, module in model.named_modules() if module is head) + '.weight'
    weight = state.get(key)
    if weight is None:
        raise CheckpointError(f'classifier checkpoint {path} has no {key}: it is not a checkpoint of '
                              f'{type(model).__name__}')
    if weight.shape[0] != num_classes:
        raise CheckpointError(f'classifier checkpoint {path} predicts {weight.shape[0]} classes ({key} '
                              f'{tuple(weight.shape)}), the config and data have {num_classes}')
    return state
