"""The interface every test-time adaptation method implements, for any model and task."""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping, Optional

import torch
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
    batch's update. ``predict`` scores a batch without adapting (the divergence guard's fallback).
    ``state_dict``/``load_state_dict`` carry everything the method changes as it adapts (adapted
    parameters, optimiser state, banks, teachers, its random generators), so that loading a saved state
    into a freshly set-up method continues the stream exactly; the tensors may be shared with the live ones
    (copy them to keep a snapshot). ``tasks`` names the task paths the method runs on (a method that
    needs a segmentor's test mode, as CoTTA's multi-scale views, is ``('segmentation',)``).
    """

    tasks: ClassVar[tuple[str, ...]] = ('segmentation', 'classification')

    def setup(self, model: nn.Module, forward: Forward) -> None:
        """Prepare the method on the loaded model (select parameters, build optimiser...)."""
        self.forward = forward

    def adapt(self, model: nn.Module, inputs: Tensor, valid: ValidRegion | None = None) -> Tensor:
        """Predict ``inputs`` (pre-processed) and adapt on them; return the scored logits (detached)."""
        raise NotImplementedError

    def predict(self, model: nn.Module, inputs: Tensor) -> Tensor:
        """The logits of ``inputs`` by the current model, without adapting (detached)."""
        with torch.no_grad():
            return self.forward(model, inputs)

    def adapted_parameters(self) -> list[nn.Parameter]:
        """The parameters this method updates (none by default)."""
        return []

    def start_segment(self, name: str) -> None:
        """A new stream segment begins; most methods ignore it (they are not told about shifts)."""

    def locate(self, where: Mapping[str, Any]) -> None:
        """Where in the stream the next batch comes from (the task loop's round, segment, images), for a
        method's event log (IMSE's code bank); it must not change what the method does. Ignored by default."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f'{type(self).__name__} holds no state, got keys {sorted(state)}')

    def snapshot(self) -> dict[str, Any]:
        """A copy of the state that :meth:`restore` can go back to (the divergence guard takes one per
        batch); by default a deep copy of :meth:`state_dict`."""
        return clone_state(self.state_dict())

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Go back to a :meth:`snapshot` (which stays usable for another restore)."""
        self.load_state_dict(clone_state(snapshot))


def clone_state(state: Any) -> Any:
    """A copy of a (nested) state dict whose tensors share no memory with the original."""
    if isinstance(state, Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {key: clone_state(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(clone_state(value) for value in state)
    return state


def load_parameters(params: list[nn.Parameter], saved: list[Tensor], owner: str) -> None:
    """Copy ``saved`` into ``params`` in place, after checking that count and shapes match."""
    if len(saved) != len(params):
        raise ValueError(f'{owner}: the saved state has {len(saved)} adapted parameters, this method '
                         f'adapts {len(params)}')
    for index, (param, value) in enumerate(zip(params, saved)):
        if param.shape != value.shape:
            raise ValueError(f'{owner}: adapted parameter {index} has shape {tuple(param.shape)}, the saved '
                             f'one {tuple(value.shape)}')
    with torch.no_grad():
        for param, value in zip(params, saved):
            param.copy_(value)
