"""Build a config's model and test pipeline without data: a quick check of a real config."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from imse_seg.core import count_parameters

from imse_seg.registry import build_adaptation

from .checkpoint import checkpoint_status


def _downscaled(sample: dict, factor: int) -> dict:
    """A packed sample at 1/factor of its size, metas updated, so the model step stays cheap on a CPU."""
    image = sample['inputs']
    height, width = image.shape[-2] // factor, image.shape[-1] // factor
    small = F.interpolate(image[None].float(), size=(height, width), mode='bilinear', align_corners=False)
    data_sample = sample['data_samples'].clone()
    data_sample.set_metainfo(dict(img_shape=(height, width), ori_shape=(height, width)))
    return dict(inputs=small[0].round().to(image.dtype), data_samples=data_sample)


def dry_run(cfg: Config, image_shape: tuple[int, int] = (1080, 1920), model_scale: int = 8) -> dict:
    """Build ``cfg.model``, set up its method, run the test pipeline and one adaptation step, read no data.

    A random image (H x W x 3, uint8) and label map go through every transform of the test pipeline but
    the file loaders (resize and packing run for real). The packed sample is then shrunk by
    ``model_scale`` and given to the model's ``test_step``, which predicts and adapts once (in mixed
    precision with ``test_cfg.amp``). Returns a
    summary dict (method, parameter counts, shapes, whether the adapted parameters moved, and whether
    ``load_from`` exists and loads strictly into the segmentor; the weights stay random either way).
    """
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(cfg.model).eval()
    checkpoint = checkpoint_status(cfg.get('load_from'), model.module, model.module.decode_head.num_classes)
    hooks = [hook for hook in cfg.get('custom_hooks', []) if hook['type'] == 'AdaptationSetupHook']
    if len(hooks) != 1:
        raise ValueError(f'expected one AdaptationSetupHook in custom_hooks, found {len(hooks)}')
    method = build_adaptation(hooks[0]['method'])
    model.set_method(method, amp=bool((cfg.get('test_cfg') or {}).get('amp', False)))
    pipeline = Compose([t for t in cfg.test_dataloader.dataset.pipeline if not t['type'].startswith('Load')])
    rng = np.random.default_rng(0)
    h, w = image_shape
    packed = pipeline(dict(img=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), img_path='dry-run.png',
                           gt_seg_map=rng.integers(0, 19, (h, w), dtype=np.uint8), seg_fields=['gt_seg_map'],
                           ori_shape=(h, w), img_shape=(h, w), reduce_zero_label=False))
    trained = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trained]
    outputs = model.test_step(pseudo_collate([_downscaled(packed, model_scale)]))
    summary = dict(method=type(method).__name__, parameters=str(count_parameters(model.module)),
                   pipeline_output=tuple(packed['inputs'].shape),
                   prediction=tuple(outputs[0].pred_sem_seg.data.shape),
                   adapted=any(not torch.equal(a, b) for a, b in zip(before, trained)), checkpoint=checkpoint)
    print_log(f'dry run: {summary}', logger='current')
    return summary
