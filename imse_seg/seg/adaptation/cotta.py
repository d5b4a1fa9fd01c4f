"""CoTTA (Wang et al., CVPR 2022) on an mmseg segmentor, as its segmentation code runs it."""
from __future__ import annotations

from functools import partial
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imse_seg.core.distributed import average_gradients_across_ranks
from imse_seg.core.entropy import masked_mean
from imse_seg.core.mean_teacher import confident_or_averaged, multi_view_probabilities
from imse_seg.core.precision import same_precision
from imse_seg.core.update import closure_step
from imse_seg.registry import ADAPTATION

from imse_seg.adaptation.mean_teacher import MeanTeacherMethod
from imse_seg.adaptation.method import Forward, ValidRegion
from .segmentation import pad_to_divisor

COTTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def inference_logits(segmentor: nn.Module, images: Tensor) -> Tensor:
    """Logits (B x K x H x W, at the images' size) by the segmentor's own test mode.

    mmseg's ``EncoderDecoder.inference``: sliding windows for ``test_cfg=dict(mode='slide', crop_size=...,
    stride=...)``, one whole-image forward for ``mode='whole'``, the decode head's logits resized
    (bilinear) to the image either way. The image metadata it reads is the view's own size: the views are
    tensors made here, not pipeline outputs; like the batch, each is zero-padded to the pre-processor's
    ``size_divisor`` (:func:`~imse_seg.seg.adaptation.segmentation.pad_to_divisor`), and the logits are
    cropped back.
    """
    height, width = images.shape[-2:]
    padded = pad_to_divisor(segmentor, images)
    size = tuple(padded.shape[-2:])
    metas = [dict(ori_shape=size, img_shape=size, pad_shape=size) for _ in range(images.shape[0])]
    return segmentor.inference(padded, metas)[..., :height, :width]


@ADAPTATION.register_module()
class CoTTA(MeanTeacherMethod):
    """Mean teacher with augmentation-averaged pseudo-labels and stochastic restore.

    Follows CoTTA's official segmentation code (qinenergy/cotta, ``acdc-submission/mmseg/apis/test.py``,
    ``single_gpu_cotta``, with its mmseg 0.x ``EncoderDecoder.aug_test``). Per batch, with the student,
    teacher and frozen source ("anchor") copies all in eval mode (dropout, drop-path and BatchNorm in
    inference behaviour, so the anchor never moves and the teacher's predictions are deterministic):

    - the anchor predicts the plain view; the teacher predicts ``scales`` x (no flip, flip) views (14 by
      default); every prediction uses the segmentor's ``test_cfg`` (slide or whole,
      :func:`inference_logits`), at the input's resolution;
    - where the anchor's max probability exceeds ``confidence`` the teacher's plain-view probabilities are
      kept, elsewhere the view average (:func:`~imse_seg.core.mean_teacher.confident_or_averaged`). That map
      is the scored prediction and the student's target;
    - the student (all parameters) takes one step on the cross-entropy to it: by default, as the official
      code, the hard cross-entropy to its arg-max, with the student's head logits upsampled (bilinear) to
      the input's size (mmseg's decode-head loss resizes the logits to the label map); with
      ``soft_labels=True`` the soft cross-entropy to the target probabilities, at the same resolution (the
      toolkit's earlier loss, which it computed at the head's resolution);
    - the teacher follows by EMA (``ema``) and each student weight element returns to its source value with
      probability ``restore_probability``.

    ``reset_each_segment`` re-creates the optimiser state at segment starts, as the published code does at
    condition changes (teacher and anchor persist). ``statistics``: the BatchNorm moments of student,
    teacher and anchor alike (:mod:`imse_seg.adaptation.norm_statistics`; None: the source's). Remaining
    differences from the official code: its views are resized from the original image by the data
    pipeline and their predictions averaged at the original image's size; here the views are the
    pre-processed input resized (bilinear) and everything stays at the input's size (the metric's
    upsampling to the original size follows). The teacher's and the anchor's predictions run in the
    precision of the student's forward (mixed under ``--amp``, :func:`~imse_seg.core.precision.same_precision`).
    """

    tasks = ('segmentation',)

    def __init__(self, optimizer: Mapping, scales: Sequence[float] = COTTA_SCALES, flip: bool = True,
                 confidence: float = 0.69, ema: float = 0.999, restore_probability: float = 0.01,
                 soft_labels: bool = False, reset_each_segment: bool = False, seed: int = 0,
                 statistics: Mapping | None = None) -> None:
        self.optimizer_cfg = dict(optimizer)
        self.statistics = None if statistics is None else dict(statistics)
        self.scales = tuple(scales)
        self.flip = flip
        self.confidence = confidence
        self.ema = ema
        self.restore_probability = restore_probability
        self.soft_labels = soft_labels
        self.reset_each_segment = reset_each_segment
        self.generator = torch.Generator().manual_seed(seed)

    def setup(self, segmentor: nn.Module, forward: Forward) -> None:
        super().setup(segmentor, forward)
        self.view_logits = same_precision(forward, inference_logits)
        self.setup_mean_teacher(segmentor)
        average_gradients_across_ranks(self.params)

    def start_segment(self, name: str) -> None:
        if self.reset_each_segment:
            self.optimizer.state.clear()

    def adapt(self, segmentor: nn.Module, inputs: Tensor, valid: ValidRegion | None = None) -> Tensor:
        for model in (segmentor, self.teacher, self.anchor):
            model.eval()
        with torch.no_grad():
            anchor = self.view_logits(self.anchor, inputs).softmax(dim=1)
            averaged, plain = multi_view_probabilities(partial(self.view_logits, self.teacher), inputs,
                                                       self.scales, self.flip, segmentor.align_corners)
            target = confident_or_averaged(anchor, plain, averaged, self.confidence)
        labels = None if self.soft_labels else target.argmax(dim=1)

        def closure() -> Tensor:
            logits = F.interpolate(self.forward(segmentor, inputs), size=target.shape[-2:], mode='bilinear',
                                   align_corners=segmentor.align_corners)
            if labels is None:
                per_pixel = -(target * logits.log_softmax(dim=1)).sum(dim=1)
            else:
                per_pixel = F.cross_entropy(logits, labels, reduction='none')
            return masked_mean(per_pixel, None if valid is None else valid(logits))

        with torch.enable_grad():
            closure_step(self.optimizer, closure)
        self.follow_student(segmentor)
        return target.clamp_min(1e-12).log()
