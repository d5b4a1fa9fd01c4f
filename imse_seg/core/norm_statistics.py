"""Which moments a BatchNorm layer normalises with at test time: the source's, the test batch's, or a blend.

A ``_BatchNorm`` layer in eval mode normalises with its running (source) moments; in train mode with the
moments of the batch it sees, and it then also moves its running buffers. Published TENT (Wang et al., ICLR
2021, ``tent.configure_model``) runs BN in train mode without running buffers, i.e. on test-batch moments;
Schneider et al. (NeurIPS 2020, "Improving robustness against common corruptions by covariate shift
adaptation", BN adaptation with a prior) mix source and test moments, the source counting as N pseudo
samples against the batch size n:

    mean = (1 - w) mu_s + w mu_t,    var = (1 - w) var_s + w var_t,    w = n / (N + n),

with the test moments per channel over the batch and spatial positions (the variance biased, as BN
normalises with it). This follows Schneider et al. exactly: there is no mean-shift term
``w (1 - w) (mu_s - mu_t)^2``, which the variance of the two-component mixture would add.

Test-time adaptation here keeps every model in eval mode (the loops call ``model.eval()``), so the moments
are chosen by a component instead of the mode: :func:`use_norm_statistics` registers it as a forward hook on
every ``_BatchNorm`` of a model, and the hook returns the layer's normalisation of its input with the
component's moments and the layer's own affine parameters. A hooked layer in train mode is an error (its own
forward would already have moved the running buffers). The running buffers are read, never written;
gradients reach the affine parameters and, through the test moments, the layer's input, as in train-mode BN.
The component is plain data, and the hook finds the layer through the module argument PyTorch passes it,
so a ``copy.deepcopy`` of the model (a teacher, an anchor) normalises with its own parameters. LayerNorm and
GroupNorm never use running moments and are left alone. The eval-mode output the hook replaces is computed
and discarded: one element-wise pass per BN layer, the price of not replacing modules or their classes.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class BatchStatistics:
    """A forward hook for a ``_BatchNorm`` layer: the layer's output with this component's moments."""

    def __call__(self, module: _BatchNorm, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        if module.training:
            raise RuntimeError(f'a {type(module).__name__} normalising with {self!r} is in train mode, where it '
                               'moves its running moments: test-time adaptation keeps models in eval mode '
                               '(call .eval() on the model and any copy of it)')
        return self.normalise(module, args[0], output)

    def normalise(self, module: _BatchNorm, inputs: Tensor, output: Tensor) -> Tensor:
        """The normalised ``inputs`` (``output`` is the layer's own eval-mode result)."""
        raise NotImplementedError


class TestStatistics(BatchStatistics):
    """Normalise with the test batch's own moments (published TENT; the "BN adapt" baseline).

    Exactly the computation of a train-mode ``_BatchNorm`` without running buffers: the batch mean and
    biased variance per channel, with gradients through them. A batch of one sample with no spatial
    extent (``B x C`` input, B = 1) has no variance to estimate; PyTorch refuses it, and so does this.
    """

    __test__ = False  # not a pytest test class

    def normalise(self, module: _BatchNorm, inputs: Tensor, output: Tensor) -> Tensor:
        return F.batch_norm(inputs, None, None, module.weight, module.bias, True, 0.0, module.eps)

    def __repr__(self) -> str:
        return 'TestStatistics()'


class BlendedStatistics(BatchStatistics):
    """Normalise with ``(1 - weight)`` source plus ``weight`` test-batch moments (Schneider et al. 2020).

    ``weight`` is ``n / (N + n)`` in the paper's terms (N: the prior strength in samples, n: the batch
    size); 0 gives the source model (the layer's own eval-mode output is returned, bit for bit), 1 the
    test-batch moments of :class:`TestStatistics`. The layer must track running moments.
    """

    def __init__(self, weight: float) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f'BlendedStatistics weight must be in [0, 1], got {weight}')
        self.weight = float(weight)

    def normalise(self, module: _BatchNorm, inputs: Tensor, output: Tensor) -> Tensor:
        if module.running_mean is None or module.running_var is None:
            raise ValueError(f'BlendedStatistics needs running moments, but this {type(module).__name__} does '
                             'not track them (track_running_stats=False)')
        if self.weight == 0.0:
            return output
        inputs = inputs.to(module.running_mean.dtype)  # a bfloat16 input under autocast: moments in float32
        mean, var = blended_moments(inputs, module.running_mean, module.running_var, self.weight)
        scale = torch.rsqrt(var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        shift = -mean * scale
        if module.bias is not None:
            shift = shift + module.bias
        shape = (1, -1) + (1,) * (inputs.dim() - 2)
        return torch.addcmul(shift.view(shape), inputs, scale.view(shape))

    def __repr__(self) -> str:
        return f'BlendedStatistics(weight={self.weight})'


def batch_moments(inputs: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance of a ``B x C [x ...]`` batch over every dimension but 1.

    Two vectorised passes (the mean, then the mean square about it) rather than ``torch.var_mean``, whose
    CPU kernel over the non-contiguous batch and spatial dimensions of an NCHW tensor is much slower
    (docs/benchmarks.md: the blended step 122 -> 66 ms); subtracting the mean first keeps the variance
    exact where the mean is large.
    """
    dims = [0] + list(range(2, inputs.dim()))
    mean = inputs.mean(dim=dims)
    shape = (1, -1) + (1,) * (inputs.dim() - 2)
    var = (inputs - mean.view(shape)).square().mean(dim=dims)
    return mean, var


def blended_moments(inputs: Tensor, source_mean: Tensor, source_var: Tensor,
                    weight: float) -> tuple[Tensor, Tensor]:
    """``((1 - w) mu_s + w mu_t, (1 - w) var_s + w var_t)`` for the test moments of ``inputs``."""
    mean, var = batch_moments(inputs)
    return (1.0 - weight) * source_mean + weight * mean, (1.0 - weight) * source_var + weight * var


def batch_norm_layers(model: nn.Module) -> Iterator[tuple[str, _BatchNorm]]:
    """``(name, layer)`` for every ``_BatchNorm`` of ``model`` (BatchNorm1d/2d/3d, SyncBatchNorm...)."""
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm):
            yield name, module


def norm_statistics_of(module: nn.Module) -> BatchStatistics | None:
    """The statistics component hooked on ``module`` by :func:`use_norm_statistics`, if any."""
    hooks = [hook for hook in module._forward_hooks.values() if isinstance(hook, BatchStatistics)]
    return hooks[0] if hooks else None


def use_norm_statistics(model: nn.Module, statistics: BatchStatistics) -> list[str]:
    """Make every ``_BatchNorm`` of ``model`` normalise with ``statistics``; return the layers' names.

    Raises ``ValueError`` if a layer already has a statistics component (one per layer: two would apply
    in turn, the second to the first's output).
    """
    names = []
    for name, layer in batch_norm_layers(model):
        if norm_statistics_of(layer) is not None:
            raise ValueError(f'BatchNorm layer {name!r} already normalises with {norm_statistics_of(layer)!r}')
        layer.register_forward_hook(statistics)
        names.append(name)
    return names


def remove_norm_statistics(model: nn.Module) -> int:
    """Return every ``_BatchNorm`` of ``model`` to its running moments; return how many were changed.

    For copies that must stay the source model, e.g. the code bank's frozen feature extractor copied from
    a model whose layers normalise with test moments.
    """
    removed = 0
    for _, layer in batch_norm_layers(model):
        for key, hook in list(layer._forward_hooks.items()):
            if isinstance(hook, BatchStatistics):
                del layer._forward_hooks[key]
                removed += 1
    return removed
