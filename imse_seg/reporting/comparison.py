"""The table that compares methods run on the same continual stream: one row per method.

Per run it gives the metric's mean over rounds for each condition (the key fields other than ``round``),
the mean of the first and of the last round (does the method hold up or degrade as the stream repeats?),
the mean over every segment, and the wall time per image. Framework-free, like the rest of
:mod:`imse_seg.reporting`.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from .results import ROUND_FIELD, mean_of_present, segment_label


def summarise_run(records: Sequence[Mapping[str, Any]], metric: str = 'mIoU') -> dict[str, Any]:
    """``{'conditions': {condition: mean over rounds}, 'first_round', 'last_round', 'mean',
    'seconds_per_image', 'rounds'}`` of one run's records (segments with no value are left out)."""
    if not records:
        raise ValueError('no results to summarise')
    by_condition: dict[str, list[float | None]] = {}
    by_round: dict[Any, list[float | None]] = {}
    for record in records:
        value = record['metrics'].get(metric)
        by_condition.setdefault(segment_label(record['key']), []).append(value)
        by_round.setdefault(record['key'].get(ROUND_FIELD), []).append(value)
    rounds = list(by_round)
    images = sum(record['num_images'] for record in records)
    return dict(
        conditions={name: mean_of_present(values) for name, values in by_condition.items()},
        first_round=mean_of_present(by_round[rounds[0]]),
        last_round=mean_of_present(by_round[rounds[-1]]),
        mean=mean_of_present([record['metrics'].get(metric) for record in records]),
        seconds_per_image=sum(record['seconds'] for record in records) / images if images else None,
        rounds=len(rounds))


def format_comparison(runs: Mapping[str, Sequence[Mapping[str, Any]]], metric: str = 'mIoU',
                      digits: int = 1) -> str:
    """A markdown table of :func:`summarise_run` for each ``label -> records`` (runs of the same stream).

    Columns: method, each condition (mean over rounds), ``round 1``, ``round N`` (the last; both only when
    the stream has more than one round, where they differ), ``mean`` (all segments) and ``s/image``. Runs
    with different conditions or round counts are refused, since their means would not be comparable.
    """
    if not runs:
        raise ValueError('no runs to compare')
    summaries = {label: summarise_run(records, metric) for label, records in runs.items()}
    first_label, first = next(iter(summaries.items()))
    for label, summary in summaries.items():
        if list(summary['conditions']) != list(first['conditions']) or summary['rounds'] != first['rounds']:
            raise ValueError(f'run {label!r} ({summary["rounds"]} rounds of {list(summary["conditions"])}) '
                             f'and run {first_label!r} ({first["rounds"]} rounds of '
                             f'{list(first["conditions"])}) are not the same stream')

    def fmt(value: float | None, places: int = digits) -> str:
        return '-' if value is None else f'{value:.{places}f}'

    several = first['rounds'] > 1
    rounds = ['round 1', f'round {first["rounds"]}'] if several else []
    header = ['method', *first['conditions'], *rounds, 'mean', 's/image']
    lines = [header, ['---'] + ['---:'] * (len(header) - 1)]
    for label, summary in summaries.items():
        by_round = [fmt(summary['first_round']), fmt(summary['last_round'])] if several else []
        lines.append([label, *(fmt(value) for value in summary['conditions'].values()), *by_round,
                      fmt(summary['mean']), fmt(summary['seconds_per_image'], 3)])
    return '\n'.join('| ' + ' | '.join(line) + ' |' for line in lines)


def format_per_class(runs: Mapping[str, Sequence[Mapping[str, Any]]], digits: int = 1) -> str:
    """A markdown table of each class's IoU averaged over every segment of each run: classes as rows, runs
    as columns, the classes in the order of the first run's records."""
    if not runs:
        raise ValueError('no runs to compare')
    classes = list(next(iter(runs.values()))[0]['per_class'])
    lines = ['| class | ' + ' | '.join(runs) + ' |', '| --- |' + ' ---: |' * len(runs)]
    for name in classes:
        cells = [mean_of_present([record['per_class'].get(name) for record in records]) for records in runs.values()]
        lines.append(f'| {name} | ' + ' | '.join('-' if c is None else f'{c:.{digits}f}' for c in cells) + ' |')
    return '\n'.join(lines)
