"""SAR (Niu et al., "Towards Stable Test-Time Adaptation in Dynamic Wild World", ICLR 2023).

Sharpness-aware and reliable entropy minimisation of norm-layer affine parameters, with model recovery.
Follows mr-eggplant/SAR: ``sar.py`` (``forward_and_adapt_sar``, ``collect_params``, ``configure_model``,
``SAR.forward``/``reset``), ``sam.py`` and ``main.py`` (optimiser and learning rates).
"""
from __future__ import annotations

from typing import Any, Mapping

from mmengine.logging import print_log
from torch import Tensor, nn

from imse_seg.core.recovery import ModelRecovery, perturbed_reliable_entropy
from imse_seg.registry import ADAPTATION

from .entropy_adaptation import EntropyAdaptation
from .method import Forward, ValidRegion, clone_state, load_parameters


@ADAPTATION.register_module()
class SAR(EntropyAdaptation):
    """SAR: reliable entropy (``H < margin ln K``, eq. 2), SAM (``sam_rho``, eq. 4-5), model recovery.

    - ``parameters``: ``NormParameters`` as in ``sar.collect_params``: the affine parameters of the norm
      layers except the top of the network (ResNet ``layer4``; ViT-B blocks 9-11 and the final ``norm``),
      given as ``exclude`` patterns. The official ``configure_model`` makes BatchNorm normalise with the
      test batch's moments: ``statistics=dict(type='TestStatistics')`` on BN models.
    - ``optimizer``: the base optimiser of SAM; the official one is SGD, momentum 0.9, lr 0.001/64 x batch
      size on ViT-B (0.00025 on ResNet-50 at batch >= 32, x2/64 x batch below).
    - ``margin``: e0 = margin ln K (0.4, the official ``0.4 * math.log(1000)`` for ImageNet's K = 1000).
    - ``reset_constant`` and ``ema_momentum``: the recovery rule of :mod:`imse_seg.core.recovery`
      (0.2, 0.9). When it fires after a step, the adapted parameters and the optimiser state go back to those
      of set-up (the official ``load_model_and_optimizer`` of the copies taken at construction); the
      moving average stays, as in the official code.

    The update is :class:`EntropyAdaptation`'s SAM step on the reliable entropy; the recovery value is
    recomputed from the two forwards with the official filter (reliable at both points), whichever rule
    the objective applies to the second forward. The scored logits are those of the first forward.
    ``resets`` lists the batches (counted from 0) after which the model recovered; it and the moving
    average are part of the state.
    """

    def __init__(self, parameters: Mapping, optimizer: Mapping, margin: float = 0.4, sam_rho: float = 0.05,
                 reset_constant: float = 0.2, ema_momentum: float = 0.9) -> None:
        if sam_rho <= 0:
            raise ValueError(f'SAR updates sharpness-aware: sam_rho must be positive, got {sam_rho}')
        super().__init__(parameters, objective=dict(entropy=dict(type='EntropyTerm', margin=margin)),
                         optimizer=optimizer, sam_rho=sam_rho)
        self.margin = margin
        self.recovery = ModelRecovery(reset_constant, ema_momentum)
        self.resets: list[int] = []
        self._forwards: list[Tensor] = []

    def setup(self, model: nn.Module, forward: Forward) -> None:
        def recorded(module: nn.Module, inputs: Tensor) -> Tensor:
            logits = forward(module, inputs)
            self._forwards.append(logits.detach())
            return logits

        super().setup(model, recorded)
        self.initial = clone_state(dict(params=[p.detach() for p in self.params],
                                        optimizer=self.optimizer.state_dict()))

    def adapt(self, model: nn.Module, inputs: Tensor, valid: ValidRegion | None = None) -> Tensor:
        self._forwards.clear()
        try:
            logits = super().adapt(model, inputs, valid)
            first, second = self._forwards
        finally:
            self._forwards.clear()
        value = perturbed_reliable_entropy(first, second, self.margin, None if valid is None else valid(first))
        if self.recovery.update(value):
            self.reset()
            self.resets.append(self.batches_seen - 1)
            print_log(f'SAR model recovery after batch {self.batches_seen - 1}: loss average '
                      f'{self.recovery.ema:.4f} < {self.recovery.threshold}', logger='current')
        return logits

    def reset(self) -> None:
        """Put the adapted parameters and the optimiser back to their state at set-up."""
        initial = clone_state(self.initial)
        load_parameters(self.params, initial['params'], type(self).__name__)
        self.optimizer.load_state_dict(initial['optimizer'])

    def predict(self, model: nn.Module, inputs: Tensor) -> Tensor:
        logits = super().predict(model, inputs)
        self._forwards.clear()
        return logits

    def state_dict(self) -> dict[str, Any]:
        """:class:`EntropyAdaptation`'s state, the recovery's moving average and the reset batches."""
        return dict(super().state_dict(), recovery=self.recovery.state_dict(), resets=list(self.resets))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.recovery.load_state_dict(state['recovery'])
        self.resets = list(state['resets'])
