"""Up-front checks of a source checkpoint, shared by the segmentation and classification paths.

A long stream must not start on a checkpoint that is missing or whose classifier predicts another number of
classes than the model and data: both are refused here, before any compute, with a :class:`CheckpointError`
that names the file and the shapes. Framework-free (the tensors come from whatever reader the task uses).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from torch import Tensor


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the configured model."""


def require_file(path: str | Path, hint: str) -> Path:
    """``path`` as a ``Path`` if it is a file; otherwise a :class:`CheckpointError` ending in ``hint``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path} does not exist; {hint}')
    return path


def check_classifier_rows(state: Mapping[str, Tensor], key: str, num_classes: int, path: str | Path,
                          hint: str) -> None:
    """Refuse ``state`` (read from ``path``) unless its classifier weight ``key`` has ``num_classes`` rows.

    ``hint`` says what the file should have been when ``key`` is absent.
    """
    weight = state.get(key)
    if weight is None:
        raise CheckpointError(f'checkpoint {path} has no {key}: {hint}')
    if weight.shape[0] != num_classes:
        raise CheckpointError(f'checkpoint {path} predicts {weight.shape[0]} classes ({key} '
                              f'{tuple(weight.shape)}), the config expects {num_classes}')
