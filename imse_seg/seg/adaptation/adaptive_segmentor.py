"""The adaptive model: any mmseg segmentor, predicted on and adapted inside ``test_step``."""
from __future__ import annotations

from typing import Any

import torch
from mmengine.model import BaseTTAModel
from mmseg.registry import MODELS
from mmseg.utils import SampleList

from imse_seg.adaptation.guard import DivergenceGuard
from imse_seg.adaptation.method import AdaptationMethod
from imse_seg.core.precision import MixedPrecisionForward, check_amp_device
from .segmentation import image_region, segmentor_logits


@MODELS.register_module()
class AdaptiveSegmentor(BaseTTAModel):
    """Wraps a segmentor as ``self.module`` and runs a test-time adaptation method on every test batch.

    Being a ``BaseTTAModel``, it receives ``load_from`` checkpoints with the plain segmentor's keys
    (mmengine unwraps it as it does for mmseg's ``--tta``). The method is attached after the checkpoint is
    loaded, by :meth:`set_method` (``AdaptationSetupHook`` does it in ``before_test``): spectral surgery,
    anchors and frozen copies must see the loaded weights. ``test_step`` pre-processes the batch,
    lets the method predict-and-adapt (gradients enabled inside, whatever loop calls it), and
    post-processes the returned logits exactly as mmseg's whole-image inference does, so with the
    ``Source`` method the predictions are mmseg's own. With a :class:`DivergenceGuard` the method adapts
    under it. With ``amp`` (``test_cfg.amp``, ``--amp``) the method's forwards run in mixed precision
    (:class:`~imse_seg.core.precision.MixedPrecisionForward`: bfloat16 autocast, float32 logits), and
    everything it computes from them in float32. A sample whose scored logits are not finite (an input that
    makes the model produce NaN) is marked ``fault='non-finite prediction'`` in its metainfo, which the
    stream metric counts and leaves out.

    Args:
        module: The segmentor (config or module), e.g. an ``EncoderDecoder``.
        data_preprocessor: Optional override of the segmentor's data pre-processor.
    """

    def __init__(self, module: dict, data_preprocessor: dict | None = None) -> None:
        super().__init__(module, data_preprocessor)
        self.method: AdaptationMethod | None = None
        self.guard: DivergenceGuard | None = None

    def set_method(self, method: AdaptationMethod, guard: DivergenceGuard | None = None, amp: bool = False) -> None:
        """Set ``method`` up on the (loaded) segmentor and use it, under ``guard`` if given, from now on; with
        ``amp`` its forwards run in mixed precision."""
        if self.method is not None:
            raise RuntimeError(f'AdaptiveSegmentor already runs {type(self.method).__name__}')
        forward = segmentor_logits
        if amp:
            check_amp_device(next(self.module.parameters()).device)
            forward = MixedPrecisionForward(segmentor_logits)
        method.setup(self.module, forward)
        self.method = method
        self.guard = guard

    def adaptation_state(self) -> dict[str, Any]:
        """What a resumed stream needs beyond the segmentor's weights: the method's and the guard's state."""
        method = self._require_method()
        return dict(method=method.state_dict(), guard=None if self.guard is None else self.guard.state_dict())

    def load_adaptation_state(self, state: dict[str, Any]) -> None:
        """Load what :meth:`adaptation_state` returned (into the same kind of method and guard)."""
        self._require_method().load_state_dict(state['method'])
        if (state['guard'] is None) != (self.guard is None):
            raise ValueError('the saved adaptation state was written with'
                             f'{"out" if state["guard"] is None else ""} a divergence guard, this model runs '
                             f'with{"out" if self.guard is None else ""} one')
        if self.guard is not None:
            self.guard.load_state_dict(state['guard'])

    def start_segment(self, name: str) -> None:
        """Tell the method that a new stream segment (e.g. a condition) begins."""
        self._require_method().start_segment(name)

    def locate(self, where: dict[str, Any]) -> None:
        """Tell the method where in the stream the next batch comes from (for its event log)."""
        self._require_method().locate(where)

    def test_step(self, data: dict) -> SampleList:
        method = self._require_method()
        data = self.module.data_preprocessor(data, False)
        data_samples = data['data_samples']
        metas = [sample.metainfo for sample in data_samples]
        inputs = data['inputs']

        def valid(logits: torch.Tensor) -> torch.Tensor | None:
            return image_region(logits, inputs.shape[-2:], metas)

        if self.guard is None:
            logits = method.adapt(self.module, inputs, valid)
        else:
            logits = self.guard.adapt(method, self.module, inputs, valid)
        finite = torch.isfinite(logits).flatten(1).all(dim=1).tolist()
        seg_logits = self.module.decode_head.predict_by_feat(logits, metas)
        results = self.module.postprocess_result(seg_logits, data_samples)
        for sample, ok in zip(results, finite):
            if not ok:
                sample.set_metainfo(dict(fault='non-finite prediction'))
        return results

    def merge_preds(self, data_samples_list: list) -> SampleList:
        raise NotImplementedError('AdaptiveSegmentor adapts on one view per image; it does not merge '
                                  'test-time augmented views')

    def _require_method(self) -> AdaptationMethod:
        if self.method is None:
            raise RuntimeError("AdaptiveSegmentor has no adaptation method: add dict(type='AdaptationSetupHook', "
                               'method=...) to custom_hooks, or call set_method() after loading the '
                               'checkpoint')
        return self.method
