"""timm classifiers built offline: ``timm.create_model(..., pretrained=False)`` plus a local checkpoint.

Nothing is fetched from a hub. The checkpoint (``.pth``/``.pt`` or ``.safetensors``, a bare state dict or
one under ``state_dict``/``model``, read by timm's own :func:`timm.models.load_state_dict` with
``weights_only=True``, so no pickled code runs, and loaded strictly) must be a file
that exists and whose classifier predicts the configured number of classes; both are checked before
loading, with errors that say which file and which shapes. A checkpoint saved in another layout than
timm's (the published sequential ConvMixer) names its key map in ``checkpoint_keys``
(:data:`~imse_seg.cls.convmixer.CHECKPOINT_KEYS`); a path ``'shared:<relative>'`` is a third-party file of
the shared folder (:func:`imse_seg.third_party.resolve`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import timm
from timm.models import load_state_dict
from torch import nn

from imse_seg.checkpoint import CheckpointError, check_classifier_rows, require_file
from imse_seg.third_party import resolve

from .convmixer import CHECKPOINT_KEYS


def build_classifier(name: str, num_classes: int, checkpoint: str | Path | None = None,
                     checkpoint_keys: Mapping | None = None, **model_args: Any) -> nn.Module:
    """The timm model ``name`` with a ``num_classes`` head, loaded (strictly) from ``checkpoint``.

    ``model_args`` go to :func:`timm.create_model` (e.g. ``img_size=32, patch_size=4, embed_dim=96,
    depth=6, num_heads=3`` for the demo ViT). Without ``checkpoint`` the weights stay random (training
    from scratch); ``checkpoint_keys`` renames the file's keys to the model's before the strict load. The
    model is returned in eval mode.
    """
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **model_args)
    if checkpoint is not None:
        keys = CHECKPOINT_KEYS.build(dict(checkpoint_keys)) if checkpoint_keys is not None else None
        model.load_state_dict(read_checkpoint(checkpoint, model, num_classes, keys))
    return model.eval()


def read_checkpoint(path: str | Path, model: nn.Module, num_classes: int,
                    keys: Callable[[dict], dict] | None = None) -> dict:
    """The state dict in ``path`` (renamed by ``keys``), after checking that its classifier has
    ``num_classes`` outputs."""
    path = require_file(resolve(path), 'train the demo one with tools/train_cls_source.py, or put a timm '
                                       'checkpoint there')
    try:
        state = load_state_dict(str(path), weights_only=True)
    except Exception as error:  # torch/safetensors raise many types for a corrupt or foreign file
        raise CheckpointError(f'classifier checkpoint {path} cannot be read: {error}') from error
    if keys is not None:
        state = keys(state)
    head = model.get_classifier()
    key = next(name for name, module in model.named_modules() if module is head) + '.weight'
    check_classifier_rows(state, key, num_classes, path, f'it is not a checkpoint of {type(model).__name__}')
    return state
