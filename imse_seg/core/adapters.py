"""ViDA's visual domain adapters beside the dense layers of any model (Liu et al., ICLR 2024, section 3.2).

Each adapted layer ``f(x) = W x + b`` (an ``nn.Linear``, or an ``nn.Conv2d`` with a 1x1 kernel and one
group: the same linear map applied at every position) gets two bottleneck branches on its input, whose
outputs are added to its own:

    f'(x) = W x + b + lambda_l up_l(down_l x) + lambda_h up_h(down_h x),

a low-rank branch (rank r_l, default 1: domain-shared knowledge) and a high-rank one (r_h, default 128:
domain-specific knowledge). As in Yangsenqiao/vida ``imagenet/inject_vida.py`` (``ViDAInjectedLinear``)
the down-projections are drawn from a normal distribution of standard deviation 1 / r^2 and the
up-projections are zero, so an injected model computes exactly what the original did until the
up-projections move; the branches have no bias. The scales lambda are plain attributes set per batch by
the method (ViDA's homeostatic knowledge allotment, :mod:`.vida`).

The adapter is a child module of the layer it adapts (``<layer>.domain_adapter``), and a forward hook on
the layer adds its output: module names and the original parameters' names stay as they were, the adapter
parameters appear in ``state_dict`` under the layer's name, and the hook finds the adapter through the
module PyTorch passes it, so a ``copy.deepcopy`` of the model (ViDA's teacher) runs its own adapters. This
knows nothing of mmseg or timm: layers are chosen by name patterns.
"""
from __future__ import annotations

import fnmatch
from typing import Sequence

import torch
from torch import Tensor, nn

from imse_seg.errors import ConfigError
from .spectral import linear_module_patterns

ADAPTER_NAME = 'domain_adapter'


class LowRankBranch(nn.Module):
    """``up(down(x))`` with ``down``: in -> rank and ``up``: rank -> out, as ``layer``'s kind of map.

    For a 1x1 convolution both are 1x1 convolutions, ``down`` with the layer's stride, padding and
    dilation so that the branch's output has the layer's shape.
    """

    def __init__(self, layer: nn.Linear | nn.Conv2d, rank: int, generator: torch.Generator) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f'adapter rank must be >= 1, got {rank}')
        factory = dict(device=layer.weight.device, dtype=layer.weight.dtype)
        if isinstance(layer, nn.Linear):
            self.down = nn.Linear(layer.in_features, rank, bias=False, **factory)
            self.up = nn.Linear(rank, layer.out_features, bias=False, **factory)
        else:
            self.down = nn.Conv2d(layer.in_channels, rank, 1, stride=layer.stride, padding=layer.padding,
                                  dilation=layer.dilation, bias=False, **factory)
            self.up = nn.Conv2d(rank, layer.out_channels, 1, bias=False, **factory)
        with torch.no_grad():
            noise = torch.randn(self.down.weight.shape, generator=generator, dtype=torch.float32)
            self.down.weight.copy_(noise / rank ** 2)
            self.up.weight.zero_()

    def forward(self, inputs: Tensor) -> Tensor:
        return self.up(self.down(inputs))


class DomainAdapter(nn.Module):
    """A low-rank and a high-rank branch beside one layer; ``forward`` returns their scaled sum."""

    def __init__(self, layer: nn.Linear | nn.Conv2d, low_rank: int = 1, high_rank: int = 128,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.low = LowRankBranch(layer, low_rank, generator)
        self.high = LowRankBranch(layer, high_rank, generator)
        self.low_scale = 1.0
        self.high_scale = 1.0

    def extra_repr(self) -> str:
        return f'low_scale={self.low_scale:g}, high_scale={self.high_scale:g}'

    def forward(self, inputs: Tensor) -> Tensor:
        return self.low(inputs) * self.low_scale + self.high(inputs) * self.high_scale


def add_adapter_output(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
    """Forward hook of an adapted layer: its output plus its adapter's output on the same input."""
    return output + getattr(module, ADAPTER_NAME)(args[0])


def inject_domain_adapters(model: nn.Module, include: Sequence[str], low_rank: int = 1, high_rank: int = 128,
                           seed: int = 0) -> list[tuple[str, DomainAdapter]]:
    """Put a :class:`DomainAdapter` beside every layer of ``model`` whose name matches ``include``.

    Patterns are globs over dotted module names (``fnmatch``; ``*`` crosses dots), e.g.
    ``'blocks.*.attn.qkv'`` or ``'backbone.layers.*.1.*.ffn.layers.0'``; each must match a layer. A
    matched layer must be an ``nn.Linear`` or a 1x1, single-group ``nn.Conv2d`` that its parent calls as a
    module: the ``out_proj`` of an ``nn.MultiheadAttention`` is refused (the attention reads its weight
    directly, an adapter beside it would never run), and so is a layer that already has an adapter. The
    down-projections are drawn from a generator seeded with ``seed``, layer after layer in module order.
    Returns ``(name, adapter)`` in module order.
    """
    patterns = list(include)
    if not patterns:
        raise ValueError('inject_domain_adapters: no include pattern given')
    named = [(name, module) for name, module in model.named_modules()
             if name and f'.{ADAPTER_NAME}.' not in f'.{name}.']
    attention_out = {id(m.out_proj) for _, m in named if isinstance(m, nn.MultiheadAttention)}
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name, _ in named):
            raise ConfigError(f'inject_domain_adapters: pattern {pattern!r} matches no module of '
                              f'{type(model).__name__}; its linear modules (indices as *): '
                              f'{", ".join(linear_module_patterns(model)) or "none"}')
    chosen = [(name, module) for name, module in named
              if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)]
    for name, module in chosen:
        _check_adaptable(name, module, id(module) in attention_out)
    generator = torch.Generator().manual_seed(seed)
    injected = []
    for name, module in chosen:
        adapter = DomainAdapter(module, low_rank, high_rank, generator)
        module.add_module(ADAPTER_NAME, adapter)
        module.register_forward_hook(add_adapter_output)
        injected.append((name, adapter))
    return injected


def _check_adaptable(name: str, module: nn.Module, is_attention_out: bool) -> None:
    if hasattr(module, ADAPTER_NAME):
        raise ValueError(f'{name!r} already has a domain adapter')
    if is_attention_out:
        raise ValueError(f'{name!r} is the out_proj of an nn.MultiheadAttention, which reads its weight '
                         'directly and never calls it: an adapter beside it would not run')
    if isinstance(module, nn.Linear):
        return
    if isinstance(module, nn.Conv2d):
        if module.kernel_size == (1, 1) and module.groups == 1 and module.padding_mode == 'zeros':
            return
        raise TypeError(f'{name!r} is a {module.kernel_size[0]}x{module.kernel_size[1]} Conv2d with '
                        f'{module.groups} group(s): only dense linear maps (Linear, 1x1 single-group Conv2d) '
                        'take a domain adapter')
    raise TypeError(f'{name!r} is a {type(module).__name__}: only dense linear maps (Linear, 1x1 '
                    'single-group Conv2d) take a domain adapter')


def domain_adapters(model: nn.Module) -> list[DomainAdapter]:
    """Every :class:`DomainAdapter` of ``model``, in module order."""
    return [module for module in model.modules() if isinstance(module, DomainAdapter)]


def set_adapter_scales(model: nn.Module, low: float, high: float) -> None:
    """Set the low- and high-rank scales (lambda_l, lambda_h) of every adapter of ``model``."""
    for adapter in domain_adapters(model):
        adapter.low_scale = float(low)
        adapter.high_scale = float(high)
