"""Classification path parity with segmentation (issue 20, item 8): --resume continues a stopped stream to
the same results, --dry-run reads no data, the error rate is reported beside the accuracy, and a timm
checkpoint is read by path with weights_only (a pickle of code is refused)."""
from pathlib import Path

import pytest
import torch

from imse_seg.cls.adaptive_classifier import AdaptiveClassifier
from imse_seg.cls.model import CheckpointError, build_classifier
from imse_seg.cls.runner import dry_run_classification, run_classification
from imse_seg.reporting import load_results
from test_cls_runner import CORRUPTIONS, TINY_VIT, config, tree  # noqa: F401  (the tiny tree fixture)
from tool_module import load_tool

GRADUAL = dict(type='SequentialStream', corruptions=CORRUPTIONS, severities=[1, 3, 5, 3, 1])


class Stop(Exception):
    pass


def test_resume_after_a_stop_gives_the_uninterrupted_results(tree, tmp_path, monkeypatch) -> None:
    cfg = config(tree, stream=GRADUAL)
    full = run_classification(cfg, tmp_path / 'full')
    calls = []
    original = AdaptiveClassifier.start_segment

    def stop_at_the_fourth_block(self, name: str) -> None:
        calls.append(name)
        if len(calls) == 4:  # after severity 1, 3, 5 of the first corruption: severities 3 and 1 still open
            raise Stop
        original(self, name)

    monkeypatch.setattr(AdaptiveClassifier, 'start_segment', stop_at_the_fourth_block)
    with pytest.raises(Stop):
        run_classification(cfg, tmp_path / 'stopped')
    monkeypatch.setattr(AdaptiveClassifier, 'start_segment', original)
    assert len(load_results(tmp_path / 'stopped')) == 1, 'only severity 5 had finished'
    resumed = run_classification(cfg, tmp_path / 'stopped', resume=True)
    expected = [(r['key'], r['metrics'], r['num_images']) for r in load_results(tmp_path / 'full')]
    assert [(r['key'], r['metrics'], r['num_images']) for r in load_results(tmp_path / 'stopped')] == expected
    assert resumed['accuracy'] == full['accuracy'] and resumed['error'] == pytest.approx(100 - full['accuracy'])


def test_resume_of_another_config_is_refused(tree, tmp_path) -> None:
    run_classification(config(tree), tmp_path / 'run')
    with pytest.raises(CheckpointError, match='belongs to another run: its method, '):
        run_classification(config(tree, method='source'), tmp_path / 'run', resume=True)


def test_dry_run_adapts_once_without_data(tree, tmp_path) -> None:
    cfg = config(tree, data=dict(source=dict(type='CorruptionFolders', root=str(tmp_path / 'no_data_here')),
                                batch_size=4))
    summary = dry_run_classification(cfg)
    assert summary == dict(method='EntropyAdaptation', parameters=summary['parameters'], inputs=(2, 3, 16, 16),
                           logits=(2, 3), adapted=True)


def test_cli_prints_error_beside_accuracy(tree, tmp_path, capsys) -> None:
    tool = load_tool('adapt_cls')
    config_file = tmp_path / 'run.py'
    config_file.write_text(f'{config(tree)!r}'.join(['cfg = ', '\nglobals().update(cfg)\ndel cfg\n']))
    assert tool.main([str(config_file), '--work-dir', str(tmp_path / 'w')]) == 0
    out = capsys.readouterr().out
    record = load_results(tmp_path / 'w')[0]
    assert record['metrics']['error'] == pytest.approx(100 - record['metrics']['accuracy'])
    assert '% (error ' in out and 'over 2 segments' in out


def test_checkpoint_by_path_is_read_weights_only(tmp_path) -> None:
    model = build_classifier(**TINY_VIT)
    torch.save(model.state_dict(), tmp_path / 'plain.pth')
    loaded = build_classifier(**dict(TINY_VIT, checkpoint=str(tmp_path / 'plain.pth')))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    torch.save({'state_dict': model.state_dict(), 'code': Path('not a tensor')}, tmp_path / 'pickled.pth')
    with pytest.raises(CheckpointError, match='cannot be read'):
        build_classifier(**dict(TINY_VIT, checkpoint=str(tmp_path / 'pickled.pth')))
