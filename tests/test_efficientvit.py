"""EfficientViT-Seg as an mmseg model (issue 16): the published B0 Cityscapes model, exact to its authors'.

The checkpoint and the authors' reference logits are read from the shared folder (never committed); the
tests skip with the path named where it is absent and fail under CI (tests/shared_files.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import imse_seg.seg  # noqa: F401  (registers the models)
from imse_seg.seg.checkpoint_conversion import ConversionError
from imse_seg.seg.efficientvit_conversion import (B0_CITYSCAPES, EfficientViTArchitecture, build_model,
                                                  convert_efficientvit, convert_state_dict, infer_architecture,
                                                  read_state_dict)
from imse_seg.third_party import EFFICIENTVIT_B0_CITYSCAPES, EFFICIENTVIT_B0_REFERENCE
from shared_files import shared_path
from tool_module import load_tool

REPO = Path(__file__).resolve().parents[1]
MODEL_CONFIG = REPO / 'configs/_base_/models/efficientvit-seg-b0_cityscapes.py'
TENSORS_IN_FILE = 230


@pytest.fixture(scope='module')
def official() -> dict[str, torch.Tensor]:
    return dict(read_state_dict(shared_path(EFFICIENTVIT_B0_CITYSCAPES)))


@pytest.fixture(scope='module')
def converted(official, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('evit') / 'b0.pth'
    convert_efficientvit(shared_path(EFFICIENTVIT_B0_CITYSCAPES), path)
    return path


def build_segmentor(checkpoint: Path | None = None) -> torch.nn.Module:
    cfg = Config.fromfile(MODEL_CONFIG)
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict']
        model.load_state_dict(state, strict=True)
    return model.eval()


def test_conversion_consumes_every_tensor_of_the_file(official, converted) -> None:
    assert len(official) == TENSORS_IN_FILE
    checkpoint = torch.load(converted, map_location='cpu', weights_only=True)
    state = checkpoint['state_dict']
    assert len(state) == TENSORS_IN_FILE
    model = build_segmentor()
    assert set(model.state_dict()) == set(state)   # strict: nothing missing, nothing left over
    values = sorted(official.values(), key=lambda t: (t.shape, t.sum().item()))
    mine = sorted(state.values(), key=lambda t: (t.shape, t.sum().item()))
    assert all(torch.equal(a, b) for a, b in zip(values, mine))   # tensors renamed, never changed
    assert checkpoint['meta']['dataset_meta']['classes'][:3] == ('road', 'sidewalk', 'building')
    assert infer_architecture(state) == B0_CITYSCAPES


def test_reference_logits_are_reproduced(converted) -> None:
    reference_dir = shared_path(EFFICIENTVIT_B0_REFERENCE)
    manifest = json.loads((reference_dir / 'manifest.json').read_text())
    reference = np.load(reference_dir / 'efficientvit_b0_reference_logits.npz')
    model = build_segmentor(converted)
    assert len(manifest['frames']) == 4
    for name, frame in manifest['frames'].items():
        image = cv2.imread(str(reference_dir / name))   # BGR, as mmseg's loader gives it
        sample = SegDataSample(metainfo=dict(img_shape=image.shape[:2], ori_shape=image.shape[:2]))
        data = model.data_preprocessor(
            dict(inputs=[torch.from_numpy(image).permute(2, 0, 1).contiguous()], data_samples=[sample]), False)
        with torch.no_grad():
            logits = model(data['inputs'], mode='tensor')[0].numpy()
        expected = reference[frame['logits_key']]
        assert logits.shape == tuple(frame['shape'])
        assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()
        histogram = np.bincount(logits.argmax(0).ravel(), minlength=19)
        assert histogram.tolist() == frame['argmax_histogram']


def test_input_not_a_multiple_of_32_is_padded_and_cropped_back(converted) -> None:
    model = build_segmentor(converted)
    image = torch.randint(0, 255, (3, 100, 150), dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_shape=(100, 150), ori_shape=(100, 150)))
    with torch.no_grad():
        result = model.test_step(dict(inputs=[image], data_samples=[sample]))[0]
    assert result.pred_sem_seg.data.shape[-2:] == (100, 150)
    assert list(result.metainfo['img_padding_size']) == [0, 160 - 150, 0, 128 - 100]


def test_another_width_is_another_config_not_other_code() -> None:
    b1 = EfficientViTArchitecture((16, 32, 64, 128, 256), (1, 2, 3, 3, 4), 16, 64, 3, 4, 19)
    state = build_model(b1).state_dict()
    assert infer_architecture(state) == b1


@pytest.mark.parametrize('change, message', [
    (lambda s: s.pop('backbone.stages.1.op_list.1.main.depth_conv.norm.running_mean'),
     r"1 missing \(first: 'backbone\.stages\.1\.1\.depthwise\.bn\.running_mean'\)"),
    (lambda s: s.__setitem__('backbone.stages.0.op_list.0.main.inverted_conv.conv.weight', torch.zeros(32, 9, 1, 1)),
     r"tensor 'backbone\.stages\.0\.0\.expand\.conv\.weight' has shape \(32, 9, 1, 1\)"),
    (lambda s: s.__setitem__('head.extra.weight', torch.zeros(1)), r"unexpected tensor 'head\.extra\.weight'"),
    (lambda s: s.__setitem__('backbone.stages.3.op_list.3.main.qkv.conv.weight', torch.zeros(1)),
     r"1 unexpected \(first: 'backbone\.stages\.3\.3\.qkv\.conv\.weight'\)"),
    (lambda s: s.__setitem__('head.output_ops.0.op_list.1.conv.weight', torch.zeros(150, 128, 1, 1)),
     r"tensor 'decode_head\.conv_seg\.bias' has shape \(19,\)"),
])
def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_tensor(official, tmp_path, change, message) -> None:
    state = dict(official)
    change(state)
    torch.save({'state_dict': state}, tmp_path / 'bad.pt')
    with pytest.raises(ConversionError, match=message):
        convert_efficientvit(tmp_path / 'bad.pt', tmp_path / 'out.pth')
    assert not (tmp_path / 'out.pth').exists()


def test_cli_refuses_a_segformer_file_with_status_2(tmp_path, capsys) -> None:
    torch.save({'state_dict': {'backbone.block1.0.attn.q.weight': torch.zeros(4, 4)}}, tmp_path / 'seg.pth')
    status = load_tool('convert_checkpoint').main([str(tmp_path / 'seg.pth'), str(tmp_path / 'o.pth'),
                                                   '--format', 'efficientvit'])
    assert status == 2
    assert 'not an EfficientViT-Seg checkpoint' in capsys.readouterr().err


def test_cli_converts_and_names_the_matching_config(tmp_path, capsys) -> None:
    source = shared_path(EFFICIENTVIT_B0_CITYSCAPES)
    status = load_tool('convert_checkpoint').main([str(source), str(tmp_path / 'b0.pth'), '--format', 'efficientvit'])
    assert status == 0
    out = capsys.readouterr().out
    assert f'{TENSORS_IN_FILE} tensors, 19 classes' in out
    assert 'model config: configs/_base_/models/efficientvit-seg-b0_cityscapes.py' in out


def test_state_dict_conversion_rejects_unknown_prefixes() -> None:
    with pytest.raises(ConversionError, match='no head.output_ops.0 classifier'):
        convert_state_dict({'module.0.weight': torch.zeros(1)})


def test_method_forward_pads_views_that_the_preprocessor_never_saw(converted) -> None:
    from imse_seg.seg.adaptation.segmentation import segmentor_logits
    model = build_segmentor(converted)
    view = torch.randn(1, 3, 100, 150)
    padded = torch.nn.functional.pad(view, (0, 10, 0, 28))
    with torch.no_grad():
        logits = segmentor_logits(model, view)
        reference = model(padded, mode='tensor')
    assert logits.shape[-2:] == (13, 19)
    assert torch.equal(logits, reference[..., :13, :19])
