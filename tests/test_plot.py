"""plot_stream and tools/plot_results.py: a PNG of the requested size with the runs drawn on it."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imse_seg.reporting import ResultsWriter
from imse_seg.reporting.plot import plot_stream
from tool_module import load_tool

REPO = Path(__file__).resolve().parents[1]


def _records(offset: float, rounds: int = 2) -> list[dict]:
    return [{'index': i, 'key': {'condition': c, 'round': r}, 'metrics': {'mIoU': offset + 5 * j}}
            for i, (r, j, c) in enumerate((r, j, c) for r in range(1, rounds + 1)
                                          for j, c in enumerate(('fog', 'night', 'rain', 'snow')))]


def test_png_has_the_requested_size_and_shows_both_runs(tmp_path: Path) -> None:
    runs = {'source': _records(40.0), 'imse': _records(50.0, rounds=1)}
    out = plot_stream(runs, tmp_path / 'sub' / 'p.png', figsize=(8, 3), dpi=50)
    image = np.asarray(Image.open(out).convert('RGB')).astype(int)
    assert image.shape == (150, 400, 3)
    # matplotlib's first two line colours, C0 (31, 119, 180) and C1 (255, 127, 14), are both drawn.
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(image - colour).sum(axis=-1) < 30).sum() > 20, colour


def test_runs_on_different_streams_are_refused(tmp_path: Path) -> None:
    other = _records(40.0)
    other[1]['key'] = {'condition': 'snow', 'round': 1}
    with pytest.raises(ValueError, match='follow different streams'):
        plot_stream({'a': _records(40.0), 'b': other}, tmp_path / 'p.png')


def test_cli_plots_run_folders(tmp_path: Path) -> None:
    for name, offset in (('tent', 40.0), ('imse', 45.0)):
        writer = ResultsWriter(tmp_path / name)
        for record in _records(offset):
            writer.add(record['key'], record['metrics'], num_images=3, seconds=1.0)
    out = tmp_path / 'plot.png'
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'plot_results.py'), str(tmp_path / 'tent'),
                             str(tmp_path / 'imse' / 'results.jsonl'), '--out', str(out)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f'saved {out}'
    with Image.open(out) as image:
        assert image.size == (800, 450), 'the default 8 x 4.5 in at 100 dpi for a short stream'


def test_cli_labels_default_to_run_folder_names(tmp_path: Path, capsys) -> None:
    tool = load_tool('plot_results')
    (tmp_path / 'tent').mkdir()
    assert tool.run_label(tmp_path / 'tent') == 'tent'
    assert tool.run_label(tmp_path / 'imse' / 'results.jsonl') == 'imse'
    assert tool.run_label(tmp_path / 'cotta_seed1.jsonl') == 'cotta_seed1'
    with pytest.raises(SystemExit):
        tool.parse_args(['a', 'b', '--out', 'p.png', '--labels', 'only-one'])
    assert '--labels gives 1 labels for 2 runs' in capsys.readouterr().err
