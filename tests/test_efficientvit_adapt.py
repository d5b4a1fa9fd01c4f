"""The published EfficientViT-Seg-B0 through the project's own pipeline (issue 16): its source accuracy on
clear CamVid equals the authors' code's, and every method of configs/_base_/methods/efficientvit.py adapts it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from imse_seg.seg.efficientvit_conversion import convert_efficientvit
from imse_seg.third_party import CAMVID, EFFICIENTVIT_B0_CITYSCAPES
from shared_files import shared_path
from tool_module import load_tool

REPO = Path(__file__).resolve().parents[1]
CLEAR_CONFIG = REPO / 'configs/efficientvit_camvid_clear.py'
METHODS = Config.fromfile(REPO / 'configs/_base_/methods/efficientvit.py')
REFERENCE_MIOU_2X = 60.8   # ../shared/reference/efficientvit_seg_b0/README.md, authors' code, Seq05VD at 2x


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory) -> Path:
    shared_path(CAMVID)
    path = tmp_path_factory.mktemp('evit') / 'b0.pth'
    convert_efficientvit(shared_path(EFFICIENTVIT_B0_CITYSCAPES), path)
    return path


def test_source_miou_on_clear_camvid_matches_the_authors_code(checkpoint, tmp_path) -> None:
    status = load_tool('adapt').main([str(CLEAR_CONFIG), '--checkpoint', str(checkpoint),
                                      '--work-dir', str(tmp_path)])
    assert status == 0
    record = json.loads((tmp_path / 'results.jsonl').read_text().splitlines()[0])
    assert record['num_images'] == 171
    assert abs(record['metrics']['mIoU'] - REFERENCE_MIOU_2X) <= 0.5
    assert list(record['per_class'])[:3] == ['Sky', 'Building', 'Pole']   # merged to CamVid's classes


def adapted_runner(method: str, checkpoint: Path, work_dir: Path) -> Runner:
    cfg = Config.fromfile(CLEAR_CONFIG)
    cfg.custom_hooks = [dict(type='AdaptationSetupHook', method=cfg[method])]
    cfg.test_dataloader.dataset.indices = 2
    cfg.test_dataloader.dataset.pipeline[1].scale_factor = 1.0
    cfg.load_from, cfg.work_dir = str(checkpoint), str(work_dir)
    runner = Runner.from_cfg(cfg)
    runner.test()
    return runner


def is_method(value: object) -> bool:
    """A methods-file entry that configures an adaptation method (not a component such as ``statistics``)."""
    import imse_seg.seg  # noqa: F401  (registers every method)
    from imse_seg.adaptation import AdaptationMethod
    from imse_seg.registry import ADAPTATION
    if not (isinstance(value, dict) and 'type' in value):
        return False
    component = ADAPTATION.get(value['type'])
    return isinstance(component, type) and issubclass(component, AdaptationMethod)


@pytest.mark.parametrize('method', [name for name, value in METHODS.items() if is_method(value)])
def test_every_method_runs_and_adapts(checkpoint, tmp_path, method) -> None:
    runner = adapted_runner(method, checkpoint, tmp_path)
    assert (tmp_path / 'results.jsonl').exists()
    source = torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict']
    model, method_object = runner.model.module, runner.model.method
    adapted = method_object.adapted_parameters()
    if method == 'source':
        assert not adapted
        return
    if METHODS[method]['type'] == 'NormStatisticsAdaptation':   # no gradient: the predictions must move
        assert not adapted
        source_run = adapted_runner('source', checkpoint, tmp_path / 'source')
        mine, theirs = (json.loads((d / 'results.jsonl').read_text()) for d in (tmp_path, tmp_path / 'source'))
        assert source_run is not runner and mine['metrics'] != theirs['metrics']
        return
    assert adapted, f'{method} adapts no parameter'
    names = {id(p): n for n, p in model.named_parameters()}
    moved = [names[id(p)] for p in adapted if names[id(p)] in source and not torch.equal(p, source[names[id(p)]])]
    if not moved:   # spectral methods: singular values are new parameters; compare with their s0
        layers = method_object.context.layers
        moved = [layer.name for layer in layers
                 if not torch.equal(layer.singular_values, layer.weight.initial_singular_values)]
    assert moved, f'{method} moved no adapted parameter on 2 frames'


def test_a_checkpoint_of_another_width_stops_before_any_compute(checkpoint, tmp_path, capsys) -> None:
    cfg_options = ['model.module.backbone.widths=(8,16,32,64,160)', 'model.module.decode_head.in_channels=(160,64,32)']
    with pytest.raises(SystemExit) as stop:
        from imse_seg.cli import exit_with
        exit_with(lambda: load_tool('adapt').main([str(CLEAR_CONFIG), '--checkpoint', str(checkpoint),
                                                   '--work-dir', str(tmp_path), '--cfg-options', *cfg_options]))
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert 'does not fit the configured model' in error
    assert 'mis-shaped: backbone.stages.3.0.project.conv.weight (128, 256, 1, 1) (model: (160, 256, 1, 1))' in error
    assert not (tmp_path / 'results.jsonl').exists()
