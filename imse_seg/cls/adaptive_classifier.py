"""The adaptive classifier: a timm model predicted on and adapted by any :class:`AdaptationMethod`."""
from __future__ import annotations

from torch import Tensor, nn

from imse_seg.adaptation.method import AdaptationMethod


def classifier_logits(model: nn.Module, inputs: Tensor) -> Tensor:
    """The B x K logits a timm classifier gives for pre-processed images: its plain forward."""
    return model(inputs)


class AdaptiveClassifier(nn.Module):
    """Wraps a loaded classifier and runs ``method`` on every batch (the counterpart of the segmentation
    path's ``AdaptiveSegmentor``).

    The method is set up at construction, so spectral surgery, STAG anchors (from ``head``) and the code
    bank's frozen copy (of ``patch_embed``) see the loaded weights. Calling the wrapper predicts and adapts
    one batch and returns the scored logits, those of the forward before the batch's update.
    """

    def __init__(self, model: nn.Module, method: AdaptationMethod) -> None:
        super().__init__()
        self.model = model
        method.setup(model, classifier_logits)
        self.method = method

    def start_segment(self, name: str) -> None:
        """Tell the method that a new stream block (e.g. a corruption) begins."""
        self.method.start_segment(name)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.method.adapt(self.model, inputs)
