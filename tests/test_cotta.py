"""CoTTA (issues 17 and 23): its parts against hand-computed values, its loss and views as the official
segmentation code (qinenergy/cotta, acdc-submission) has them, and its copies' modes through the Runner."""
from __future__ import annotations

from pathlib import Path

import torch
from mmengine.hooks import Hook
from torch import nn

from acdc_fixture import write_acdc_tree, write_config, write_tiny_checkpoint


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
