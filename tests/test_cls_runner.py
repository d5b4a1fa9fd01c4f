"""Classification path end to end on a tiny ImageNet-C-layout tree: every setting, errors, shared core."""
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image
from safetensors.torch import save_file

from imse_seg.adaptation import EntropyAdaptation, Source
from imse_seg.cls.adaptive_classifier import AdaptiveClassifier
from imse_seg.cls.model import CheckpointError, build_classifier
from imse_seg.cls.runner import run_classification
from imse_seg.core import SpectralCodeBank, SpectralLayer, SpectralWeight, StagLoss
from imse_seg.registry import build_adaptation
from imse_seg.reporting import load_results
from tool_module import load_tool

REPO = Path(__file__).resolve().parents[1]
METHODS = Config.fromfile(REPO / 'configs/cls/_base_/methods/vit.py')
CORRUPTIONS = ['gaussian_noise', 'fog']
CLASSES = ['cat', 'dog', 'fish']
TINY_VIT = dict(name='vit_tiny_patch16_224', num_classes=len(CLASSES), img_size=16, patch_size=4,
                embed_dim=24, depth=6, num_heads=2)


@pytest.fixture(scope='module')
def tree(tmp_path_factory) -> Path:
    """2 corruptions x 5 severities x 3 classes x 4 images of 16x16, and a random tiny ViT checkpoint."""
    root = tmp_path_factory.mktemp('imagenet_c')
    rng = np.random.default_rng(0)
    for corruption in CORRUPTIONS:
        for severity in range(1, 6):
            for label, name in enumerate(CLASSES):
                folder = root / 'data' / corruption / str(severity) / name
                folder.mkdir(parents=True)
                for index in range(4):
                    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) // (label + 1)
                    Image.fromarray(image).save(folder / f'{index}.png')
    model = build_classifier(**TINY_VIT)
    save_file(model.state_dict(), str(root / 'tiny_vit.safetensors'))
    return root


def folders(root: Path) -> dict:
    """The data source config of an ImageNet-C folder tree at ``root``."""
    return dict(type='CorruptionFolders', root=str(root))


def config(tree: Path, method: str = 'imse_stag', **overrides) -> dict:
    cfg = dict(model=dict(TINY_VIT, checkpoint=str(tree / 'tiny_vit.safetensors')),
               transform=dict(input_size=(3, 16, 16), crop_pct=1.0),
               data=dict(source=folders(tree / 'data'), batch_size=4),
               stream=dict(type='SequentialStream', corruptions=CORRUPTIONS, severities=[5]),
               method=METHODS[method].to_dict(), seed=0)
    cfg.update(overrides)
    return cfg


SETTINGS = {
    'continual': (dict(type='SequentialStream', corruptions=CORRUPTIONS, severities=[5]), 4,
                  [(c, 5, 1) for c in CORRUPTIONS]),
    'gradual': (dict(type='SequentialStream', corruptions=CORRUPTIONS, severities=[1, 2, 3, 4, 5, 4, 3, 2, 1]), 4,
                [(c, s, 1) for c in CORRUPTIONS for s in (5, 4, 3, 2, 1)]),
    'recurring': (dict(type='SequentialStream', corruptions=CORRUPTIONS, severities=[5], rounds=2), 4,
                  [(c, 5, r) for r in (1, 2) for c in CORRUPTIONS]),
    'mixed': (dict(type='MixedStream', corruptions=CORRUPTIONS, severity=5), 4, None),
    'single_sample': (dict(type='SequentialStream', corruptions=CORRUPTIONS, severities=[5]), 1,
                      [(c, 5, 1) for c in CORRUPTIONS]),
    'label_shift': (dict(type='SequentialStream', corruptions=CORRUPTIONS, severities=[5],
                         order=dict(type='DirichletOrder', concentration=0.1, slots=3)), 4,
                    [(c, 5, 1) for c in CORRUPTIONS]),
}


@pytest.mark.parametrize('setting', sorted(SETTINGS))
def test_every_setting_writes_one_row_per_corruption_severity_round(tree, tmp_path, setting):
    stream, batch_size, expected = SETTINGS[setting]
    cfg = config(tree, stream=stream, data=dict(source=folders(tree / 'data'), batch_size=batch_size))
    summary = run_classification(cfg, tmp_path / 'run')
    records = load_results(tmp_path / 'run')
    keys = [(r['key']['corruption'], r['key']['severity'], r['key']['round']) for r in records]
    if expected is None:
        assert sorted(keys) == sorted((c, 5, 1) for c in CORRUPTIONS)
    else:
        assert keys == expected
    images_per_key = 24 if setting == 'gradual' else 12
    assert all(r['num_images'] == (images_per_key if r['key']['severity'] != 5 else 12) for r in records)
    assert all(0 <= r['metrics']['accuracy'] <= 100 for r in records)
    assert summary['segments'] == len(records)
    csv_lines = (tmp_path / 'run' / 'results.csv').read_text().splitlines()
    assert csv_lines[0].startswith('index,corruption,severity,round,accuracy,error')
    assert len(csv_lines) == len(records) + 1
    assert (tmp_path / 'run' / 'accuracy_stream.png').is_file()
    events = [json.loads(line) for line in (tmp_path / 'run' / 'bank_events.jsonl').read_text().splitlines()]
    segments = {f'{c}/{s}' for c, s, _ in keys} | {f'mixed/{s}' for _, s, _ in keys}
    assert events and all(e['segment'] in segments and e['round'] in {k[2] for k in keys} for e in events)


def test_the_methods_are_the_shared_core_objects(tree):
    model = build_classifier(**config(tree)['model'])
    classifier = AdaptiveClassifier(model, build_adaptation(dict(METHODS.imse_stag.to_dict(),
                                                                 code_bank=dict(feature_module='patch_embed',
                                                                                full_batch_size=4))))
    method = classifier.method
    assert isinstance(method, EntropyAdaptation)
    assert all(isinstance(layer, SpectralLayer) for layer in method.context.layers)
    assert len(method.context.layers) == 6 * 4
    assert isinstance(model.blocks[0].attn.qkv.parametrizations['weight'][0], SpectralWeight)
    trained = {id(p) for p in method.params}
    assert trained == {id(layer.singular_values) for layer in method.context.layers
                       if layer.name.startswith(('blocks.0.', 'blocks.1.', 'blocks.2.'))}
    assert isinstance(method.objective.terms['stag'], StagLoss)
    assert isinstance(method.bank, SpectralCodeBank)
    assert isinstance(build_adaptation(METHODS.source.to_dict()), Source)


def test_missing_folder_is_an_error_naming_it(tree, tmp_path):
    cfg = config(tree, stream=dict(type='SequentialStream', corruptions=['snow'], severities=[5]))
    with pytest.raises(FileNotFoundError, match=r'snow/5'):
        run_classification(cfg, tmp_path / 'run')


def test_missing_checkpoint_and_wrong_class_count_are_errors(tree, tmp_path):
    cfg = config(tree)
    cfg['model'] = dict(cfg['model'], checkpoint=str(tmp_path / 'absent.safetensors'))
    with pytest.raises(CheckpointError, match='does not exist'):
        run_classification(cfg, tmp_path / 'a')
    five = build_classifier(**dict(TINY_VIT, num_classes=5))
    save_file(five.state_dict(), str(tmp_path / 'five.safetensors'))
    with pytest.raises(CheckpointError, match='predicts 5 classes'):
        build_classifier(**dict(TINY_VIT, checkpoint=str(tmp_path / 'five.safetensors')))
    cfg['model'] = dict(TINY_VIT, num_classes=5, checkpoint=str(tmp_path / 'five.safetensors'))
    with pytest.raises(ValueError, match='holds 3 classes'):
        run_classification(cfg, tmp_path / 'b')


def test_an_undecodable_image_is_skipped_counted_and_warned(tree, tmp_path, caplog):
    data = tmp_path / 'data'
    for corruption in CORRUPTIONS:
        for name in CLASSES:
            folder = data / corruption / '5' / name
            folder.mkdir(parents=True)
            for image in (tree / 'data' / corruption / '5' / name).iterdir():
                (folder / image.name).write_bytes(image.read_bytes())
    (data / 'fog' / '5' / 'dog' / 'broken.png').write_bytes(b'not a png at all')
    cfg = config(tree, data=dict(source=folders(data), batch_size=4))
    with caplog.at_level(logging.WARNING, logger='imse_seg.cls'):
        run_classification(cfg, tmp_path / 'run')
    fog = [r for r in load_results(tmp_path / 'run') if r['key']['corruption'] == 'fog'][0]
    assert (fog['num_images'], fog['num_skipped']) == (12, 1)
    assert 'broken.png' in caplog.text


def test_cli_runs_a_config_with_a_setting(tree, tmp_path):
    main = load_tool('adapt_cls').main
    cfg_file = tmp_path / 'tiny.py'
    cfg_file.write_text(f'_base_ = ["{REPO / "configs/cls/_base_/methods/vit.py"}"]\n'
                        f'model = {config(tree)["model"]!r}\n'
                        'transform = dict(input_size=(3, 16, 16), crop_pct=1.0)\n'
                        f'data = dict(source={folders(tree / "data")!r}, batch_size=4)\n'
                        f'stream = dict(type="SequentialStream", corruptions={CORRUPTIONS!r})\n'
                        'method = {{_base_.tent}}\n')
    setting = tmp_path / 'two_rounds.py'
    setting.write_text(f'stream = dict(type="MixedStream", corruptions={CORRUPTIONS!r}, rounds=2)\n')
    assert main([str(cfg_file), '--setting', str(setting), '--work-dir', str(tmp_path / 'run')]) == 0
    assert len(load_results(tmp_path / 'run')) == 4
    events = tmp_path / 'run' / 'bank_events.jsonl'
    assert not events.exists()
    with pytest.raises(FileExistsError, match='already holds results'):
        main([str(cfg_file), '--work-dir', str(tmp_path / 'run')])
