"""ResultsWriter and format_table: atomic files, resume, refusal, and a table checked by hand."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imse_seg.reporting import ResultsWriter, atomic_write_text, format_table, load_results

# mIoU of (condition, round): round means 50, 55; condition means 45, 50, 55, 60; overall 52.5.
MIOU = {('fog', 1): 50.0, ('night', 1): 40.0, ('rain', 1): 55.0, ('snow', 1): 55.0,
        ('fog', 2): 40.0, ('night', 2): 60.0, ('rain', 2): 55.0, ('snow', 2): 65.0}


def _add(writer: ResultsWriter, condition: str, round_: int) -> dict:
    metrics = {'mIoU': MIOU[condition, round_], 'aAcc': 90.0}
    return writer.add({'condition': condition, 'round': round_}, metrics,
                      per_class={'road': 97.5, 'train': float('nan')}, num_images=400, num_skipped=1,
                      seconds=12.3456)


def _fill(writer: ResultsWriter) -> None:
    for round_ in (1, 2):
        for condition in ('fog', 'night', 'rain', 'snow'):
            _add(writer, condition, round_)


def test_each_segment_is_one_json_line_and_one_csv_row(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path)
    _add(writer, 'fog', 1)
    _add(writer, 'night', 1)
    lines = (tmp_path / 'results.jsonl').read_text().splitlines()
    assert [json.loads(line) for line in lines][1] == {
        'index': 1, 'key': {'condition': 'night', 'round': 1}, 'metrics': {'mIoU': 40.0, 'aAcc': 90.0},
        'per_class': {'road': 97.5, 'train': None}, 'num_images': 400, 'num_skipped': 1, 'seconds': 12.346}
    with open(tmp_path / 'results.csv', newline='') as file:
        rows = list(csv.reader(file))
    assert rows == [
        ['index', 'condition', 'round', 'mIoU', 'aAcc', 'num_images', 'num_skipped', 'seconds',
         'per_class/road', 'per_class/train'],
        ['0', 'fog', '1', '50.0', '90.0', '400', '1', '12.346', '97.5', ''],
        ['1', 'night', '1', '40.0', '90.0', '400', '1', '12.346', '97.5', '']]
    assert load_results(tmp_path) == writer.records


def test_a_crash_before_the_rename_keeps_the_previous_files(tmp_path: Path, monkeypatch) -> None:
    writer = ResultsWriter(tmp_path)
    _add(writer, 'fog', 1)
    before = {name: (tmp_path / name).read_bytes() for name in ('results.jsonl', 'results.csv')}

    def crash(src, dst):
        assert Path(src).read_text().count('\n') == 2, 'the temporary file holds both records'
        raise OSError('disk gone')
    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(OSError, match='disk gone'):
        _add(writer, 'night', 1)
    monkeypatch.undo()

    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ['results.csv', 'results.jsonl']
    assert len(writer) == 1
    _add(writer, 'night', 1)
    assert [r['key']['condition'] for r in load_results(tmp_path)] == ['fog', 'night']


def test_atomic_write_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / 'notes.txt'
    atomic_write_text(path, 'a much longer first version\n')
    atomic_write_text(path, 'short\n')
    assert path.read_text() == 'short\n'


def test_a_folder_with_results_is_refused_without_resume_or_force(tmp_path: Path) -> None:
    _add(ResultsWriter(tmp_path), 'fog', 1)
    with pytest.raises(FileExistsError, match=r'already holds results \(results.jsonl, results.csv\); '
                                              r'pass --resume .* or --force'):
        ResultsWriter(tmp_path)
    with pytest.raises(ValueError, match='exclude each other'):
        ResultsWriter(tmp_path, resume=True, force=True)


def test_resume_continues_the_stream(tmp_path: Path) -> None:
    first = ResultsWriter(tmp_path)
    _add(first, 'fog', 1)
    _add(first, 'night', 1)

    resumed = ResultsWriter(tmp_path, resume=True)
    assert {'condition': 'night', 'round': 1} in resumed
    assert {'condition': 'rain', 'round': 1} not in resumed
    with pytest.raises(ValueError, match='already recorded'):
        _add(resumed, 'night', 1)
    assert _add(resumed, 'rain', 1)['index'] == 2
    assert [r['key']['condition'] for r in load_results(tmp_path)] == ['fog', 'night', 'rain']
    with open(tmp_path / 'results.csv', newline='') as file:
        assert [row['condition'] for row in csv.DictReader(file)] == ['fog', 'night', 'rain']


def test_key_fields_must_match_the_run(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path)
    _add(writer, 'fog', 1)
    with pytest.raises(ValueError, match='key fields'):
        writer.add({'corruption': 'fog', 'severity': 5, 'round': 1}, {'mIoU': 1.0}, num_images=1, seconds=1.0)


def test_force_starts_over(tmp_path: Path) -> None:
    _add(ResultsWriter(tmp_path), 'fog', 1)
    writer = ResultsWriter(tmp_path, force=True)
    assert len(writer) == 0 and not (tmp_path / 'results.jsonl').exists()
    _add(writer, 'snow', 1)
    assert [r['key']['condition'] for r in load_results(tmp_path)] == ['snow']


def test_table_text_with_means_computed_by_hand(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path)
    _fill(writer)
    assert format_table(writer.records) == '\n'.join([
        'round   fog  night  rain  snow  mean',
        '1      50.0   40.0  55.0  55.0  50.0',
        '2      40.0   60.0  55.0  65.0  55.0',
        'mean   45.0   50.0  55.0  60.0  52.5'])


def test_table_markdown_and_a_missing_segment(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path)
    _fill(writer)
    records = writer.records[:-1]
    assert format_table(records, style='markdown', digits=2) == '\n'.join([
        '| round |   fog | night |  rain |  snow |  mean |',
        '| ----- | ----: | ----: | ----: | ----: | ----: |',
        '| 1     | 50.00 | 40.00 | 55.00 | 55.00 | 50.00 |',
        '| 2     | 40.00 | 60.00 | 55.00 |     - | 51.67 |',
        '| mean  | 45.00 | 50.00 | 55.00 | 55.00 | 50.71 |'])


def test_table_columns_join_the_other_key_fields() -> None:
    records = [{'key': {'corruption': c, 'severity': 5, 'round': r}, 'metrics': {'error': e}}
               for (c, r, e) in [('gaussian', 1, 70.0), ('shot', 1, 60.0),
                                 ('gaussian', 2, 50.0), ('shot', 2, 40.0)]]
    assert format_table(records, metric='error').splitlines() == [
        'round  gaussian/5  shot/5  mean',
        '1            70.0    60.0  65.0',
        '2            50.0    40.0  45.0',
        'mean         60.0    50.0  55.0']
    with pytest.raises(KeyError, match="metric 'mIoU'"):
        format_table(records)


def test_reporting_works_without_mmseg() -> None:
    # The classification path uses it too: with mmseg made unimportable, it must still import and work.
    code = ('import sys; sys.modules["mmseg"] = None; import imse_seg.reporting, imse_seg.reporting.plot; '
            'from imse_seg.reporting import format_table; '
            'print(sorted(m for m in sys.modules if m.split(".")[0] == "mmseg" and sys.modules[m]))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'
