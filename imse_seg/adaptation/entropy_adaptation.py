"""One-model test-time adaptation: TENT, IMSE and their STAG variants are configurations of this class."""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
from mmengine.registry import OPTIMIZERS
from torch import Tensor, nn

from imse_seg.core.code_bank import MixtureRetrieval, NewDomainRule, SpectralCodeBank, TopOneRetrieval
from imse_seg.core.domain_stats import ThresholdCalibration
from imse_seg.core.distributed import average_gradients_across_ranks
from imse_seg.core.norm_statistics import remove_norm_statistics
from imse_seg.core.objective import ForwardOutputs
from imse_seg.core.sam import SAM
from imse_seg.core.update import closure_step

from imse_seg.registry import ADAPTATION, build_adaptation
from .method import AdaptationMethod, Forward, ValidRegion, clone_state, load_parameters
from .objective_terms import AdaptationContext, build_objective


for _component in (TopOneRetrieval, MixtureRetrieval, NewDomainRule, ThresholdCalibration):
    ADAPTATION.register_module(module=_component)


@ADAPTATION.register_module()
class EntropyAdaptation(AdaptationMethod):
    """Predict, then update the selected parameters on an objective of the same forward (TENT family).

    - ``parameters``: which parameters adapt (``NormParameters`` for TENT, ``SpectralParameters`` for
      IMSE: singular values only).
    - ``objective``: ``{name: dict(type=<term>, weight=w, ...)}`` (``EntropyTerm``, ``DiversityTerm``,
      ``StagTerm``, ``SelfTrainingTerm``).
    - ``optimizer``: an mmengine ``OPTIMIZERS`` config without params, e.g. ``dict(type='Adam', lr=1e-4)``;
      with ``sam_rho`` it is wrapped in SAM (IMSE, methods.md 1.2). Its second forward hands the objective
      the first forward's logits, so a reliable-entropy term keeps the pixels reliable in both forwards
      (official SAR/IMSE; ``EntropyTerm(keep_first_selection=False)`` re-selects instead).
      ``sam_interval`` k > 1 ascends only on every k-th batch (the first, the (k+1)-th, ...) and takes a
      plain step on the others: SAM's second forward-backward is then paid once per k images (a cost
      lever of issue 21, not in the papers; 1, every batch, is IMSE's and SAR's rule).
      ``sam_reuse_ascent`` is the other such lever (:class:`~imse_seg.core.sam.SAM` ``reuse_ascent``): every
      batch after the first gets a forward without gradients (the prediction, as always at the current
      weights) and one forward-backward, at the point ascended along the previous batch's gradient. With
      both, the batches between ascents take plain steps, and each ascent reuses the gradient at w of the
      plain batch before it: a backward per image, and a no-grad forward only every k-th.
    - ``code_bank``: IMSE's domain-aware code retrieval (methods.md 1.4), fed with the tokens (B x N x C) of
      a frozen copy of ``feature_module`` (SegFormer: ``backbone.layers.0.0``, the first patch embedding;
      timm ViT: ``patch_embed``), or of its B x C x H x W maps with ``channel_dim=1`` (EfficientViT:
      ``backbone.stem``); None for no bank. The copy normalises with the source's BatchNorm moments
      whatever the selection's ``statistics``: test moments would normalise the shift away.
    - ``reset_each_segment``: re-create the optimiser state at every segment start, as the published TENT
      and CoTTA code does at condition changes (it knows the boundaries; a deployed model does not).

    The predictions scored for a batch are those of the first forward, before this batch's update. A
    non-finite loss raises :class:`~imse_seg.core.NonFiniteError` with the parameters untouched.
    """

    def __init__(self, parameters: Mapping, objective: Mapping[str, Mapping], optimizer: Mapping,
                 sam_rho: float | None = None, sam_interval: int = 1, sam_reuse_ascent: bool = False,
                 code_bank: Mapping | None = None, reset_each_segment: bool = False) -> None:
        if not isinstance(sam_interval, int) or sam_interval < 1:
            raise ValueError(f'sam_interval must be a positive integer, got {sam_interval!r}')
        if sam_interval > 1 and sam_rho is None:
            raise ValueError(f'sam_interval={sam_interval} needs SAM: set sam_rho too')
        if sam_reuse_ascent and sam_rho is None:
            raise ValueError('sam_reuse_ascent needs SAM: set sam_rho too')
        self.parameters_cfg = dict(parameters)
        self.objective_cfg = {name: dict(cfg) for name, cfg in objective.items()}
        self.optimizer_cfg = dict(optimizer)
        self.sam_rho = sam_rho
        self.sam_interval = sam_interval
        self.sam_reuse_ascent = sam_reuse_ascent
        self.code_bank_cfg = dict(code_bank) if code_bank is not None else None
        self.reset_each_segment = reset_each_segment
        self.batches_seen = 0
        self.where: dict[str, Any] | None = None

    def setup(self, model: nn.Module, forward: Forward) -> None:
        super().setup(model, forward)
        selection = build_adaptation(self.parameters_cfg)(model)
        self.params = selection.params
        self.context = AdaptationContext(model, selection.layers)
        self.objective = build_objective(self.objective_cfg, self.context)
        self.optimizer = self._build_optimizer(self.params)
        average_gradients_across_ranks(self.params)
        self.bank, self.bank_features = None, None
        if self.code_bank_cfg is not None:
            self.bank, self.bank_features = self._build_bank(model, self.code_bank_cfg)

    def _build_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        cfg = dict(self.optimizer_cfg)
        optimizer_cls = OPTIMIZERS.get(cfg.pop('type'))
        if self.sam_rho is None:
            return optimizer_cls(params, **cfg)
        return SAM(params, optimizer_cls, rho=self.sam_rho, reuse_ascent=self.sam_reuse_ascent, **cfg)

    def _build_bank(self, model: nn.Module, cfg: dict) -> tuple[SpectralCodeBank, nn.Module]:
        cfg = dict(cfg)
        features = copy.deepcopy(model.get_submodule(cfg.pop('feature_module'))).eval()
        features.requires_grad_(False)
        remove_norm_statistics(features)  # the bank measures the domain with the source's moments
        for key in ('threshold', 'retrieval', 'new_domain'):
            if isinstance(cfg.get(key), Mapping):
                cfg[key] = build_adaptation(cfg[key])
        optimizer = self.optimizer.base_optimizer if isinstance(self.optimizer, SAM) else self.optimizer
        cfg.setdefault('channel_dim', -1)
        bank = SpectralCodeBank(self.context.layers, optimizer=optimizer, **cfg)
        return bank, features

    def start_segment(self, name: str) -> None:
        if self.reset_each_segment:
            self.optimizer.state.clear()

    def adapt(self, model: nn.Module, inputs: Tensor, valid: ValidRegion | None = None) -> Tensor:
        if self.bank is not None:
            with torch.no_grad():
                tokens = self.bank_features(inputs)
            self.bank.observe(tokens[0] if isinstance(tokens, tuple) else tokens, self.batches_seen, self.where)
        first: dict[str, Tensor] = {}

        def closure() -> Tensor:
            logits = self.forward(model, inputs)
            earlier = first.get('logits')  # set on SAM's second (perturbed) call
            first.setdefault('logits', logits.detach())
            loss, _ = self.objective(ForwardOutputs(
                logits, valid=None if valid is None else valid(logits),
                features=self.context.classifier_input.pop('features', None),
                input_size=tuple(inputs.shape[-2:]), first_logits=earlier))
            return loss

        with torch.enable_grad():
            closure_step(self.optimizer, closure, ascend=self.batches_seen % self.sam_interval == 0)
        self.batches_seen += 1
        return first['logits']

    def locate(self, where: Mapping[str, Any]) -> None:
        self.where = dict(where)

    def bank_events(self) -> list[dict[str, Any]]:
        """The code bank's events so far (empty without a bank), each with its batch's place in the stream
        (the fields the task loop gave :meth:`locate`, e.g. round, segment, images) beside ``batch_index``."""
        if self.bank is None:
            return []
        events = []
        for event in self.bank.events:
            fields = vars(event).copy()
            where = fields.pop('where') or {}
            events.append({'batch_index': fields.pop('batch_index'), **where, **fields})
        return events

    def adapted_parameters(self) -> list[nn.Parameter]:
        return list(self.params)

    def state_dict(self) -> dict[str, Any]:
        """Adapted parameters (in selection order), optimiser state, batch count and code bank."""
        state = dict(params=[p.detach() for p in self.params], optimizer=self.optimizer.state_dict(),
                     batches_seen=self.batches_seen)
        if self.bank is not None:
            state['bank'] = self.bank.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_parameters(self.params, state['params'], type(self).__name__)
        self.optimizer.load_state_dict(state['optimizer'])
        self.batches_seen = state['batches_seen']
        if self.bank is not None:
            self.bank.load_state_dict(state['bank'])

    def snapshot(self) -> dict[str, Any]:
        """:meth:`state_dict` copied, with the code bank's event log kept by length: the log only grows,
        and copying it for every batch would cost time in proportion to the stream so far."""
        if self.bank is None:
            return super().snapshot()
        events, self.bank.events = self.bank.events, []
        try:
            state = clone_state(self.state_dict())
        finally:
            self.bank.events = events
        return dict(state=state, events=len(events))

    def restore(self, snapshot: dict[str, Any]) -> None:
        if self.bank is None:
            super().restore(snapshot)
            return
        events = self.bank.events[:snapshot['events']]
        self.load_state_dict(clone_state(snapshot['state']))
        self.bank.events = events
