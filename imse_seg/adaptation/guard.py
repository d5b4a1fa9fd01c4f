"""The divergence guard: an update that makes the adapted state non-finite or collapsed is undone."""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from imse_seg.core.entropy import NonFiniteError, entropy
from imse_seg.registry import ADAPTATION
from .method import AdaptationMethod, ValidRegion


@dataclass
class GuardEvent:
    """One refused update: the batch (count of batches the guard has seen before it) and why."""
    batch: int
    reason: str


@dataclass
class PredictionSignals:
    """What the collapse check reads off a scored prediction: the share of its dominant class (of the valid
    pixels, or samples) and its mean entropy divided by ln K (0: one-hot, 1: uniform)."""
    share: float
    dominant: int
    entropy: float


@ADAPTATION.register_module()
class DivergenceGuard:
    """Runs a method's ``adapt`` and undoes it when the adapted state fails a check; counts the events.

    Before every batch the method's state (:meth:`AdaptationMethod.snapshot`: adapted parameters,
    optimiser, code bank, teacher...) is copied. The update is refused, and that copy loaded back, when

    - ``adapt`` raises :class:`~imse_seg.core.NonFiniteError` (a NaN/Inf logit, loss or gradient), or
    - a parameter is non-finite after the update (``check_parameters``);

    the batch is then scored by :meth:`AdaptationMethod.predict` (no update).

    The collapse check (on with ``collapse_fraction`` or ``entropy_floor``) reads two signals off every
    scored prediction, which the methods compute anyway: the share of its dominant class and its
    normalised entropy (mean H / ln K), kept as a moving average (``ema <- m ema + (1 - m) value``,
    ``entropy_momentum`` m), as SAR's model recovery does with its loss. The state that made the prediction
    is *collapsed* when the share exceeds ``collapse_fraction`` or the average falls below
    ``entropy_floor``. Otherwise it is healthy and kept as the *last good state* (with its average). On a
    collapse the guard loads the last good state, predicts the batch again and checks that prediction too;
    only if it passes is it scored, else the guard goes back to the *source state* (the method's state
    before the first batch, which starts the average afresh) and scores the source's prediction. A
    collapse within ``recollapse_window`` batches of the previous recovery goes to the source state at
    once: the last good state evidently leads back into the collapse (a learning rate far too high), and
    then updates pause: the next ``pause_batches`` batches are scored by the source state without an update,
    twice as many after each further such collapse (exponential back-off, reset by a recovery outside the
    window), so that an update rule that ruins the model in one step costs a few batches per pause instead
    of one batch in every few. Each refusal is logged as a warning and kept as a :class:`GuardEvent`; the
    continual loop writes their count per segment.

    Args:
        collapse_fraction: Dominant-class share in (0, 1] above which a prediction is collapsed; None: not
            checked.
        entropy_floor: Normalised-entropy average in [0, 1) below which a state is collapsed; None: not
            checked.
        entropy_momentum: Weight of the old value in the entropy average, in [0, 1).
        recollapse_window: Batches after a recovery (or after the end of a pause) within which a new
            collapse restores the source state and pauses updates.
        pause_batches: Batches scored without an update after the first such collapse (doubled at each
            further one); 0: no pause.
        check_parameters: Check the adapted parameters for NaN/Inf after every update.
    """

    def __init__(self, collapse_fraction: float | None = None, entropy_floor: float | None = None,
                 entropy_momentum: float = 0.9, recollapse_window: int = 25, pause_batches: int = 25,
                 check_parameters: bool = True) -> None:
        self.check_options(collapse_fraction, entropy_floor, entropy_momentum, recollapse_window, pause_batches)
        self.collapse_fraction = collapse_fraction
        self.entropy_floor = entropy_floor
        self.entropy_momentum = entropy_momentum
        self.recollapse_window = recollapse_window
        self.pause_batches = pause_batches
        self.check_parameters = check_parameters
        self.events: list[GuardEvent] = []
        self.batches = 0
        self.last_good: dict[str, Any] | None = None   # None: the source state is the last good one
        self.last_good_entropy: float | None = None
        self.source: dict[str, Any] | None = None
        self.entropy_average: float | None = None
        self.recovered_at: int | None = None
        self.pause = 0                    # length of the last pause (0: none since the back-off was reset)
        self.paused_until: int | None = None

    @staticmethod
    def check_options(collapse_fraction: float | None = None, entropy_floor: float | None = None,
                      entropy_momentum: float = 0.9, recollapse_window: int = 25, pause_batches: int = 25,
                      check_parameters: bool = True) -> None:
        """Refuse thresholds outside their ranges (``ValueError``); also checked before a run starts."""
        if collapse_fraction is not None and not 0 < collapse_fraction <= 1:
            raise ValueError(f'collapse_fraction must be in (0, 1], got {collapse_fraction}')
        if entropy_floor is not None and not 0 <= entropy_floor < 1:
            raise ValueError(f'entropy_floor must be in [0, 1), got {entropy_floor}')
        if not 0 <= entropy_momentum < 1:
            raise ValueError(f'entropy_momentum must be in [0, 1), got {entropy_momentum}')
        if recollapse_window < 0:
            raise ValueError(f'recollapse_window must be >= 0, got {recollapse_window}')
        if pause_batches < 0:
            raise ValueError(f'pause_batches must be >= 0, got {pause_batches}')

    @property
    def checks_collapse(self) -> bool:
        return self.collapse_fraction is not None or self.entropy_floor is not None

    def adapt(self, method: AdaptationMethod, model: nn.Module, inputs: Tensor,
              valid: ValidRegion | None = None) -> Tensor:
        """``method.adapt`` under the guard; returns the logits to score (detached)."""
        if self.paused_until is not None and self.batches < self.paused_until:
            self.batches += 1
            return method.predict(model, inputs)
        before = method.snapshot()
        if self.checks_collapse and self.source is None:
            self.source = before
        reason = None
        try:
            logits = method.adapt(model, inputs, valid)
            reason = self._parameter_failure(method)
        except NonFiniteError as error:
            logits, reason = None, f'non-finite update: {error}; update skipped'
        if reason is not None:
            method.restore(before)
            logits = method.predict(model, inputs)
        if self.checks_collapse:
            logits, collapse = self._recover_from_collapse(method, model, inputs, valid, logits, before)
            if collapse is not None:
                reason = collapse if reason is None else f'{reason}; {collapse}'
        if reason is not None:
            self.events.append(GuardEvent(self.batches, reason))
            print_log(f'divergence guard, batch {self.batches}: {reason}', logger='current',
                      level=logging.WARNING)
        self.batches += 1
        return logits

    def _recover_from_collapse(self, method: AdaptationMethod, model: nn.Module, inputs: Tensor,
                               valid: ValidRegion | None, logits: Tensor,
                               before: dict[str, Any]) -> tuple[Tensor, str | None]:
        """The logits to score and, if the state that made ``logits`` collapsed, what was done about it."""
        signals = self._signals(logits, valid)
        if signals is None:
            return logits, None
        average = self._averaged(self.entropy_average, signals.entropy)
        collapse = self._collapse(signals, average)
        if collapse is None:
            self.entropy_average = average
            self.last_good, self.last_good_entropy = before, average
            return logits, None
        recent = self.recovered_at is not None and self.batches - self.recovered_at <= self.recollapse_window
        self.recovered_at = self.batches
        if self.last_good is not None and not recent:
            method.restore(self.last_good)
            again = method.predict(model, inputs)
            signals = self._signals(again, valid)
            average = self._averaged(self.last_good_entropy, signals.entropy) if signals else None
            if signals is not None and self._collapse(signals, average) is None:
                self.entropy_average = average
                return again, f'{collapse}; last good state restored'
        method.restore(self.source)
        again = method.predict(model, inputs)
        signals = self._signals(again, valid)
        self.entropy_average = None if signals is None else signals.entropy
        self.last_good, self.last_good_entropy = None, None
        if not recent:
            self.pause = 0
        elif self.pause_batches:
            self.pause = 2 * self.pause if self.pause else self.pause_batches
            self.paused_until = self.batches + 1 + self.pause
            self.recovered_at = self.paused_until - 1
            return again, f'{collapse}; source state restored, updates paused for {self.pause} batches'
        return again, f'{collapse}; source state restored'

    def _averaged(self, average: float | None, value: float) -> float:
        if average is None:
            return value
        return self.entropy_momentum * average + (1.0 - self.entropy_momentum) * value

    def _parameter_failure(self, method: AdaptationMethod) -> str | None:
        if not self.check_parameters:
            return None
        params = method.adapted_parameters()
        if not params:
            return None
        finite = torch.stack([torch.isfinite(p).all() for p in params])
        if bool(finite.all()):
            return None
        return f'{int((~finite).sum())} adapted parameter tensor(s) non-finite after the update; update skipped'

    @staticmethod
    def _signals(logits: Tensor, valid: ValidRegion | None) -> PredictionSignals | None:
        """The collapse signals of ``logits`` (None when they are not finite or cover no valid pixel)."""
        if not bool(torch.isfinite(logits).all()):
            return None
        predicted = logits.argmax(dim=1)
        pixel_entropy = entropy(logits)
        mask = None if valid is None else valid(logits)
        if mask is not None:
            predicted, pixel_entropy = predicted[mask], pixel_entropy[mask]
        if predicted.numel() == 0:
            return None
        counts = torch.bincount(predicted.flatten(), minlength=logits.shape[1])
        return PredictionSignals(share=float(counts.max()) / predicted.numel(), dominant=int(counts.argmax()),
                                 entropy=float(pixel_entropy.mean()) / math.log(logits.shape[1]))

    def _collapse(self, signals: PredictionSignals, average: float | None) -> str | None:
        """Why a state whose prediction gave ``signals`` (entropy average ``average``) is collapsed, or None."""
        if self.collapse_fraction is not None and signals.share > self.collapse_fraction:
            return (f'collapse: {signals.share:.1%} of the predicted pixels are class {signals.dominant} '
                    f'(threshold {self.collapse_fraction:.1%})')
        if self.entropy_floor is not None and average is not None and average < self.entropy_floor:
            return (f'collapse: the entropy average fell to {average:.3f} of ln K (floor '
                    f'{self.entropy_floor:.3f})')
        return None

    def state_dict(self) -> dict[str, Any]:
        """Events, batch count and (with the collapse check) the last good and the source states and the
        entropy averages, the pause."""
        return dict(events=[asdict(event) for event in self.events], batches=self.batches,
                    last_good=self.last_good, last_good_entropy=self.last_good_entropy,
                    source=self.source, entropy_average=self.entropy_average, recovered_at=self.recovered_at,
                    pause=self.pause, paused_until=self.paused_until)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.events = [GuardEvent(**event) for event in state['events']]
        self.batches = state['batches']
        self.last_good = state['last_good']
        self.last_good_entropy = state['last_good_entropy']
        self.source = state['source']
        self.entropy_average = state['entropy_average']
        self.recovered_at = state['recovered_at']
        self.pause = state.get('pause', 0)  # absent from the checkpoints of runs made before pauses existed
        self.paused_until = state.get('paused_until')
