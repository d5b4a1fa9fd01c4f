"""Up-front checks of a source checkpoint, before a long stream starts.

A local file is read with ``weights_only=True``; a URL (any ``scheme://`` mmengine's ``CheckpointLoader``
knows: ``https://``, ``s3://``, ``open-mmlab://``...) goes to that loader unchanged, as the runner's own
``load_from`` does, so that the check sees the tensors the run will load.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from mmengine.runner import CheckpointLoader
from torch import nn

from imse_seg.checkpoint import CheckpointError, check_classifier_rows, require_file

NO_CHECKPOINT = ('no source checkpoint: set load_from in the config or pass --checkpoint (data/README.md says '
                 'where the source checkpoints go), or pass --random-weights to adapt a randomly initialised '
                 'model on purpose')


def is_url(path: str | Path) -> bool:
    """Whether ``path`` names a checkpoint by URL (``scheme://...``) rather than as a local file."""
    return '://' in str(path)


def load_state_dict_safely(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an mmengine/mmseg checkpoint, read with ``weights_only=True`` (no code runs); a URL
    is loaded by mmengine's ``CheckpointLoader`` (the string as given)."""
    if is_url(path):
        try:
            checkpoint = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
        except Exception as error:  # network, scheme and format errors of the backends
            raise CheckpointError(f'checkpoint {path} cannot be loaded: {error}') from error
        return checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
    path = require_file(path, 'pass --checkpoint or set load_from (data/README.md says where the source '
                        'checkpoints go)')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise CheckpointError(f'checkpoint {path} cannot be read safely (weights_only): {error}. A '
                              'checkpoint saved by an mmengine training run also holds Python objects '
                              '(message hub, optimiser); if you trust it, re-save its state_dict alone: '
                              'torch.save({"state_dict": ckpt["state_dict"]}, path)') from error
    return checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}


def check_checkpoint_classes(path: str | Path, num_classes: int,
                             classifier_key: str = 'decode_head.conv_seg.weight') -> None:
    """Refuse a checkpoint whose classifier predicts another number of classes than the config's.

    A checkpoint with a decode head but no ``classifier_key`` is of a head without mmseg's ``conv_seg``
    (Segmenter's mask head): its class count is left to :func:`check_checkpoint_fits`, which compares
    every tensor with the model's.
    """
    state = load_state_dict_safely(path)
    if classifier_key not in state and any(key.startswith('decode_head.') for key in state):
        return
    check_classifier_rows(state, classifier_key, num_classes, path,
                          'it is not an mmseg decode-head checkpoint (convert NVlabs / Hugging Face files '
                          'with tools/convert_checkpoint.py)')


def check_checkpoint_fits(path: str | Path, model: nn.Module, shown: int = 3) -> None:
    """Refuse a checkpoint that would not load strictly into ``model`` (mmengine's loader only logs it).

    Missing, unexpected and mis-shaped tensors are listed (the first ``shown`` of each), so a checkpoint of
    another architecture or width stops before any compute instead of adapting a half-random model.
    """
    state = load_state_dict_safely(path)
    expected = model.state_dict()
    problems = _mismatches(state, expected, shown)
    if problems:
        raise CheckpointError(f'checkpoint {path} does not fit the configured model: {"; ".join(problems)}')


def checkpoint_status(path: str | Path | None, model: nn.Module, num_classes: int) -> str:
    """One line for ``--dry-run``: whether the checkpoint ``path`` exists and loads strictly into ``model``."""
    if not path:
        return 'none (load_from is None): the run needs --checkpoint, or --random-weights'
    try:
        check_checkpoint_classes(path, num_classes)
        check_checkpoint_fits(path, model)
    except CheckpointError as error:
        return f'refused: {error}'
    return f'{path} exists and loads strictly'


def _mismatches(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], shown: int) -> list[str]:
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    misshaped = [f'{key} {tuple(state[key].shape)} (model: {tuple(expected[key].shape)})'
                 for key in expected if key in state and state[key].shape != expected[key].shape]
    return [f'{len(keys)} {kind}: {", ".join(keys[:shown])}{", ..." if len(keys) > shown else ""}'
            for kind, keys in (('mis-shaped', misshaped), ('missing', missing), ('unexpected', unexpected))
            if keys]
