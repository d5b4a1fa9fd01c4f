"""The interface every test-time adaptation method implements, for any model and task."""
from __future__ import annotations

from typing import Any, Callable, Optional

from torch import Tensor, nn

Forward = Callable[[nn.Module, Tensor], Tensor]
"""Maps (model, pre-processed inputs) to the logits the objective sees (B x K [x h x w])."""
ValidRegion = Callable[[Tensor], Optional[Tensor]]
"""Maps those logits to the mask of samples/pixels that count (None: all)."""


class AdaptationMethod:
    """One online adaptation method: set up once on the loaded model, then predict-and-adapt per batch.

    The task adapter (segmentation: :class:`~imse_seg.seg.adaptation.AdaptiveSegmentor`; classification:
    the classification runner) gives ``setup`` the model and its ``forward``, and ``adapt`` the inputs
    and, where padding exists, the ``valid`` region. ``adapt`` returns the logits that are scored for the
    batch (detached); by the usual test-time protocol they come from the forward made *before* this
    batch's update. ``state_dict``/``load_state_dict`` carry what must survive an interruption.
    """

    def setup(self, model: nn.Module, forward: Forward) -> None:
        """Prepare the method on the loaded model (select parameters, build optimiser...)."""
        self.forward = forward

    def adapt(self, model: nn.Module, inputs: Tensor, valid: ValidRegion | None = None) -> Tensor:
        """Predict ``inputs`` (pre-processed) and adapt on them; return the scored logits (detached)."""
        raise NotImplementedError

    def start_segment(self, name: str) -> None:
        """A new stream segment begins; most methods ignore it (they are not told about shifts)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f'{type(self).__name__} holds no state, got keys {sorted(state)}')
