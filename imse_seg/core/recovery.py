"""SAR's model recovery (Niu et al., ICLR 2023, section 4 "model recovery scheme"; official ``sar.py``).

SAR keeps a moving average of its entropy loss and, when that average collapses below a constant, puts
the model and its optimiser back to their initial state: an entropy that has fallen that low means the
model predicts one class with near certainty everywhere, the collapse its sharpness-aware update does not
always prevent. Read from ``forward_and_adapt_sar`` and ``SAR.forward`` of mr-eggplant/SAR:

- the tracked value is the loss of the *second* (perturbed) forward: the entropy at ``w + e`` over the
  samples that were reliable (``H < e0``) at ``w`` and are still reliable at ``w + e``; when there are none
  (the official mean is NaN) the average is not updated;
- the average starts at the first value and then follows ``ema <- 0.9 ema + 0.1 value``;
- after every step, the model recovers when ``ema < 0.2`` (the official code compares with the literal
  0.2, its ``reset_constant_em`` argument is unused);
- a recovery does not clear the average: ``SAR.reset`` sets it to None, but ``SAR.forward`` then assigns
  the value computed before the reset, so the next batches recover again until the average climbs back
  above the constant. This follows the official behaviour.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor

from .entropy import entropy, reliable_mask


def perturbed_reliable_entropy(first: Tensor, second: Tensor, margin: float,
                               valid: Tensor | None = None) -> float | None:
    """SAR's recovery value: the mean entropy of ``second`` over the samples (pixels) reliable in both.

    ``first`` and ``second`` are the logits of the forward at ``w`` and at ``w + e``; reliable means
    ``H < margin * ln K`` and inside ``valid``. None when no sample is reliable in both.
    """
    second_entropy = entropy(second.detach())
    kept = reliable_mask(entropy(first.detach()), first.shape[1], margin, valid) & \
        reliable_mask(second_entropy, second.shape[1], margin)
    if not bool(kept.any()):
        return None
    return float(second_entropy[kept].mean())


class ModelRecovery:
    """The moving average of SAR's loss and its reset rule (module docstring).

    ``update(value)`` takes one step's value (None: nothing reliable, no update) and returns whether the
    model must be reset now. Args: ``threshold``, SAR's reset constant e_m (0.2); ``momentum``, the weight of
    the old average (0.9).
    """

    def __init__(self, threshold: float = 0.2, momentum: float = 0.9) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f'recovery momentum must be in [0, 1), got {momentum}')
        self.threshold = threshold
        self.momentum = momentum
        self.ema: float | None = None

    def update(self, value: float | None) -> bool:
        if value is not None:
            self.ema = value if self.ema is None else self.momentum * self.ema + (1.0 - self.momentum) * value
        return self.ema is not None and self.ema < self.threshold

    def state_dict(self) -> dict[str, Any]:
        return dict(ema=self.ema)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema = state['ema']
