"""CoTTA (issues 17 and 23): its parts against hand-computed values, its loss and views as the official
segmentation code (qinenergy/cotta, acdc-submission) has them, and its copies' modes through the Runner."""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from torch import nn

from acdc_fixture import TINY_SEGMENTOR, write_acdc_tree, write_config, write_tiny_checkpoint
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
