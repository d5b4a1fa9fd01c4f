"""CoTTA (issues 17 and 23): its parts against hand-computed values, its loss and views as the official
segmentation code (qinenergy/cotta, acdc-submission) has them, and its copies' modes through the Runner."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from torch import nn

from acdc_fixture import TINY_SEGMENTOR, write_acdc_tree, write_config, write_tiny_checkpoint
from imse_seg.core.mean_teacher import (confident_or_averaged, ema_update, multi_view_probabilities,
                                        stochastic_restore)
from imse_seg.seg.adaptation import CoTTA, segmentor_logits


def tiny_segmentor(**test_cfg) -> nn.Module:
    from mmengine.config import ConfigDict
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    cfg = dict(TINY_SEGMENTOR, test_cfg=test_cfg or TINY_SEGMENTOR['test_cfg'])
    cfg.pop('data_preprocessor')
    return MODELS.build(ConfigDict(cfg))


def images(height: int = 64, width: int = 96, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


# --- the mean teacher's pieces (imse_seg.core.mean_teacher) -------------------------------------------

class Pair(nn.Module):
    def __init__(self, a: list[float], b: list[float]) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.b = nn.Parameter(torch.tensor(b))
        self.register_buffer('count', torch.tensor([5.0]))


def test_ema_update_moves_the_teacher_a_tenth_of_the_way_at_momentum_0_9() -> None:
    teacher, student = Pair([1.0, 2.0], [-1.0]), Pair([3.0, 4.0], [1.0])
    student.count.fill_(9.0)
    ema_update(teacher, student, momentum=0.9)
    # t <- 0.9 t + 0.1 s: 0.9 * 1 + 0.1 * 3 = 1.2, 0.9 * 2 + 0.1 * 4 = 2.2, -0.9 + 0.1 = -0.8
    torch.testing.assert_close(teacher.a.detach(), torch.tensor([1.2, 2.2]))
    torch.testing.assert_close(teacher.b.detach(), torch.tensor([-0.8]))
    assert teacher.count.item() == 5.0  # buffers are not averaged
    torch.testing.assert_close(student.a.detach(), torch.tensor([3.0, 4.0]))


def test_stochastic_restore_resets_each_element_to_its_source_value_at_the_given_rate() -> None:
    n, probability = 200_000, 0.01
    model = nn.Linear(n // 100, 100)
    frozen = nn.Parameter(torch.ones(3), requires_grad=False)
    model.register_parameter('frozen', frozen)
    source = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(1.0)
    stochastic_restore(model, source, probability, torch.Generator().manual_seed(7))
    weight = model.weight.detach()
    restored = weight == 0.0
    assert bool((restored | (weight == 1.0)).all())  # an element is either the source's or untouched
    rate = restored.float().mean().item()
    sigma = math.sqrt(probability * (1 - probability) / n)
    assert abs(rate - probability) < 5 * sigma, rate
    # the element-wise draws are those of the generator, in parameter order (weight, then bias)
    draws = torch.rand(weight.shape, generator=torch.Generator().manual_seed(7))
    assert torch.equal(restored, draws < probability)
    assert torch.equal(frozen, torch.ones(3))  # only trainable parameters are restored


def ramp(height: int, width: int) -> torch.Tensor:
    """A position-dependent offset (1 x 2 x H x W), so a prediction is not flip-equivariant."""
    columns = torch.arange(width, dtype=torch.float64)
    return torch.stack([columns.expand(height, width), -columns.expand(height, width)])[None]


def test_flipped_views_are_flipped_back() -> None:
    """predict(v) = v + r with a column ramp r: the flipped view gives flip(x) + r, flipped back x + flip(r);
    the mean over (no flip, flip) is (softmax(x + r) + softmax(x + flip(r))) / 2."""
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    r = ramp(3, 4)
    calls = []

    def predict(view: torch.Tensor) -> torch.Tensor:
        calls.append(view.shape)
        return view + r

    averaged, plain = multi_view_probabilities(predict, x, scales=(1.0,), flip=True)
    torch.testing.assert_close(plain, (x + r).softmax(dim=1))
    torch.testing.assert_close(averaged, ((x + r).softmax(dim=1) + (x + r.flip(-1)).softmax(dim=1)) / 2)
    assert len(calls) == 2


def test_scaled_views_are_resized_back_and_flip_false_predicts_each_scale_once() -> None:
    """A 2 x 2 image at scale 0.5 is one pixel, the mean of the four (bilinear, exact halving); resized back
    it is that mean everywhere. Two classes: p_0 = sigmoid(z_0 - z_1)."""
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]], [[0.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    calls = []

    def predict(view: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(view.shape[-2:]))
        return view

    averaged, plain = multi_view_probabilities(predict, x, scales=(0.5, 1.0), flip=False)
    assert calls == [(2, 2), (1, 1)]  # the plain view, then scale 0.5; no flipped view
    p0 = (torch.sigmoid(x[0, 0]) + torch.sigmoid(torch.tensor(1.5, dtype=torch.float64))) / 2
    torch.testing.assert_close(averaged[0], torch.stack([p0, 1 - p0]))
    torch.testing.assert_close(plain[0, 0], torch.sigmoid(x[0, 0]))
    calls.clear()
    multi_view_probabilities(predict, x, scales=(0.5, 1.0), flip=True)
    assert calls == [(2, 2), (1, 1), (1, 1), (2, 2)]


def test_scales_must_include_the_reference_view() -> None:
    with pytest.raises(ValueError, match=r'the scales \[0\.5, 2\.0\] must include 1\.0'):
        multi_view_probabilities(lambda v: v, torch.zeros(1, 2, 4, 4), scales=(0.5, 2.0))


def test_confident_pixels_keep_the_plain_view_and_the_others_the_average() -> None:
    """Anchor max probabilities 0.9, 0.69 (not above the threshold) and 0.5 at three pixels."""
    anchor = torch.tensor([[[[0.9, 0.69, 0.5]], [[0.1, 0.31, 0.5]]]])
    plain = torch.tensor([[[[1.0, 1.0, 1.0]], [[0.0, 0.0, 0.0]]]])
    averaged = torch.tensor([[[[0.2, 0.2, 0.2]], [[0.8, 0.8, 0.8]]]])
    selected = confident_or_averaged(anchor, plain, averaged, threshold=0.69)
    expected = torch.tensor([[[[1.0, 0.2, 0.2]], [[0.0, 0.8, 0.8]]]])
    assert torch.equal(selected, expected)


# --- the method on a tiny SegFormer ----------------------------------------------------------------

def test_default_loss_is_hard_cross_entropy_at_input_resolution_over_valid_pixels() -> None:
    """Issue 17 fix 2 (official: mmseg's decode-head loss upsamples the student's logits to the pseudo-label,
    the arg-max of the selected map). With SGD at lr 1 and no restore, the update is minus the gradient of
    that loss; the valid region (here the left 80 columns of 96) bounds the mean."""
    model = tiny_segmentor()
    source = copy.deepcopy(model).eval()
    x = images()
    valid_mask = torch.zeros(1, 64, 96, dtype=torch.bool)
    valid_mask[..., :80] = True

    def valid(logits: torch.Tensor) -> torch.Tensor:
        assert logits.shape[-2:] == valid_mask.shape[-2:], 'the loss is taken at the input resolution'
        return valid_mask

    method = CoTTA(optimizer=dict(type='SGD', lr=1.0), scales=(0.5, 1.0), restore_probability=0.0)
    method.setup(model, segmentor_logits)
    scored = method.adapt(model, x, valid)
    assert scored.shape[-2:] == x.shape[-2:]

    logits = F.interpolate(segmentor_logits(source, x), size=(64, 96), mode='bilinear', align_corners=False)
    labels = scored.argmax(dim=1)
    log_p = logits.log_softmax(dim=1).gather(1, labels[:, None])[:, 0]
    loss = -log_p[valid_mask].mean()
    params = dict(source.named_parameters())
    names = [name for name, p in params.items() if p.requires_grad]
    grads = torch.autograd.grad(loss, [params[name] for name in names], allow_unused=True)
    adapted = dict(model.named_parameters())
    moved = 0
    for name, grad in zip(names, grads):
        expected = params[name].detach() - (0 if grad is None else grad)
        torch.testing.assert_close(adapted[name].detach(), expected, rtol=1e-4, atol=1e-6, msg=name)
        moved += grad is not None and bool(grad.abs().max() > 0)
    assert moved > 10


def test_soft_labels_option_is_the_soft_cross_entropy_to_the_target() -> None:
    model = tiny_segmentor()
    source = copy.deepcopy(model).eval()
    x = images()
    method = CoTTA(optimizer=dict(type='SGD', lr=1.0), scales=(1.0,), flip=False, restore_probability=0.0,
                   soft_labels=True)
    method.setup(model, segmentor_logits)
    target = method.adapt(model, x).exp()
    logits = F.interpolate(segmentor_logits(source, x), size=(64, 96), mode='bilinear', align_corners=False)
    loss = -(target * logits.log_softmax(dim=1)).sum(dim=1).mean()
    weight = source.decode_head.conv_seg.weight
    grad, = torch.autograd.grad(loss, weight)
    torch.testing.assert_close(model.decode_head.conv_seg.weight.detach(), weight.detach() - grad,
                               rtol=1e-4, atol=1e-6)


def slide_probabilities(model: nn.Module, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """mmseg's own sliding-window inference of ``x``, softmaxed on the ``size`` grid."""
    shape = tuple(x.shape[-2:])
    logits = model.slide_inference(x, [dict(img_shape=shape, ori_shape=shape, pad_shape=shape)])
    if logits.shape[-2:] != size:
        logits = F.interpolate(logits, size=size, mode='bilinear', align_corners=False)
    return logits.softmax(dim=1)


def test_teacher_views_follow_the_segmentors_slide_test_mode() -> None:
    """Issue 17 fix 3: with ``test_cfg=dict(mode='slide')`` every view is inferred in 32 x 32 windows at
    stride 24 (the 48 x 64 view: 2 x 3 windows; the 72 x 96 view: 3 x 4), as mmseg's test does, and the
    averaged map (the anchor is never above confidence 1) is the mean of the four flipped-back views."""
    model = tiny_segmentor(mode='slide', crop_size=(32, 32), stride=(24, 24)).eval()
    x = images(48, 64)
    reference = copy.deepcopy(model)
    method = CoTTA(optimizer=dict(type='SGD', lr=0.0), scales=(1.0, 1.5), confidence=1.0)
    method.setup(model, segmentor_logits)
    scored = method.adapt(model, x)
    with torch.no_grad():
        size = (48, 64)
        large = F.interpolate(x, size=(72, 96), mode='bilinear', align_corners=False)
        views = [slide_probabilities(reference, x, size),
                 slide_probabilities(reference, x.flip(-1), size).flip(-1),
                 slide_probabilities(reference, large, size),
                 slide_probabilities(reference, large.flip(-1), size).flip(-1)]
        expected = torch.stack(views).mean(dim=0)
        whole = reference.whole_inference(x, [dict(img_shape=size, ori_shape=size, pad_shape=size)])
    torch.testing.assert_close(scored.exp(), expected, rtol=1e-5, atol=1e-6)
    assert (views[0] - whole.softmax(dim=1)).abs().max() > 1e-3  # slide is not whole here


def whole_probabilities(model: nn.Module, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """mmseg's own whole-image inference of ``x``, softmaxed on the ``size`` grid."""
    shape = tuple(x.shape[-2:])
    logits = model.whole_inference(x, [dict(img_shape=shape, ori_shape=shape, pad_shape=shape)])
    if logits.shape[-2:] != size:
        logits = F.interpolate(logits, size=size, mode='bilinear', align_corners=False)
    return logits.softmax(dim=1)


def test_scored_map_is_the_plain_view_where_the_anchor_is_confident_and_the_average_elsewhere() -> None:
    """At the first batch teacher and anchor are the source: with the threshold at the median of the
    anchor's max probability, half the pixels keep the plain view, the others the mean of the four views."""
    model = tiny_segmentor().eval()
    reference = copy.deepcopy(model)
    x = images()
    size = (64, 96)
    with torch.no_grad():
        plain = whole_probabilities(reference, x, size)
        small = F.interpolate(x, size=(32, 48), mode='bilinear', align_corners=False)
        averaged = (plain + whole_probabilities(reference, x.flip(-1), size).flip(-1)
                    + whole_probabilities(reference, small, size)
                    + whole_probabilities(reference, small.flip(-1), size).flip(-1)) / 4
    top = plain.max(dim=1).values
    threshold = top.median().item()
    confident = top > threshold
    assert 0.3 < confident.float().mean().item() < 0.7
    method = CoTTA(optimizer=dict(type='SGD', lr=0.0), scales=(0.5, 1.0), confidence=threshold)
    method.setup(model, segmentor_logits)
    scored = method.adapt(model, x).exp()
    expected = torch.where(confident[:, None], plain, averaged)
    torch.testing.assert_close(scored, expected, rtol=1e-5, atol=1e-6)
    assert (plain - averaged).abs().amax(dim=1).min() > 1e-6  # the two choices differ at every pixel


def test_reset_each_segment_clears_the_optimiser_state_and_keeps_the_teacher() -> None:
    x = images()
    for reset in (True, False):
        model = tiny_segmentor()
        method = CoTTA(optimizer=dict(type='Adam', lr=1e-3), scales=(1.0,), flip=False, ema=0.5,
                       reset_each_segment=reset)
        method.setup(model, segmentor_logits)
        method.adapt(model, x)
        assert len(method.optimizer.state) > 0
        teacher = copy.deepcopy(method.teacher.state_dict())
        method.start_segment('night')
        assert (len(method.optimizer.state) == 0) == reset
        for name, value in method.teacher.state_dict().items():
            assert torch.equal(value, teacher[name]), name


# --- through the real Runner -----------------------------------------------------------------------

class ModeProbe(Hook):
    """After every stream batch: the modes of student, teacher and anchor and their BatchNorm buffers."""

    def __init__(self) -> None:
        self.batches: list[dict] = []

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        model = runner.model
        method = model.method

        def norm_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
            return {name: value.clone() for name, value in module.named_buffers()
                    if name.rsplit('.', 1)[-1] in ('running_mean', 'running_var', 'num_batches_tracked')}

        self.batches.append(dict(
            training={name: sorted({n for n, m in part.named_modules() if m.training})
                      for name, part in (('student', model.module), ('teacher', method.teacher),
                                         ('anchor', method.anchor))},
            anchor=norm_buffers(method.anchor), teacher=norm_buffers(method.teacher)))


def test_teacher_and_anchor_stay_in_eval_mode_through_the_runner(tmp_path: Path) -> None:
    """Issue 17 fix 1. The runner holds the model in train mode when ``before_test`` makes the copies, and
    its ``model.eval()`` does not reach them; the official code keeps all three in eval mode, so the
    anchor's (and teacher's) BatchNorm statistics stay the source's for the whole stream."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    data = write_acdc_tree(tmp_path / 'acdc', images_per_condition=2)
    checkpoint = write_tiny_checkpoint(tmp_path / 'tiny.pth')
    cfg = Config.fromfile(write_config(tmp_path / 'cfg.py', data, 'cotta', rounds=1))
    cfg.work_dir, cfg.load_from = str(tmp_path / 'work'), str(checkpoint)
    cfg.custom_hooks[0].method.update(scales=[0.5, 1.0])
    cfg.custom_hooks[0].method.optimizer.lr = 0.05
    cfg.test_cfg.segments = cfg.test_cfg.segments[:2]
    runner = Runner.from_cfg(cfg)
    probe = ModeProbe()
    runner.register_hook(probe)
    runner.test()

    source = torch.load(checkpoint, weights_only=True)['state_dict']
    assert len(probe.batches) == 4
    for batch in probe.batches:
        assert batch['training'] == dict(student=[], teacher=[], anchor=[])
        assert batch['anchor'] and batch['anchor'].keys() == batch['teacher'].keys()
        for name, value in batch['anchor'].items():
            assert torch.equal(value, source[name]), name
            assert torch.equal(batch['teacher'][name], source[name]), name
