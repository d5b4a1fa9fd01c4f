"""Spectral layers: linear maps re-parametrised by their singular values (IMSE, methods.md 1.1).

A pretrained weight W (out x in) is decomposed once, ``W = U diag(s) Vh`` (thin SVD, rank r = number of
singular values above ``RANK_TOL``), and the layer's weight becomes the function ``W(s)`` of its r singular
values. U and Vh are frozen buffers; only ``s`` is a parameter. The mechanism is
``torch.nn.utils.parametrize``: the module's own forward (``nn.Linear``, ``nn.Conv2d``, or
``F.multi_head_attention_forward`` reading ``nn.MultiheadAttention.in_proj_weight``) runs unchanged and
sees the recomposed weight, so the output equals the original layer at ``s = s0`` to float tolerance. The
dense weight is not kept beside the factors as a parameter; reads that need no gradient reuse a cached
composition, which the tensor's getter returns without calling the parametrisation (:class:`SpectralWeight`).

Each row v_i of Vh is a *spectral expert*. For the diversity loss (methods.md 1.3) a layer can record the
alignment of its normalised input tokens with every expert, ``a = (x / ||x||) Vh^T`` (tokens x r); the
hooks that do it exist only while recording is switched on. Under mixed precision (:mod:`.precision`)
the reconstruction and the recorded activations stay in the factors' dtype (float32).
"""
from __future__ import annotations

import fnmatch
import re
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from imse_seg.errors import ConfigError

from .precision import float32_region

RANK_TOL = 1e-6


class SpectralWeight(nn.Module):
    """Parametrisation ``W(s) = U diag(s) Vh`` of one weight tensor (methods.md 1.1).

    ``right_inverse`` computes the thin SVD of the dense weight (in float64 for accuracy) and hands
    ``parametrize`` an empty tensor to keep as ``original``, so the dense matrix is freed; the trainable
    state is ``singular_values``. ``initial_singular_values`` keeps s0 for resets and mixture retrieval.

    The weight is recomposed on every read that autograd must see (gradients on and ``s`` trainable). Any
    other read (inference, or layers whose ``s`` is frozen, like the diversity-only blocks) returns a weight
    composed once and cached until ``s``, ``U`` or ``Vh`` change: the same values, without a matrix product
    per forward, at the memory of one dense weight per layer while cached. The cache key is each factor's
    ``_version`` (bumped by every in-place change: an optimiser step, a loaded code, SAM's ascent) and
    storage address (changed by ``.to()`` or ``.data =``); the entry keeps aliases of the factors it was
    built from, so their storage cannot be reused at the same address while it lives. An in-place edit
    through ``s.data`` (as EMA code does: ``ema.data[:] = ...``) bumps no version of ``s``, so the entry also
    keeps a copy of the r singular values it was composed from and is recomposed whenever they differ:
    a stale weight is never returned, whatever wrote ``s`` (the check costs O(r) per read; on a GPU it
    waits for ``s``). ``U`` and ``Vh`` are frozen buffers; they are replaced (``.to()``, ``.data =``) or
    written by versioned in-place ops (``load_state_dict``), all of which the key sees. Weights composed
    under ``torch.inference_mode`` get their own key: autograd cannot save inference tensors. Those reads
    do not pass through ``parametrize``'s modules at all: the converted tensor's getter calls
    :meth:`fixed_weight` directly, so an inference forward costs the dense model's plus an O(r) check per
    layer (issue 21).
    """

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.weight_shape = tuple(weight.shape)
        matrix = weight.detach().reshape(weight.shape[0], -1).to(torch.float64)
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        rank = int((s > RANK_TOL).sum())
        dtype = weight.dtype
        self.register_buffer('U', u[:, :rank].to(dtype).contiguous())
        self.register_buffer('Vh', vh[:rank].to(dtype).contiguous())
        self.register_buffer('initial_singular_values', s[:rank].to(dtype).clone())
        self.singular_values = nn.Parameter(s[:rank].to(dtype).clone())
        self.expert_activations: Tensor | None = None
        self._composed: Tensor | None = None
        self._composed_key: tuple = ()
        self._composed_from: tuple[Tensor, ...] = ()
        self._composed_values: Tensor | None = None

    @property
    def rank(self) -> int:
        return self.singular_values.numel()

    def compose(self) -> Tensor:
        """``U diag(s) Vh`` in the weight's shape, computed from the factors now, in their dtype even under
        autocast (:mod:`.precision`: the layer's own op casts the weight, the reconstruction stays exact)."""
        with float32_region(self.U):
            return ((self.U * self.singular_values) @ self.Vh).reshape(self.weight_shape)

    def records_graph(self) -> bool:
        """Whether a read now must be recomposed for autograd (``s`` trainable, gradients on)."""
        return self._parameters['singular_values'].requires_grad and torch.is_grad_enabled()

    def forward(self, original: Tensor) -> Tensor:
        if self.records_graph():
            self._drop_composed()
            return self.compose()
        return self.fixed_weight()

    def fixed_weight(self) -> Tensor:
        """The weight for a read autograd need not see: the cached composition, recomposed first if any
        factor changed since it was made."""
        buffers = self._buffers  # direct, not through nn.Module.__getattr__: this runs on every read
        s, u, vh = self._parameters['singular_values'], buffers['U'], buffers['Vh']
        key = (s._version, s.data_ptr(), u._version, u.data_ptr(), vh._version, vh.data_ptr(),
               torch.is_inference_mode_enabled())
        if key != self._composed_key or not torch.equal(s, self._composed_values):
            with torch.no_grad():
                self._composed = self.compose()
                self._composed_values = s.detach().clone()
            self._composed_key, self._composed_from = key, (s.detach(), u, vh)
        return self._composed

    def _drop_composed(self) -> None:
        self._composed, self._composed_key, self._composed_from, self._composed_values = None, (), (), None

    def right_inverse(self, weight: Tensor) -> Tensor:
        return weight.new_empty(0)

    def __getstate__(self) -> dict:
        # Recorded activations belong to one forward's graph; copies (teachers, frozen statistics
        # models) start without them.
        state = dict(super().__getstate__())
        state['expert_activations'] = None
        state['_composed'], state['_composed_key'], state['_composed_from'] = None, (), ()
        state['_composed_values'] = None
        return state


def _input_tokens(module: nn.Module, x: Tensor) -> Tensor:
    """The layer input as a (tokens x in) matrix: one row per position the weight is applied to."""
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size
        if k == (1, 1):
            return x.movedim(1, -1).reshape(-1, module.in_channels)
        patches = F.unfold(x, kernel_size=k, stride=module.stride)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return x.reshape(-1, x.shape[-1])


class SpectralLayer:
    """One converted weight: where it lives, its parametrisation, and optional input recording.

    ``name`` is the dotted name of the converted tensor's owner (for ``nn.MultiheadAttention``'s packed
    projection, ``<attn>.in_proj_weight``). ``host`` is the module whose call carries the input: the layer
    itself, or the ``nn.MultiheadAttention`` around ``out_proj`` (whose own forward is never called).
    """

    def __init__(self, name: str, module: nn.Module, tensor_name: str, host: nn.Module) -> None:
        self.name = name
        self.module = module
        self.tensor_name = tensor_name
        self.host = host
        self._hook: torch.utils.hooks.RemovableHandle | None = None

    def __repr__(self) -> str:
        return f'SpectralLayer({self.name!r}, rank={self.weight.rank}, shape={self.weight.weight_shape})'

    @property
    def weight(self) -> SpectralWeight:
        return self.module.parametrizations[self.tensor_name][0]

    @property
    def singular_values(self) -> nn.Parameter:
        return self.weight.singular_values

    @property
    def expert_activations(self) -> Tensor | None:
        """(tokens x r) alignment of the last recorded input with each expert, or None."""
        return self.weight.expert_activations

    @property
    def recording(self) -> bool:
        return self._hook is not None

    def record(self, enabled: bool = True) -> None:
        """Switch input recording on or off; off removes the hook, so it costs nothing."""
        if enabled and self._hook is None:
            if self.host is self.module and self.tensor_name != 'in_proj_weight':
                self._hook = self.host.register_forward_pre_hook(self._record_input)
            elif self.tensor_name == 'in_proj_weight':
                self._hook = self.host.register_forward_pre_hook(self._record_query, with_kwargs=True)
            else:
                self._hook = self.host.register_forward_hook(self._record_attention_output)
        elif not enabled and self._hook is not None:
            self._hook.remove()
            self._hook = None
            self.weight.expert_activations = None

    def _store(self, tokens: Tensor) -> None:
        weight = self.weight
        with float32_region(tokens):
            weight.expert_activations = F.normalize(tokens.to(weight.Vh.dtype), dim=-1) @ weight.Vh.T

    def _record_input(self, module: nn.Module, args: tuple) -> None:
        self._store(_input_tokens(module, args[0]))

    def _record_query(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        query = args[0] if args else kwargs['query']
        self._store(query.reshape(-1, query.shape[-1]))

    def _record_attention_output(self, module: nn.MultiheadAttention, args: tuple, output: tuple) -> None:
        # out_proj's input z is internal to F.multi_head_attention_forward. Its output o = z W^T + b with
        # W = U diag(s) Vh gives the expert coordinates exactly: z Vh^T = (o - b) U diag(1/s), and for a
        # full-rank W (the square out_proj of a trained model) ||z|| = ||z Vh^T||.
        weight = self.weight
        with float32_region(weight.U):
            out = output[0].reshape(-1, weight.U.shape[0]).to(weight.U.dtype)
            bias = self.module.bias
            if bias is not None:
                out = out - bias
            coords = (out @ weight.U) / weight.singular_values
            weight.expert_activations = F.normalize(coords, dim=-1)


def _as_patterns(patterns: str | Sequence[str] | None) -> list[str]:
    if patterns is None:
        return []
    return [patterns] if isinstance(patterns, str) else list(patterns)


def _check_convertible(name: str, module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.MultiheadAttention)):
        if isinstance(module, nn.MultiheadAttention) and not module._qkv_same_embed_dim:
            raise TypeError(f'{name}: nn.MultiheadAttention with separate q/k/v weights is not supported '
                            '(only the packed in_proj_weight is)')
        return
    if isinstance(module, nn.Conv2d):
        patch_linear = (module.stride == module.kernel_size and module.groups == 1
                        and module.dilation == (1, 1) and module.padding in ((0, 0), 'valid'))
        if patch_linear:
            return
        raise TypeError(
            f'{name}: nn.Conv2d(kernel_size={module.kernel_size}, stride={module.stride}, '
            f'padding={module.padding}, groups={module.groups}) is not a linear map over tokens; only '
            'convolutions with stride == kernel_size, no padding, dilation 1 and groups 1 (e.g. 1x1) '
            'can be spectral layers')
    raise TypeError(f'{name}: {type(module).__name__} is not a supported linear layer '
                    '(nn.Linear, patch-wise nn.Conv2d, nn.MultiheadAttention)')


def linear_module_patterns(model: nn.Module) -> list[str]:
    """The names of ``model``'s convertible linear maps with every numeric index as ``*``, deduplicated.

    What a pattern could match, short enough for an error message: a 24-block transformer's hundreds of
    layers collapse to one entry per role (e.g. ``backbone.layers.*.1.*.attn.attn``).
    """
    names = []
    for name, module in model.named_modules():
        if not name:
            continue
        try:
            _check_convertible(name, module)
        except TypeError:
            continue
        names.append(re.sub(r'(?<=\.)\d+(?=\.|$)|^\d+(?=\.|$)', '*', name))
    return list(dict.fromkeys(names))


def _spectral_read(tensor_name: str, parametrized_read: Callable[[nn.Module], Tensor]
                   ) -> Callable[[nn.Module], Tensor]:
    """The getter of a converted tensor: a read that autograd need not see (inference, frozen ``s``) gets
    the cached composition directly (:meth:`SpectralWeight.fixed_weight`), without calling the
    parametrisation modules (issue 21: spectral inference at the dense model's cost); any other read, or a
    tensor with parametrisations stacked on ours, goes through ``parametrize``'s own getter.

    It reaches the parametrisation through the module it is called on, never a captured one: deep copies
    of a converted module share its class, and so this property.
    """
    def read(module: nn.Module) -> Tensor:
        chain = module._modules['parametrizations']._modules[tensor_name]
        spectral = chain._modules['0']
        if len(chain._modules) == 1 and not spectral.records_graph():
            return spectral.fixed_weight()
        return parametrized_read(module)
    return read


def _parametrize(module: nn.Module, tensor_name: str) -> None:
    tensor = getattr(module, tensor_name)
    spectral = SpectralWeight(tensor)
    parametrize.register_parametrization(module, tensor_name, spectral)
    module.parametrizations[tensor_name].original.requires_grad_(False)
    # register_parametrization gave the module a class of its own, with a property per converted tensor.
    parametrized = getattr(type(module), tensor_name)
    setattr(type(module), tensor_name,
            property(_spectral_read(tensor_name, parametrized.fget), parametrized.fset))


def spectralize(model: nn.Module, include: str | Sequence[str],
                exclude: str | Sequence[str] | None = None) -> list[SpectralLayer]:
    """Convert, in place, the linear maps of ``model`` whose names match ``include`` (and no ``exclude``).

    Patterns are shell-style globs over dotted module names (``fnmatch``; ``*`` also crosses dots), e.g.
    ``'backbone.layers.*.1.*.ffn.layers.0'`` or ``'blocks.*.attn.qkv'``. A matched
    ``nn.MultiheadAttention`` converts its packed ``in_proj_weight`` (3C x C, one matrix) and its
    ``out_proj``. Every pattern must match at least one module, and every matched module must be a
    supported linear map: anything else raises, rather than being skipped silently. Returns the converted
    layers in module order. Trainability is left to :func:`train_only`.
    """
    include_patterns, exclude_patterns = _as_patterns(include), _as_patterns(exclude)
    if not include_patterns:
        raise ValueError('spectralize: no include pattern given')
    named = [(name, module) for name, module in model.named_modules() if name]
    attention_of = {id(m.out_proj): m for _, m in named if isinstance(m, nn.MultiheadAttention)}
    for pattern in include_patterns + exclude_patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name, _ in named):
            raise ConfigError(f'spectralize: pattern {pattern!r} matches no module of '
                              f'{type(model).__name__}; its linear modules (indices as *): '
                              f'{", ".join(linear_module_patterns(model)) or "none"}')

    layers: list[SpectralLayer] = []
    for name, module in named:
        if not any(fnmatch.fnmatchcase(name, p) for p in include_patterns):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude_patterns):
            continue
        _check_convertible(name, module)
        if isinstance(module, nn.MultiheadAttention):
            targets = [(f'{name}.in_proj_weight', module, 'in_proj_weight', module),
                       (f'{name}.out_proj', module.out_proj, 'weight', module)]
        else:
            targets = [(name, module, 'weight', attention_of.get(id(module), module))]
        for layer_name, owner, tensor_name, host in targets:
            if parametrize.is_parametrized(owner, tensor_name):
                continue  # matched twice (an attention and its out_proj)
            _parametrize(owner, tensor_name)
            layers.append(SpectralLayer(layer_name, owner, tensor_name, host))
    return layers


def record_expert_activations(layers: Iterable[SpectralLayer], enabled: bool = True) -> None:
    """Switch input recording on or off for all ``layers`` (for the diversity loss, methods.md 1.3)."""
    for layer in layers:
        layer.record(enabled)
