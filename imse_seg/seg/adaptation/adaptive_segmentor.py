"""The adaptive model: any mmseg segmentor, predicted on and adapted inside ``test_step``."""
from __future__ import annotations

from mmengine.model import BaseTTAModel
from mmseg.registry import MODELS
from mmseg.utils import SampleList

from imse_seg.adaptation.method import AdaptationMethod
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
    ``Source`` method the predictions are mmseg's own.

    Args:
        module: The segmentor (config or module), e.g. an ``EncoderDecoder``.
        data_preprocessor: Optional override of the segmentor's data pre-processor.
    """

    def __init__(self, module: dict, data_preprocessor: dict | None = None) -> None:
        super().__init__(module, data_preprocessor)
        self.method: AdaptationMethod | None = None

    def set_method(self, method: AdaptationMethod) -> None:
        """Set ``method`` up on the (loaded) segmentor and use it from the next batch on."""
        if self.method is not None:
            raise RuntimeError(f'AdaptiveSegmentor already runs {type(self.method).__name__}')
        method.setup(self.module, segmentor_logits)
        self.method = method

    def start_segment(self, name: str) -> None:
        """Tell the method that a new stream segment (e.g. a condition) begins."""
        self._require_method().start_segment(name)

    def test_step(self, data: dict) -> SampleList:
        method = self._require_method()
        data = self.module.data_preprocessor(data, False)
        data_samples = data['data_samples']
        metas = [sample.metainfo for sample in data_samples]
        inputs = data['inputs']
        logits = method.adapt(self.module, inputs, lambda out: image_region(out, inputs.shape[-2:], metas))
        seg_logits = self.module.decode_head.predict_by_feat(logits, metas)
        return self.module.postprocess_result(seg_logits, data_samples)

    def merge_preds(self, data_samples_list: list) -> SampleList:
        raise NotImplementedError('AdaptiveSegmentor adapts on one view per image; it does not merge '
                                  'test-time augmented views')

    def _require_method(self) -> AdaptationMethod:
        if self.method is None:
            raise RuntimeError("AdaptiveSegmentor has no adaptation method: add dict(type='AdaptationSetupHook', "
                               'method=...) to custom_hooks, or call set_method() after loading the '
                               'checkpoint')
        return self.method
