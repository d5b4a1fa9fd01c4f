"""The mmcv.ops stand-in (issue 2): mmseg builds SegFormer with mmcv-lite; a full mmcv is left alone."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def test_mmseg_builds_and_runs_segformer_with_mmcv_lite() -> None:
    from mmseg.registry import MODELS
    import mmseg.models  # noqa: F401
    import mmcv.ops
    assert getattr(mmcv.ops, '__imse_seg_stand_in__', False), 'expected mmcv-lite in the test env'
    model = MODELS.build(dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
        backbone=dict(type='MixVisionTransformer', embed_dims=16, num_layers=[1, 1, 1, 1],
                      num_heads=[1, 2, 4, 8]),
        decode_head=dict(type='SegformerHead', in_channels=[16, 32, 64, 128], in_index=[0, 1, 2, 3],
                         channels=32, num_classes=19),
        test_cfg=dict(mode='whole')))
    logits = model(torch.randn(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, 19, 16, 16)
    logits.mean().backward()


def test_point_sample_is_mmcv_own_code() -> None:
    from mmcv.ops import point_sample
    feats = torch.arange(16.0).reshape(1, 1, 4, 4)
    centre = torch.tensor([[[0.5, 0.5]]])
    assert point_sample(feats, centre, align_corners=False).item() == pytest.approx(7.5)


def test_compiled_op_placeholder_fails_clearly() -> None:
    from mmcv.ops import DeformConv2d
    with pytest.raises(RuntimeError, match='needs mmcv compiled with its C.*mmcv-lite'):
        DeformConv2d(3, 3, 3)


def test_full_mmcv_is_left_alone() -> None:
    # Load the compat module by path, so that importing the package (which imports mmseg) does not
    # interfere; a fake compiled extension stands for a full mmcv.
    source = Path(__file__).resolve().parents[1] / 'imse_seg' / 'compat' / 'mmcv_ops.py'
    code = ('import importlib.util, sys, types; sys.modules["mmcv._ext"] = types.ModuleType("mmcv._ext"); '
            f'spec = importlib.util.spec_from_file_location("mmcv_ops_compat", {str(source)!r}); '
            'module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); '
            'assert module.install_mmcv_ops_stand_in() is False; assert "mmcv.ops" not in sys.modules; '
            'print("untouched")')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert 'untouched' in result.stdout
