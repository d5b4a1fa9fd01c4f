"""Plot a metric along the continual stream, one line per run, to compare methods segment by segment."""
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from imse_seg.errors import ConfigError

from .results import ROUND_FIELD, metric_value, plottable_columns, segment_label


def _stream_keys(runs: Mapping[str, Sequence[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """The segment keys of the longest run, after checking that all runs follow the same stream."""
    longest: List[Dict[str, Any]] = []
    for label, records in runs.items():
        keys = [record['key'] for record in records]
        for index, (key, other) in enumerate(zip(keys, longest)):
            if key != other:
                raise ValueError(f'run {label!r} has segment {key} at position {index} where another run '
                                 f'has {other}: the runs follow different streams')
        if len(keys) > len(longest):
            longest = keys
    return longest


def plot_stream(runs: Mapping[str, Sequence[Dict[str, Any]]],
                out: Union[str, Path],
                metric: str = 'mIoU',
                figsize: Optional[Tuple[float, float]] = None,
                dpi: int = 100) -> Path:
    """Save a PNG of ``metric`` for each segment of the stream, one line per run (label -> records).

    The x axis is the segment's position in the stream, labelled by its condition (the key fields other
    than ``round``); dashed vertical lines mark round boundaries, and the legend gives each run's mean over
    its segments (and their count when it has fewer). Runs may be of different lengths (one still running)
    but must follow the same stream. The default width grows with the number of segments; ``figsize``
    (inches) times ``dpi`` fixes the pixel size. ``metric`` is a metric or a per-class column
    (``per_class/car``, as in ``results.csv``); one that no run has is a :class:`ConfigError` listing
    those it could be. Drawn with matplotlib's Agg canvas, without pyplot's
    global state.
    """
    if not runs:
        raise ValueError('no runs to plot')
    keys = _stream_keys(runs)
    columns = plottable_columns(record for records in runs.values() for record in records)
    if metric not in columns:
        raise ConfigError(f'no run has a column {metric!r} to plot; plottable: {", ".join(columns) or "none"}')
    if figsize is None:
        figsize = (min(30.0, max(8.0, 0.25 * len(keys) + 2.0)), 4.5)
    figure = Figure(figsize=figsize, dpi=dpi, layout='constrained')
    axes = figure.subplots()
    for label, records in runs.items():
        values = [metric_value(record, metric) for record in records]
        values = [math.nan if value is None else value for value in values]
        present = [value for value in values if not math.isnan(value)]
        partial = f', {len(records)} of {len(keys)} segments' if len(records) < len(keys) else ''
        mean = f' (mean {sum(present) / len(present):.1f}{partial})' if present else ''
        axes.plot(range(len(values)), values, marker='o', markersize=3, linewidth=1.5, label=label + mean)

    top = blended_transform_factory(axes.transData, axes.transAxes)
    rounds = [key.get(ROUND_FIELD) for key in keys]
    starts = [i for i, value in enumerate(rounds) if i == 0 or value != rounds[i - 1]]
    for start, end in zip(starts, starts[1:] + [len(keys)]):
        if start > 0:
            axes.axvline(start - 0.5, color='0.5', linestyle='--', linewidth=0.8)
        if rounds[start] is not None:
            axes.text((start + end - 1) / 2, 0.98, f'{ROUND_FIELD} {rounds[start]}', transform=top,
                      ha='center', va='top', fontsize=8, color='0.3')

    axes.set_xticks(range(len(keys)), [segment_label(key) for key in keys], rotation=90,
                    fontsize=8 if len(keys) <= 48 else 6)
    axes.set_xlim(-0.5, len(keys) - 0.5)
    axes.set_ylabel(metric)
    axes.margins(y=0.15)
    axes.grid(axis='y', alpha=0.3)
    axes.legend(loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize=8)  # beside the axes, off the data
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format='png')
    return out
