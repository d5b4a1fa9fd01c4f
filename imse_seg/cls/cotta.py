"""CoTTA (Wang et al., CVPR 2022) on a classifier, as its CIFAR code runs it (qinenergy/cotta, ``cifar/``).

The classification counterpart of :class:`imse_seg.seg.adaptation.cotta.CoTTA`; the mean teacher, the
stochastic restore and the confidence rule are the shared :mod:`imse_seg.core.mean_teacher` pieces. What
differs from the segmentation code is what the CIFAR code does differently: image-level views (colour
jitter, affine jitter, blur, flip, noise; :class:`CoTTAViews`) instead of multi-scale flips, the decision
between the plain and the averaged teacher prediction taken per batch (on the anchor's mean confidence,
threshold 0.92 for CIFAR-10), a soft cross-entropy to the teacher, and BatchNorm with the test batch's
moments in all three models.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor, nn

from imse_seg.adaptation.mean_teacher import MeanTeacherMethod
from imse_seg.adaptation.method import Forward, ValidRegion
from imse_seg.core.update import closure_step
from imse_seg.registry import ADAPTATION


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


class CoTTAViews:
    """One random view of a batch of 0-1 images per call, CoTTA's ``get_tta_transforms`` (not ``soft``).

    One draw for the whole batch, as the official transforms applied to a batch tensor: brightness, contrast,
    saturation, hue and gamma jitter in random order (its ``ColorJitterPro``; ranges [0.6, 1.4], [0.7, 1.3],
    [0.5, 1.5], [-0.06, 0.06], [0.7, 1.3]), edge padding by half the image, an affine jitter (rotation
    +-15 degrees, translation 1/16, scale 0.9-1.1, bilinear), a 5 x 5 Gaussian blur of sigma in
    [0.001, 0.5], the centre crop back, a horizontal flip with probability 0.5, and Gaussian noise of std
    0.005 (the official code does not clip after it). torchvision's functional transforms do the work.
    """

    def __init__(self, brightness: Sequence[float] = (0.6, 1.4), contrast: Sequence[float] = (0.7, 1.3),
                 saturation: Sequence[float] = (0.5, 1.5), hue: Sequence[float] = (-0.06, 0.06),
                 gamma: Sequence[float] = (0.7, 1.3), degrees: float = 15.0, translate: float = 1 / 16,
                 scale: Sequence[float] = (0.9, 1.1), blur_sigma: Sequence[float] = (0.001, 0.5),
                 flip_probability: float = 0.5, noise_std: float = 0.005) -> None:
        self.jitter = dict(brightness=tuple(brightness), contrast=tuple(contrast), saturation=tuple(saturation),
                           hue=tuple(hue), gamma=tuple(gamma))
        self.degrees, self.translate, self.scale = degrees, translate, tuple(scale)
        self.blur_sigma, self.flip_probability, self.noise_std = tuple(blur_sigma), flip_probability, noise_std

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        views = images.clamp(0.0, 1.0)
        for index in torch.randperm(len(self.jitter), generator=generator).tolist():
            name = list(self.jitter)[index]
            factor = _uniform(*self.jitter[name], generator)
            views = self._colour(views, name, factor)
        height, width = views.shape[-2:]
        views = TF.pad(views, [width // 2, height // 2], padding_mode='edge')
        angle = _uniform(-self.degrees, self.degrees, generator)
        shift = [round(_uniform(-self.translate, self.translate, generator) * size)
                 for size in views.shape[-1:-3:-1]]
        views = TF.affine(views, angle=angle, translate=shift, scale=_uniform(*self.scale, generator), shear=[0.0],
                          interpolation=TF.InterpolationMode.BILINEAR)
        views = TF.gaussian_blur(views, kernel_size=[5, 5], sigma=_uniform(*self.blur_sigma, generator))
        views = TF.center_crop(views, [height, width])
        if torch.rand((), generator=generator).item() < self.flip_probability:
            views = views.flip(-1)
        noise = torch.randn(views.shape, generator=generator).to(views)
        return views + self.noise_std * noise

    @staticmethod
    def _colour(images: Tensor, name: str, factor: float) -> Tensor:
        if name == 'gamma':
            return TF.adjust_gamma(images.clamp_min(0.0), factor)
        adjust = dict(brightness=TF.adjust_brightness, contrast=TF.adjust_contrast,
                      saturation=TF.adjust_saturation, hue=TF.adjust_hue)[name]
        return adjust(images, factor)


@ADAPTATION.register_module()
class ClassificationCoTTA(MeanTeacherMethod):
    """Mean teacher with augmentation-averaged pseudo-labels and stochastic restore, on a classifier.

    Per batch (qinenergy/cotta ``cifar/cotta.py``, ``forward_and_adapt``; CIFAR-10 config: Adam lr 1e-3,
    batch 200, threshold 0.92, EMA 0.999, restore 0.01, 32 views):

    - the frozen source copy ("anchor") predicts the batch; when the mean of its max probabilities is
      below ``confidence`` the teacher's prediction is the average of its logits over ``num_views`` random
      views (:class:`CoTTAViews`, made on the 0-1 images, i.e. the inputs un-normalised with ``mean`` and
      ``std``), else its prediction of the plain batch. That prediction is what is scored;
    - the student (every parameter, :class:`~imse_seg.adaptation.parameters.AllParameters`) takes one step
      on the soft cross-entropy ``-sum_k softmax(teacher)_k log softmax(student)_k``, averaged over the batch;
    - the teacher follows by EMA and each student weight element returns to its source value with
      probability ``restore_probability`` (:mod:`imse_seg.core.mean_teacher`).

    ``statistics``: the BatchNorm moments of the three models (the official code: the test batch's, i.e.
    ``dict(type='TestStatistics')``). Difference from the official code: it predicts all views on every
    batch and discards them when the anchor is confident; here they are predicted only when used, which
    changes nothing but the time.
    """

    tasks = ('classification',)

    def __init__(self, optimizer: Mapping, num_views: int = 32, confidence: float = 0.92, ema: float = 0.999,
                 restore_probability: float = 0.01, views: Mapping | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 statistics: Mapping | None = None, seed: int = 0) -> None:
        if num_views < 1:
            raise ValueError(f'CoTTA needs num_views >= 1, got {num_views}')
        self.optimizer_cfg = dict(optimizer)
        self.num_views, self.confidence, self.ema = num_views, confidence, ema
        self.restore_probability = restore_probability
        self.views = CoTTAViews(**dict(views or {}))
        self.mean, self.std = mean, std
        self.statistics = None if statistics is None else dict(statistics)
        self.generator = torch.Generator().manual_seed(seed)

    def setup(self, model: nn.Module, forward: Forward) -> None:
        super().setup(model, forward)
        data_cfg = getattr(model, 'pretrained_cfg', {})
        mean = self.mean if self.mean is not None else data_cfg.get('mean')
        std = self.std if self.std is not None else data_cfg.get('std')
        if mean is None or std is None:
            raise ValueError('ClassificationCoTTA makes its views on 0-1 images: give mean and std of the input '
                             "normalisation (the model has no pretrained_cfg to read them from)")
        self.input_mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.input_std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.setup_mean_teacher(model)

    def teacher_logits(self, inputs: Tensor) -> Tensor:
        """The teacher's prediction: the plain batch's logits, or their average over the random views when
        the anchor's mean confidence is below the threshold (no gradient)."""
        with torch.no_grad():
            confidence = self.forward(self.anchor, inputs).softmax(dim=1).amax(dim=1).mean().item()
            if confidence >= self.confidence:
                return self.forward(self.teacher, inputs)
            mean, std = self.input_mean.to(inputs), self.input_std.to(inputs)
            images = inputs * std + mean
            total = torch.zeros(())
            for _ in range(self.num_views):
                total = total + self.forward(self.teacher, (self.views(images, self.generator) - mean) / std)
            return total / self.num_views

    def adapt(self, model: nn.Module, inputs: Tensor, valid: ValidRegion | None = None) -> Tensor:
        for copy_ in (model, self.teacher, self.anchor):
            copy_.eval()
        target = self.teacher_logits(inputs).softmax(dim=1)

        def closure() -> Tensor:
            return -(target * self.forward(model, inputs).log_softmax(dim=1)).sum(dim=1).mean()

        with torch.enable_grad():
            closure_step(self.optimizer, closure)
        self.follow_student(model)
        return target.clamp_min(1e-12).log()
