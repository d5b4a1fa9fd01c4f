"""A user's mistake is one line on stderr and exit status 2, naming what exists instead (issue 20, item 4)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmseg.models.decode_heads import SegmenterMaskTransformerHead
from torch import nn

from checkout import checkout_env
from imse_seg.adaptation import AdaptationContext
from imse_seg.cli import USER_ERRORS, exit_with, read_config
from imse_seg.core import spectralize
from imse_seg.errors import ConfigError
from imse_seg.registry import build_adaptation, build_method, methods_for
from imse_seg.reporting import ResultsWriter
from tool_module import load_tool

REPO = Path(__file__).resolve().parents[1]


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          env=checkout_env(OMP_NUM_THREADS='1'))


def exit_status(tool: str, argv: list[str], capsys) -> tuple[int, str]:
    """Exit status and stderr of ``tools/<tool>.py`` run in process as its ``__main__`` runs it."""
    main = load_tool(tool).main
    with pytest.raises(SystemExit) as stop:
        exit_with(lambda: main(argv))
    return stop.value.code, capsys.readouterr().err


class Blocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)) for _ in range(3))
        self.head = nn.Linear(4, 2)


def test_config_errors_are_user_errors() -> None:
    assert ConfigError in USER_ERRORS and issubclass(ConfigError, ValueError)


def test_stag_on_a_head_without_conv_seg_names_the_classifier_option() -> None:
    segmentor = nn.Module()
    segmentor.decode_head = SegmenterMaskTransformerHead(in_channels=8, num_layers=1, num_heads=2, embed_dims=8,
                                                         channels=8, num_classes=3)
    with pytest.raises(ConfigError) as error:
        build_adaptation(dict(type='StagTerm'), context=AdaptationContext(segmentor))
    message = str(error.value)
    assert "no module at 'decode_head.conv_seg'" in message and 'classifier=' in message
    assert 'decode_head.classes_proj' in message and 'decode_head.layers.*.attn.attn' in message
    assert '\n' not in message


def test_spectral_pattern_matching_nothing_lists_the_linear_modules() -> None:
    with pytest.raises(ConfigError, match=r"pattern 'layers\.\*' matches no module of Blocks; its linear "
                                          r"modules \(indices as \*\): blocks\.\*\.\*, head$"):
        spectralize(Blocks(), ['layers.*'])


def test_a_segmentation_only_method_is_refused_on_classification() -> None:
    assert 'CoTTA' in methods_for('segmentation') and 'CoTTA' not in methods_for('classification')
    # (other tests may register methods of their own in this process: the list is matched loosely)
    with pytest.raises(ConfigError, match="'CoTTA' runs on segmentation only; the classification path "
                                          "runs: ClassificationCoTTA, EntropyAdaptation, "
                                          "NormStatisticsAdaptation, .*SAR, Source, ViDA"):
        build_method(dict(type='CoTTA', optimizer=dict(type='Adam', lr=1e-3)), 'classification')
    with pytest.raises(ConfigError, match="'Nope' is not a registered method"):
        build_method(dict(type='Nope'), 'segmentation')


def test_a_base_variable_no_base_defines_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / 'cls_cotta.py'
    config.write_text(f"_base_ = ['{REPO}/configs/cls/_base_/methods/vit.py']\nmethod = {{{{_base_.cotta}}}}\n")
    with pytest.raises(ConfigError, match=r'refers to \{\{_base_\.cotta\}\}, which none of its _base_ files'):
        read_config(config)


def test_adapt_cls_cotta_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_tool('tools/adapt_cls.py', 'configs/cls/demo_imse.py', '--work-dir', str(tmp_path / 'w'),
                      '--cfg-options', 'method.type=CoTTA')
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: method type 'CoTTA' runs on segmentation only; the classification path runs: "
        'ClassificationCoTTA, EntropyAdaptation, NormStatisticsAdaptation, SAR, Source, ViDA']


def _run_folder(folder: Path) -> Path:
    writer = ResultsWriter(folder)
    for round_index in (1, 2):
        writer.add(dict(condition='fog', round=round_index), {'mIoU': 40.0 + round_index, 'aAcc': 80.0},
                   num_images=2, seconds=1.0, per_class={'road': 90.0, 'car': float('nan')})
    return folder


def test_plot_results_on_a_missing_folder_is_one_line(tmp_path: Path, capsys) -> None:
    status, err = exit_status('plot_results', [str(tmp_path / 'nothing'), '--out', str(tmp_path / 'p.png')], capsys)
    assert status == 2
    assert err == (f'error: {tmp_path / "nothing"} does not exist: give a run folder (holding results.jsonl) '
                   'or a .jsonl results file\n')


def test_plot_results_lists_the_plottable_columns_and_plots_a_class(tmp_path: Path, capsys) -> None:
    run = _run_folder(tmp_path / 'tent')
    status, err = exit_status('plot_results', [str(run), '--out', str(tmp_path / 'p.png'), '--metric', 'mIou'],
                              capsys)
    assert status == 2 and not (tmp_path / 'p.png').exists()
    assert err == "error: no run has a column 'mIou' to plot; plottable: mIoU, aAcc, per_class/road, per_class/car\n"
    tool = load_tool('plot_results')
    assert tool.main([str(run), '--out', str(tmp_path / 'road.png'), '--metric', 'per_class/road']) == 0
    assert (tmp_path / 'road.png').stat().st_size > 0


def test_benchmark_on_cuda_without_a_gpu_is_refused(monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    status, err = exit_status('benchmark', ['configs/demo_ctta.py', '--device', 'cuda', '--out',
                                            str(tmp_path / 'b.json')], capsys)
    assert status == 2 and not (tmp_path / 'b.json').exists()
    assert err.startswith('error: --device cuda: torch ') and err.endswith('; run with --device cpu\n')
    assert err.count('\n') == 1

