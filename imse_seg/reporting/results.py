"""Results of a continual stream, one record per finished segment, written so that a crash loses nothing.

A *segment* is one stretch of the stream with its own evaluation: ``(condition, round)`` for the
Cityscapes -> ACDC stream, ``(corruption, severity, round)`` for the classification streams. Its key is an
ordered mapping of key fields, so the same writer, table and plot serve both.
"""
import csv
import io
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterable, List, Mapping, Optional, Union

RESULTS_JSONL = 'results.jsonl'
RESULTS_CSV = 'results.csv'
ROUND_FIELD = 'round'
"""The key field that numbers the passes over a repeated stream."""
_COUNTS = ('num_images', 'num_skipped', 'seconds')


def atomic_write_text(path: Union[str, Path], text: str) -> None:
    """Replace ``path`` by ``text`` so that a reader (or a crash) sees the old file or the new, never half.

    See :func:`atomic_write` for how.
    """
    atomic_write(path, lambda file: file.write(text.encode('utf-8')))


def atomic_write(path: Union[str, Path], write: Callable[[BinaryIO], Any]) -> None:
    """Replace ``path`` by what ``write`` writes into a binary file, atomically (text, a torch checkpoint).

    The bytes go to a temporary file in the same folder, are flushed to disk (``fsync``) and then the file
    is renamed over ``path`` with ``os.replace``, which is atomic on POSIX and Windows; the temporary file
    is removed if anything fails before the rename, and the folder is synced after it.
    """
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, 'wb') as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if hasattr(os, 'O_DIRECTORY'):
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load_results(path: Union[str, Path]) -> List[Dict[str, Any]]:
    """Read the records of a run folder (its ``results.jsonl``) or of a ``.jsonl`` file, in stream order."""
    path = Path(path)
    if path.is_dir():
        if not (path / RESULTS_JSONL).is_file():
            raise FileNotFoundError(f'{path} holds no {RESULTS_JSONL}: it is not a run folder (or the run '
                                    'has finished no segment yet)')
        path = path / RESULTS_JSONL
    elif not path.is_file():
        raise FileNotFoundError(f'{path} does not exist: give a run folder (holding {RESULTS_JSONL}) or a '
                                '.jsonl results file')
    records = []
    with open(path, encoding='utf-8') as file:
        for line_number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f'{path}:{line_number} is not a JSON record: {error}') from error
    return records


def _number(value: float) -> Optional[float]:
    """A float for JSON; NaN (e.g. the IoU of a class absent from a segment) becomes ``null``."""
    value = float(value)
    return None if math.isnan(value) else value


class ResultsWriter:
    """Records the metrics of each finished segment in ``results.jsonl`` and ``results.csv`` of a run folder.

    Every :meth:`add` rewrites both files atomically (see :func:`atomic_write_text`): the JSON-lines file
    gains one line per segment and is the record of truth; the CSV holds the same records as one row per
    segment for spreadsheets. A folder that already holds results is refused unless ``resume=True`` (keep
    its records and continue the stream; :meth:`__contains__` tells which segments are done) or
    ``force=True`` (delete them and start over), the library side of ``--resume`` / ``--force``. Only
    one process (rank 0) should write.

    Args:
        out_dir: The run folder; created if missing.
        resume: Continue from the records already in ``out_dir``.
        force: Delete the results already in ``out_dir``.
    """

    def __init__(self, out_dir: Union[str, Path], *, resume: bool = False, force: bool = False) -> None:
        if resume and force:
            raise ValueError('resume and force exclude each other: continue the results, or delete them')
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.out_dir / RESULTS_JSONL
        self.csv_path = self.out_dir / RESULTS_CSV
        existing = [path for path in (self.jsonl_path, self.csv_path) if path.exists()]
        self._records: List[Dict[str, Any]] = []
        if existing and force:
            for path in existing:
                path.unlink()
        elif existing and resume:
            if self.jsonl_path.exists():
                self._records = load_results(self.jsonl_path)
        elif existing:
            names = ', '.join(path.name for path in existing)
            raise FileExistsError(f'{self.out_dir} already holds results ({names}); pass --resume '
                                  '(resume=True) to continue that run or --force (force=True) to '
                                  'overwrite it')

    @property
    def records(self) -> List[Dict[str, Any]]:
        """The records written so far, in stream order (a copy)."""
        return [dict(record) for record in self._records]

    def __len__(self) -> int:
        return len(self._records)

    def reset(self, records: List[Dict[str, Any]]) -> None:
        """Replace the records by ``records`` and rewrite both files (resuming from a checkpoint that was
        written when the run had recorded just these)."""
        self._write([dict(record) for record in records])

    def __contains__(self, key: Mapping[str, Any]) -> bool:
        """Whether the segment with this key is already recorded (to skip it when resuming)."""
        return any(record['key'] == dict(key) for record in self._records)

    def add(self,
            key: Mapping[str, Any],
            metrics: Mapping[str, float],
            *,
            num_images: int,
            seconds: float,
            num_skipped: int = 0,
            per_class: Optional[Mapping[str, float]] = None,
            counts: Optional[Mapping[str, int]] = None) -> Dict[str, Any]:
        """Record one finished segment and rewrite both files; returns the record as written.

        Args:
            key: The segment's key fields in order, e.g. ``{'condition': 'fog', 'round': 1}``; every
                segment of a run has the same fields in the same order.
            metrics: Scalar metrics, e.g. ``{'mIoU': 56.7, 'aAcc': 90.1}``.
            num_images: Images evaluated in the segment.
            seconds: Wall time of the segment.
            num_skipped: Images of the segment that were not evaluated.
            per_class: Per-class values (the IoU of each class for segmentation); NaN is written as null.
            counts: Named event counts of the segment (e.g. ``guard_events``, ``bad_label``), written as
                ``counts`` in the JSON record and as one CSV column each; left out of the record if None.
        """
        key = dict(key)
        if self._records and list(key) != list(self._records[0]['key']):
            raise ValueError(f'segment key fields {list(key)} differ from those of this run '
                             f'{list(self._records[0]["key"])}')
        if key in self:
            raise ValueError(f'segment {key} is already recorded in {self.jsonl_path}')
        record = dict(
            index=len(self._records),
            key=key,
            metrics={name: _number(value) for name, value in metrics.items()},
            per_class={name: _number(value) for name, value in (per_class or {}).items()},
            num_images=int(num_images),
            num_skipped=int(num_skipped),
            seconds=round(float(seconds), 3))
        if counts is not None:
            record['counts'] = {name: int(value) for name, value in counts.items()}
        self._write(self._records + [record])
        return dict(record)

    def _write(self, records: List[Dict[str, Any]]) -> None:
        """Rewrite both files with ``records`` (the JSON lines first: they are the record of truth)."""
        lines = ''.join(json.dumps(r, allow_nan=False) + '\n' for r in records)
        atomic_write_text(self.jsonl_path, lines)
        self._records = records
        atomic_write_text(self.csv_path, _to_csv(records))


def _to_csv(records: List[Dict[str, Any]]) -> str:
    """One row per segment: index, key fields, metrics, counts, event counts, ``per_class/<name>`` columns."""
    metric_names = _union(record['metrics'] for record in records)
    class_names = _union(record['per_class'] for record in records)
    count_names = _union(record.get('counts', {}) for record in records)
    if not records:
        return ''
    header = (['index', *records[0]['key'], *metric_names, *_COUNTS, *count_names]
              + [f'per_class/{name}' for name in class_names])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(header)
    for record in records:
        writer.writerow([record['index'], *record['key'].values(),
                         *(_cell(record['metrics'].get(name)) for name in metric_names),
                         *(record[name] for name in _COUNTS),
                         *(record.get('counts', {}).get(name, '') for name in count_names),
                         *(_cell(record['per_class'].get(name)) for name in class_names)])
    return buffer.getvalue()


PER_CLASS = 'per_class/'
"""Prefix of the per-class columns: ``per_class/<class name>``, as in ``results.csv``."""


def plottable_columns(records: Iterable[Mapping[str, Any]]) -> List[str]:
    """The names :func:`metric_value` reads in ``records``: the metrics, then ``per_class/<name>``."""
    records = list(records)
    return (_union(record['metrics'] for record in records)
            + [PER_CLASS + name for name in _union(record.get('per_class', {}) for record in records)])


def metric_value(record: Mapping[str, Any], column: str) -> Optional[float]:
    """A record's value of ``column`` (a metric, or ``per_class/<name>``); None if it has none."""
    if column.startswith(PER_CLASS) and column not in record['metrics']:
        return record.get('per_class', {}).get(column[len(PER_CLASS):])
    return record['metrics'].get(column)


def _union(mappings: Iterable[Mapping[str, Any]]) -> List[str]:
    """The names of all mappings, in order of first appearance."""
    return list(dict.fromkeys(name for mapping in mappings for name in mapping))


def segment_label(key: Mapping[str, Any], without: str = ROUND_FIELD) -> str:
    """A segment's key fields other than ``without`` joined by ``/``: ``fog``, ``shot_noise/5``."""
    return '/'.join(str(value) for field, value in key.items() if field != without)


def mean_of_present(values: Iterable[Optional[float]]) -> Optional[float]:
    """The mean of the values that are not None (segments not run, NaN scores); None if there are none."""
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


def _cell(value: Optional[float]) -> str:
    return '' if value is None else repr(value)


def format_table(records: List[Dict[str, Any]],
                 metric: str = 'mIoU',
                 rows: str = 'round',
                 style: str = 'text',
                 digits: int = 1) -> str:
    """The final table of one metric: a row per ``rows`` value (rounds), a column per segment otherwise.

    Columns are the other key fields joined by ``/`` (the condition for ACDC, ``corruption/severity`` for
    classification), in stream order. A ``mean`` column averages each row, a ``mean`` row averages each
    column, and their corner is the mean over all segments; cells of segments not yet run show ``-`` and
    are left out of the means. ``style`` is ``'text'`` (aligned, for logs) or ``'markdown'``.
    """
    if style not in ('text', 'markdown'):
        raise ValueError(f"style must be 'text' or 'markdown', not {style!r}")
    if not records:
        raise ValueError('no results to tabulate')
    cells: Dict[tuple, float] = {}
    row_labels: Dict[str, None] = {}
    column_labels: Dict[str, None] = {}
    for record in records:
        key = record['key']
        if rows not in key:
            raise KeyError(f'rows field {rows!r} is not a key field of {key}')
        if metric not in record['metrics']:
            raise KeyError(f'metric {metric!r} is not among {list(record["metrics"])} of segment {key}')
        row = str(key[rows])
        column = segment_label(key, without=rows)
        if (row, column) in cells:
            raise ValueError(f'two segments share {rows} {row} and column {column!r}')
        row_labels[row] = column_labels[column] = None
        cells[row, column] = record['metrics'][metric]

    def fmt(value: Optional[float]) -> str:
        return '-' if value is None else f'{value:.{digits}f}'

    table = [[rows, *column_labels, 'mean']]
    for row in row_labels:
        values = [cells.get((row, column)) for column in column_labels]
        table.append([row, *map(fmt, values), fmt(mean_of_present(values))])
    column_means = [mean_of_present([cells.get((row, column)) for row in row_labels])
                    for column in column_labels]
    table.append(['mean', *map(fmt, column_means), fmt(mean_of_present(cells.values()))])
    return _render(table, style)


def format_class_table(records: List[Dict[str, Any]], digits: int = 1) -> str:
    """The per-class values (IoU) of a run, once: a row per class, a column per segment label (the key
    fields but ``round``, e.g. the condition) holding the mean over rounds, and a ``mean`` column.

    Segments without a value for a class (NaN: absent from prediction and label) are left out of its
    means; a class with none shows ``-``.
    """
    if not records:
        raise ValueError('no results to tabulate')
    columns = list(dict.fromkeys(segment_label(record['key']) for record in records))
    table = [['class', *columns, 'mean']]
    for name in _union(record['per_class'] for record in records):
        by_column = {column: mean_of_present(record['per_class'].get(name) for record in records
                                             if segment_label(record['key']) == column)
                     for column in columns}
        every = [record['per_class'].get(name) for record in records]
        table.append([name, *(_fixed(by_column[column], digits) for column in columns),
                      _fixed(mean_of_present(every), digits)])
    return _render(table, 'text')


def _fixed(value: Optional[float], digits: int) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def _render(table: List[List[str]], style: str) -> str:
    """Cells aligned in columns (first left, the others right): plain text, or a markdown table."""
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    aligned = [[line[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(line[1:], widths[1:])]
               for line in table]
    if style == 'text':
        return '\n'.join('  '.join(line) for line in aligned)
    rule = ['-' * widths[0]] + ['-' * (width - 1) + ':' for width in widths[1:]]
    return '\n'.join('| ' + ' | '.join(line) + ' |' for line in [aligned[0], rule, *aligned[1:]])
