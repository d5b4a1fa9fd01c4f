"""Sharpness-aware minimisation around any torch optimiser, as IMSE uses it (methods.md 1.2).

One step: compute the loss at w and its gradient g; move to ``w + e``, ``e = rho * g / ||g||`` (the global
L2 norm over all parameters); recompute the loss there and its gradient; return to w and let the base
optimiser step with that second gradient. The loss comes from a closure, so the second forward re-runs
the whole objective. A closure that hands the objective the first forward's logits on its second call (as
:class:`~imse_seg.adaptation.EntropyAdaptation`'s does) lets a reliable-entropy loss keep, at the
perturbed point, the samples that were reliable in the first forward and still are: the official SAR/IMSE
rule (mr-eggplant/SAR ``sar.py``); SAM itself does not look at the loss.

Construction follows the SAM implementation SAR and IMSE build on: ``SAM(params, torch.optim.Adam,
rho=0.05, lr=...)`` creates the base optimiser on the same parameter groups, so ``param_groups`` (with
``rho`` beside ``lr``), schedulers and ``state_dict`` are those of the base optimiser.

``reuse_ascent=True`` (a cost lever of issue 21, not in the papers) pays one backward per step: after
the first (a full SAM step), each step calls the closure at w without gradients (the prediction a
test-time adapter reports, and the first logits a reliable-entropy loss compares with), then ascends
along the gradient its predecessor stepped with (``e = rho * g_prev / ||g_prev||``, g_prev taken at the
previous batch's perturbed point), computes the loss and gradient at ``w + e``, returns to w and steps.
The first forward must stay at w: SAM's perturbation (rho = 0.05 on the singular values) moves the
predictions far from those of w; scored at ``w + e``, IMSE+STAG fell from 40.4 to 22.3 mIoU on the
EfficientViT benchmark (docs/benchmarks.md). g_prev lives in the
base optimiser's per-parameter state (``ascent_direction``): checkpoints carry it, and clearing ``state``
makes the next step a full SAM step. A step without ascent (``step(closure, ascend=False)``) stores its
gradient at w too, so a schedule that ascends every k-th step reuses the gradient of the step before.

NaN safety: nothing moves unless both losses and both gradients are finite. A non-finite first loss or
gradient raises :class:`NonFiniteError` before any parameter changes; a non-finite second loss or
gradient restores the parameters exactly (copies of w taken before the ascent), then raises. Gradients
are cleared in both cases, and the base optimiser's state is untouched.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from .entropy import assert_finite

GRAD_NORM_EPS = 1e-12


class SAM(Optimizer):
    """SAM wrapping a base optimiser class (``base_optimizer(param_groups, **kwargs)``) with radius ``rho``.

    ``state`` and ``param_groups`` are the base optimiser's own objects, so clearing ``state`` resets e.g.
    Adam's moments, and a scheduler changing ``lr`` changes the base step.

    ``step(closure)``: ``closure()`` runs the forward pass and returns the loss *without* calling
    ``backward`` (SAM clears the gradients, back-propagates and checks finiteness itself). It is called
    twice per step, at w and at ``w + e``. ``step`` returns the first loss, i.e. the one at the unperturbed
    weights, whose forward is the prediction a test-time adapter reports.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], base_optimizer: type[Optimizer],
                 rho: float = 0.05, reuse_ascent: bool = False, **kwargs: Any) -> None:
        if rho < 0:
            raise ValueError(f'SAM rho must be non-negative, got {rho}')
        self.reuse_ascent = reuse_ascent
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self.defaults.update(self.base_optimizer.defaults)

    def _params_with_grad(self) -> list[tuple[Tensor, float]]:
        return [(p, group['rho']) for group in self.param_groups for p in group['params']
                if p.grad is not None]

    def _backward(self, closure: Callable[[], Tensor], which: str) -> Tensor:
        self.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = closure()
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise TypeError(f'SAM closure must return a scalar loss tensor, got {loss!r}')
        assert_finite(loss.detach(), f'{which} loss')
        if not loss.requires_grad:
            raise ValueError(f'the {which} loss does not depend on any parameter that requires grad')
        loss.backward()
        grads = [p.grad for p, _ in self._params_with_grad()]
        if grads:
            assert_finite(torch.stack([g.detach().norm() for g in grads]), f'{which} gradient norm')
        return loss.detach()

    @torch.no_grad()
    def _ascend(self, directions: list[tuple[Tensor, float, Tensor]]) -> dict[Tensor, Tensor]:
        """Move every parameter p of ``(p, rho, g)`` to ``p + rho * g / ||g||`` (the norm over all g);
        return copies of the old values."""
        if not directions:
            return {}
        norm = torch.stack([g.norm() for _, _, g in directions]).norm()
        saved = {}
        for p, rho, g in directions:
            saved[p] = p.detach().clone()
            p.add_(g * (rho / (norm + GRAD_NORM_EPS)))
        return saved

    def _stored_directions(self) -> list[tuple[Tensor, float, Tensor]] | None:
        """``(p, rho, g_prev)`` for every parameter with a stored direction (those the previous step had a
        gradient for, as SAM perturbs only those), or None where there is none."""
        directions = [(p, group['rho'], self.state[p]['ascent_direction'])
                      for group in self.param_groups for p in group['params']
                      if 'ascent_direction' in self.state.get(p, {})]
        return directions or None

    def _base_step(self) -> None:
        """The base optimiser's step on the current gradients, then (``reuse_ascent``) keep them as the next
        step's ascent direction. Stored after the step: Adam initialises a parameter's state when it finds
        it empty."""
        self.base_optimizer.step()
        if self.reuse_ascent:
            for p, _ in self._params_with_grad():
                self.state[p]['ascent_direction'] = p.grad.detach().clone()
        self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def _restore(self, saved: dict[Tensor, Tensor]) -> None:
        for p, old in saved.items():
            p.copy_(old)

    def step(self, closure: Callable[[], Tensor] | None = None, ascend: bool = True) -> Tensor:
        """One SAM step (ascent, second forward-backward, base step); returns the first loss (detached).

        ``ascend=False``: the base optimiser's step on the gradient at w (one forward-backward), for a
        schedule that ascends only every few steps (``EntropyAdaptation(sam_interval=k)``). With
        ``reuse_ascent`` and a stored direction: a forward without gradients at w, then one
        forward-backward at the point ascended along the stored direction."""
        if closure is None:
            raise ValueError('SAM.step needs a closure that recomputes the loss')
        stored = self._stored_directions() if self.reuse_ascent and ascend else None
        if stored is not None:
            with torch.no_grad():
                first = closure()
            assert_finite(first.detach(), 'first loss')
            self._perturbed_step(closure, self._ascend(stored), 'second (perturbed)')
            return first.detach()
        try:
            first = self._backward(closure, 'first')
        except BaseException:
            self.zero_grad(set_to_none=True)
            raise
        if not ascend:
            self._base_step()
            return first
        ascended = self._ascend([(p, rho, p.grad) for p, rho in self._params_with_grad()])
        self._perturbed_step(closure, ascended, 'second (perturbed)')
        return first

    def _perturbed_step(self, closure: Callable[[], Tensor], saved: dict[Tensor, Tensor], which: str) -> None:
        """Loss and gradient at the ascended point, back to the ``saved`` w, then the base step."""
        try:
            self._backward(closure, which)
        except BaseException:
            self._restore(saved)
            self.zero_grad(set_to_none=True)
            raise
        self._restore(saved)
        self._base_step()

    def state_dict(self) -> dict[str, Any]:
        """The base optimiser's state dict; its param groups carry ``rho``."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load into the base optimiser and re-share its (new) param groups with SAM."""
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
