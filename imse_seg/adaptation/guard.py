"""The divergence guard: an update that makes the adapted state non-finite or collapsed is undone."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from imse_seg.core.entropy import NonFiniteError
from imse_seg.registry import ADAPTATION
from .method import AdaptationMethod, ValidRegion


@dataclass
class GuardEvent:
    """One refused update: the batch (count of batches the guard has seen before it) and why."""
    batch: int
    reason: str


@ADAPTATION.register_module()
class DivergenceGuard:
    """Runs a method's ``adapt`` and undoes it when the adapted state fails a check; counts the events.

    Before every batch the method's state (:meth:`AdaptationMethod.snapshot`: adapted parameters,
    optimiser, code bank, teacher...) is copied. The update is refused, and that copy loaded back, when

    - ``adapt`` raises :class:`~imse_seg.core.NonFiniteError` (a NaN/Inf logit, loss or gradient), or
    - a parameter is non-finite after the update (``check_parameters``);

    the batch is then scored by :meth:`AdaptationMethod.predict` (no update). With ``collapse_fraction``
    set, the scored prediction is also checked: when more than that fraction of its valid pixels (of
    its samples, for classification) falls in one class, the state it came from is collapsed, so the last
    state that passed this check is loaded back and the batch is predicted again. Each refusal is logged
    as a warning and kept as a :class:`GuardEvent`; the continual loop writes their count per segment.

    Args:
        collapse_fraction: Collapse threshold in (0, 1]; None switches the collapse check off.
        check_parameters: Check the adapted parameters for NaN/Inf after every update.
    """

    def __init__(self, collapse_fraction: float | None = None, check_parameters: bool = True) -> None:
        if collapse_fraction is not None and not 0 < collapse_fraction <= 1:
            raise ValueError(f'collapse_fraction must be in (0, 1], got {collapse_fraction}')
        self.collapse_fraction = collapse_fraction
        self.check_parameters = check_parameters
        self.events: list[GuardEvent] = []
        self.batches = 0
        self.last_good: dict[str, Any] | None = None

    def adapt(self, method: AdaptationMethod, model: nn.Module, inputs: Tensor,
              valid: ValidRegion | None = None) -> Tensor:
        """``method.adapt`` under the guard; returns the logits to score (detached)."""
        before = method.snapshot()
        reason = None
        try:
            logits = method.adapt(model, inputs, valid)
            reason = self._parameter_failure(method)
        except NonFiniteError as error:
            logits, reason = None, f'non-finite update: {error}'
        if reason is not None:
            method.restore(before)
            logits = method.predict(model, inputs)
        collapse = self._collapse(logits, valid)
        if collapse is None:
            if self.collapse_fraction is not None:
                self.last_good = before
        else:
            reason = collapse if reason is None else f'{reason}; {collapse}'
            if self.last_good is not None:
                method.restore(self.last_good)
                logits = method.predict(model, inputs)
        if reason is not None:
            self.events.append(GuardEvent(self.batches, reason))
            print_log(f'divergence guard, batch {self.batches}: {reason}; update skipped, last good state '
                      'restored', logger='current', level=logging.WARNING)
        self.batches += 1
        return logits

    def _parameter_failure(self, method: AdaptationMethod) -> str | None:
        if not self.check_parameters:
            return None
        params = method.adapted_parameters()
        if not params:
            return None
        finite = torch.stack([torch.isfinite(p).all() for p in params])
        if bool(finite.all()):
            return None
        return f'{int((~finite).sum())} adapted parameter tensor(s) non-finite after the update'

    def _collapse(self, logits: Tensor, valid: ValidRegion | None) -> str | None:
        if self.collapse_fraction is None or not bool(torch.isfinite(logits).all()):
            return None
        predicted = logits.argmax(dim=1)
        mask = None if valid is None else valid(logits)
        if mask is not None:
            predicted = predicted[mask]
        if predicted.numel() == 0:
            return None
        counts = torch.bincount(predicted.flatten(), minlength=logits.shape[1])
        fraction = float(counts.max()) / predicted.numel()
        if fraction <= self.collapse_fraction:
            return None
        return (f'collapse: {fraction:.1%} of the predicted pixels are class {int(counts.argmax())} '
                f'(threshold {self.collapse_fraction:.1%})')

    def state_dict(self) -> dict[str, Any]:
        """Events, batch count and (with the collapse check) the last state that passed it."""
        return dict(events=[asdict(event) for event in self.events], batches=self.batches,
                    last_good=self.last_good)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.events = [GuardEvent(**event) for event in state['events']]
        self.batches = state['batches']
        self.last_good = state['last_good']
