"""Spectral codes: the singular values of all spectral layers of a model, as one snapshot (IMSE 1.4).

A code is a ``dict`` from layer name to a detached copy of that layer's singular values. It is what the
domain code bank stores per domain and what resets restore.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from .spectral import SpectralLayer

SpectralCode = dict[str, Tensor]


def spectral_code(layers: Sequence[SpectralLayer]) -> SpectralCode:
    """Snapshot the current singular values of ``layers`` (detached copies)."""
    return {layer.name: layer.singular_values.detach().clone() for layer in layers}


def initial_spectral_code(layers: Sequence[SpectralLayer]) -> SpectralCode:
    """The source code s0 recorded when the layers were converted."""
    return {layer.name: layer.weight.initial_singular_values.clone() for layer in layers}


def check_code_matches(layers: Sequence[SpectralLayer], code: Mapping[str, Tensor]) -> None:
    """Raise ``ValueError`` naming the first layer whose entry in ``code`` is missing, extra or mis-shaped."""
    for layer in layers:
        if layer.name not in code:
            raise ValueError(f'spectral code has no entry for layer {layer.name!r}')
        if tuple(code[layer.name].shape) != tuple(layer.singular_values.shape):
            raise ValueError(f'spectral code for layer {layer.name!r} has shape '
                             f'{tuple(code[layer.name].shape)}, the layer has '
                             f'{tuple(layer.singular_values.shape)}')
    names = {layer.name for layer in layers}
    extra = [name for name in code if name not in names]
    if extra:
        raise ValueError(f'spectral code has an entry for unknown layer {extra[0]!r}')


@torch.no_grad()
def load_spectral_code(layers: Sequence[SpectralLayer], code: Mapping[str, Tensor]) -> None:
    """Copy ``code`` into the singular values of ``layers`` in place (optimisers keep their tensors)."""
    check_code_matches(layers, code)
    for layer in layers:
        layer.singular_values.copy_(code[layer.name])


def reset_spectral_code(layers: Sequence[SpectralLayer]) -> None:
    """Restore every layer's singular values to the values it had at conversion."""
    load_spectral_code(layers, initial_spectral_code(layers))
