"""Build a config's model and test pipeline without data: a quick check of a real config."""
from __future__ import annotations

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from imse_seg.core import count_parameters

from .registry import build_adaptation


def dry_run(cfg: Config, image_shape: tuple[int, int] = (270, 480)) -> dict:
    """Build ``cfg.model``, set up its method, and push one random image through pipeline and model.

    The pipeline's file loading steps are replaced by the random image (H x W x 3, uint8) and a random
    label map, so every other transform (resize, packing) runs for real. Returns a summary dict.
    """
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(cfg.model).eval()
    hooks = [hook for hook in cfg.get('custom_hooks', []) if hook['type'] == 'AdaptationSetupHook']
    if len(hooks) != 1:
        raise ValueError(f'expected one AdaptationSetupHook in custom_hooks, found {len(hooks)}')
    method = build_adaptation(hooks[0]['method'])
    model.set_method(method)
    pipeline_cfg = cfg.test_dataloader.dataset.pipeline
    pipeline = Compose([t for t in pipeline_cfg if not t['type'].startswith('Load')])
    rng = np.random.default_rng(0)
    h, w = image_shape
    sample = dict(img=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), img_path='dry-run.png',
                  gt_seg_map=rng.integers(0, 19, (h, w), dtype=np.uint8), seg_fields=['gt_seg_map'],
                  ori_shape=(h, w), img_shape=(h, w), reduce_zero_label=False)
    batch = pseudo_collate([pipeline(sample)])
    with torch.no_grad():
        params_before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    outputs = model.test_step(batch)
    prediction = outputs[0].pred_sem_seg.data
    summary = dict(method=type(method).__name__, parameters=str(count_parameters(model.module)),
                   input=tuple(batch['inputs'][0].shape), prediction=tuple(prediction.shape),
                   adapted=any(not torch.equal(a, b) for a, b in zip(
                       params_before, [p for p in model.parameters() if p.requires_grad])))
    print_log(f'dry run: {summary}', logger='current')
    return summary
