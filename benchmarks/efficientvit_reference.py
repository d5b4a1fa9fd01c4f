"""How close the project's EfficientViT-Seg-B0 is to its authors' implementation on the reference inputs.

    python benchmarks/efficientvit_reference.py

Converts the published checkpoint (imse_seg.third_party: ../shared by default), builds the model from
configs/_base_/models/efficientvit-seg-b0_cityscapes.py, feeds each reference input through the config's
pre-processor and prints, per input, max |difference| of the stride-8 logits from the authors' logits over
max |logit| (tests/test_efficientvit.py requires <= 1e-4) and whether the arg-max histogram is identical.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import imse_seg  # noqa: F401  (before mmseg: installs the mmcv.ops stand-in)
import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import imse_seg.seg  # noqa: F401
from imse_seg.seg.efficientvit_conversion import convert_efficientvit
from imse_seg.third_party import EFFICIENTVIT_B0_CITYSCAPES, EFFICIENTVIT_B0_REFERENCE

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    torch.set_num_threads(1)
    init_default_scope('mmseg')
    reference_dir = EFFICIENTVIT_B0_REFERENCE.require()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = convert_efficientvit(EFFICIENTVIT_B0_CITYSCAPES.require(), Path(tmp) / 'b0.pth')
    model = MODELS.build(Config.fromfile(ROOT / 'configs/_base_/models/efficientvit-seg-b0_cityscapes.py').model)
    model.load_state_dict(checkpoint['state_dict'], strict=True)
    model.eval()
    manifest = json.loads((reference_dir / 'manifest.json').read_text())
    reference = np.load(reference_dir / 'efficientvit_b0_reference_logits.npz')
    print('input        max|diff|/max|logit|  arg-max histogram equal')
    for name, frame in manifest['frames'].items():
        image = cv2.imread(str(reference_dir / name))
        sample = SegDataSample(metainfo=dict(img_shape=image.shape[:2], ori_shape=image.shape[:2]))
        data = model.data_preprocessor(
            dict(inputs=[torch.from_numpy(image).permute(2, 0, 1).contiguous()], data_samples=[sample]), False)
        with torch.no_grad():
            logits = model(data['inputs'], mode='tensor')[0].numpy()
        expected = reference[frame['logits_key']]
        relative = np.abs(logits - expected).max() / np.abs(expected).max()
        same = np.bincount(logits.argmax(0).ravel(), minlength=19).tolist() == frame['argmax_histogram']
        print(f'{name:12s} {relative:20.2e}  {same}')


if __name__ == '__main__':
    main()
