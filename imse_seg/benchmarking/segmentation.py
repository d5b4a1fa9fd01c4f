"""The benchmark cases of an mmseg segmentor: inference, one step of each method, and the parts of IMSE.

Every case is a zero-argument callable over a fixed pre-processed input batch (random, as the cost does
not depend on the pixels): ``inference`` (the unconverted segmentor, no grad), ``spectral_inference`` (the
segmentor with the spectral layers of the first method that converts any, singular values unchanged, no
grad), ``step:<method>`` (one ``adapt`` call of each method on its own freshly loaded segmentor, cycling
over a few inputs so that a code bank sees in-domain noise rather than identical batches; a method with
``sam_interval`` k runs k steps per timed run, reported per step),
``recompose`` (reading every spectral weight as a forward pass does, gradients on), ``stag_loss`` (the
STAG term's forward and backward on logits of the head's resolution), ``code_bank_statistics`` (the
frozen patch embedding, per-channel statistics and distance to the running estimate: a bank's ``observe``
on a batch without shift) and ``code_bank_retrieval`` (distances to five stored entries, top-1 retrieval
and loading the code into the layers). With ``amp`` the inference and step cases run the segmentor's forward in
mixed precision (:class:`~imse_seg.core.precision.MixedPrecisionForward`), as ``tools/adapt.py --amp`` does;
the loss and code bank cases are float32 either way.
"""
from __future__ import annotations

import copy
import itertools
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from imse_seg.adaptation.parameters import SpectralParameters
from imse_seg.core import (DomainStatistics, SpectralCodeBank, SpectralLayer, StagAlignment, TopOneRetrieval,
                           channel_statistics, load_spectral_code, spectral_code, symmetric_kl)
from imse_seg.core.precision import MixedPrecisionForward
from imse_seg.registry import build_adaptation
from imse_seg.seg.adaptation.segmentation import segmentor_logits

from .timing import Repeated

Case = Callable[[], object]
METHODS = ('source', 'tent', 'cotta', 'imse', 'tent_stag', 'imse_stag', 'imse_stag_no_sam')
# Variants measured beside the configured methods: (base method, overrides).
VARIANTS = {'imse_stag_no_sam': ('imse_stag', dict(sam_rho=None)),
            **{f'imse_stag_sam_every_{k}': ('imse_stag', dict(sam_interval=k)) for k in (2, 4, 8)},
            'imse_stag_sam_reuse': ('imse_stag', dict(sam_reuse_ascent=True)),
            'imse_stag_sam_reuse_every_2': ('imse_stag', dict(sam_reuse_ascent=True, sam_interval=2))}
INPUT_POOL = 4
BANK_ENTRIES = 5


def build_segmentor(model_cfg: Mapping, checkpoint: str | None, device: torch.device) -> nn.Module:
    """Build the segmentor of ``model_cfg`` in eval mode on ``device``, with ``checkpoint``'s weights.

    Built from a ``ConfigDict``, as mmseg builds it: ``EncoderDecoder.inference`` (CoTTA's views) reads
    ``test_cfg`` by attribute.
    """
    from mmengine.config import ConfigDict
    from mmengine.runner import load_checkpoint
    from mmseg.registry import MODELS

    model = MODELS.build(ConfigDict(model_cfg))
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    return model.to(device).eval()


def random_inputs(batch: int, size: Sequence[int], device: torch.device, seed: int) -> list[Tensor]:
    """A few pre-processed-like batches (standard normal), reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, *size, generator=generator).to(device) for _ in range(INPUT_POOL)]


def cycling(fn: Callable[[Tensor], object], inputs: list[Tensor]) -> Case:
    """A case calling ``fn`` on the next of ``inputs`` each time, round robin."""
    position = itertools.count()
    return lambda: fn(inputs[next(position) % len(inputs)])


def spectral_parameters(methods: Mapping[str, Mapping]) -> SpectralParameters | None:
    """The spectral conversion of the first method in ``methods`` that has one (IMSE's layers), or None.

    Without the method's BatchNorm ``statistics``: ``spectral_inference`` against ``inference`` measures
    what the conversion costs, not what normalising with other moments costs (that is ``step:bn_stats*``).
    """
    for cfg in methods.values():
        parameters = cfg.get('parameters')
        if parameters is not None and parameters.get('type') == 'SpectralParameters':
            return build_adaptation(dict(parameters, statistics=None))
    return None


def no_grad_forward(model: nn.Module, inputs: Tensor, amp: bool = False) -> Case:
    """A case predicting ``inputs`` without gradients (in mixed precision with ``amp``)."""
    forward = model_forward(amp)

    def run() -> Tensor:
        with torch.no_grad():
            return forward(model, inputs)
    return run


def model_forward(amp: bool) -> Callable[[nn.Module, Tensor], Tensor]:
    """The forward the methods see: :func:`segmentor_logits`, in mixed precision with ``amp``."""
    return MixedPrecisionForward(segmentor_logits) if amp else segmentor_logits


def _recompose(layers: Sequence[SpectralLayer]) -> Case:
    def run() -> list[Tensor]:
        with torch.enable_grad():
            return [getattr(layer.module, layer.tensor_name) for layer in layers]
    return run


def _stag_loss(model: nn.Module, inputs: Tensor) -> Case:
    alignment = StagAlignment.from_classifier(model.decode_head.conv_seg)
    with torch.no_grad():
        logits = segmentor_logits(model, inputs).requires_grad_(True)
    return lambda: torch.autograd.grad(alignment(logits), logits)


def code_bank_features(methods: Mapping[str, Mapping]) -> tuple[str, int] | None:
    """``(feature_module, channel_dim)`` of the first method in ``methods`` with a code bank, or None."""
    for cfg in methods.values():
        bank = cfg.get('code_bank')
        if bank is not None:
            return bank['feature_module'], bank.get('channel_dim', -1)
    return None


def _bank_statistics(model: nn.Module, layers: list[SpectralLayer], inputs: list[Tensor],
                     feature_module: str, channel_dim: int) -> Case:
    features = copy.deepcopy(model.get_submodule(feature_module)).eval().requires_grad_(False)
    bank = SpectralCodeBank(layers, channel_dim=channel_dim, full_batch_size=1, threshold=float('inf'))
    batches = itertools.count()

    def run(x: Tensor) -> object:
        with torch.no_grad():
            tokens = features(x)
        return bank.observe(tokens[0] if isinstance(tokens, tuple) else tokens, next(batches))
    return cycling(run, inputs)


def _bank_retrieval(model: nn.Module, layers: list[SpectralLayer], inputs: Tensor, feature_module: str,
                    channel_dim: int) -> Case:
    with torch.no_grad():
        tokens = model.get_submodule(feature_module)(inputs)
    stats = channel_statistics(tokens[0] if isinstance(tokens, tuple) else tokens, channel_dim=channel_dim)
    entries = DomainStatistics.stack([DomainStatistics(stats.mean + i, stats.var * (1 + i))
                                      for i in range(BANK_ENTRIES)])
    codes = [spectral_code(layers) for _ in range(BANK_ENTRIES)]
    retrieval = TopOneRetrieval()

    def run() -> None:
        distances = symmetric_kl(stats, entries)
        load_spectral_code(layers, retrieval(distances, codes, codes[0]).code)
    return run


def segmentation_cases(build: Callable[[], nn.Module], methods: Mapping[str, Mapping], batch: int,
                       size: Sequence[int], device: torch.device, amp: bool = False) -> dict[str, Case]:
    """All cases for one input shape; ``build()`` returns a fresh loaded segmentor on ``device``; ``amp``:
    inference and steps in mixed precision.

    The spectral cases (``spectral_inference``, ``recompose``, ``code_bank_*``) use the conversion of the
    first method that has one and are left out when none of ``methods`` converts spectral layers; the code
    bank cases read the features of the first method with a bank, and are left out without one.
    """
    inputs = random_inputs(batch, size, device, seed=0)
    plain = build()
    conversion = spectral_parameters(methods)
    cases: dict[str, Case] = {'inference': no_grad_forward(plain, inputs[0], amp)}
    if conversion is not None:
        spectral = build()
        conversion(spectral)
        cases['spectral_inference'] = no_grad_forward(spectral, inputs[0], amp)
    for name, cfg in methods.items():
        model = build()
        method = build_adaptation(cfg)
        method.setup(model, model_forward(amp))
        step = cycling(lambda x, m=method, s=model: m.adapt(s, x), inputs)
        period = cfg.get('sam_interval', 1)
        cases[f'step:{name}'] = Repeated(step, period) if period > 1 else step
    cases['stag_loss'] = _stag_loss(plain, inputs[0])
    if conversion is not None:
        cases['recompose'] = _recompose(conversion(build()).layers)
    bank = code_bank_features(methods)
    if conversion is not None and bank is not None:
        bank_model = build()
        bank_layers = conversion(bank_model).layers
        cases['code_bank_statistics'] = _bank_statistics(bank_model, bank_layers, inputs, *bank)
        cases['code_bank_retrieval'] = _bank_retrieval(bank_model, bank_layers, inputs[0], *bank)
    return cases


def load_setup(config: str, methods_file: str, names: Sequence[str]) -> tuple[dict, dict[str, dict]]:
    """The segmentor config and the method configs named ``names``.

    ``config`` is a model config (``model = dict(type='EncoderDecoder', ...)``) or an adaptation config
    (``model = dict(type='AdaptiveSegmentor', module=...)``). A method name is looked up in ``config``
    first (adaptation configs inherit the method file), then in ``methods_file``; a name in
    :data:`VARIANTS` is its base method with the variant's overrides.
    """
    from mmengine.config import Config

    cfg = Config.fromfile(config)
    library = Config.fromfile(methods_file)
    model = cfg.model.to_dict()
    if model['type'] == 'AdaptiveSegmentor':
        model = model['module']
    methods = {}
    for name in names:
        base, overrides = VARIANTS.get(name, (name, {}))
        source = cfg if base in cfg else library
        if base not in source:
            raise KeyError(f'method {base!r} is in neither {config} nor {methods_file}')
        methods[name] = {**source[base].to_dict(), **overrides}
    return model, methods
