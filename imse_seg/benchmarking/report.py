"""What a benchmark run reports: ratios to plain inference, the issue's targets, a table, the JSON record."""
from __future__ import annotations

import statistics
from typing import Mapping

from .timing import CaseResult

BASELINE = 'inference'
STEP_BASELINE = 'step:tent'  # issue 21's yardstick: the floor of an update, one forward and one backward
# (name, numerator, denominator, limit): the targets as ratios of paired per-round times.
TARGETS = (
    ('stag_over_tent', 'step:tent_stag', 'step:tent', 1.05),
    ('stag_over_imse', 'step:imse_stag', 'step:imse', 1.05),
    ('spectral_over_plain_inference', 'spectral_inference', 'inference', 1.03),
    ('imse_stag_over_tent', 'step:imse_stag', 'step:tent', 1.5),
    ('imse_stag_over_cotta', 'step:imse_stag', 'step:cotta', 1.0),
)


def paired_ratio(results: Mapping[str, CaseResult], numerator: str, denominator: str) -> float:
    """Median over rounds of ``numerator / denominator`` (cases of one round ran back to back)."""
    pairs = zip(results[numerator].wall_s, results[denominator].wall_s)
    return statistics.median(n / d for n, d in pairs)


def ratios_to_inference(results: Mapping[str, CaseResult]) -> dict[str, float]:
    return {name: paired_ratio(results, name, BASELINE) for name in results}


def ratios_to_tent(results: Mapping[str, CaseResult]) -> dict[str, float]:
    """Every step case over a TENT step of the same round (empty without a TENT step)."""
    if STEP_BASELINE not in results:
        return {}
    return {name: paired_ratio(results, name, STEP_BASELINE) for name in results if name.startswith('step:')}


def targets(results: Mapping[str, CaseResult]) -> dict[str, dict]:
    """Each target whose cases were measured: the ratio, its limit, and whether it is met (ratio < limit,
    or <= for the 1.5x TENT bound of issue 21)."""
    met = {}
    for name, numerator, denominator, limit in TARGETS:
        if numerator in results and denominator in results:
            ratio = paired_ratio(results, numerator, denominator)
            passed = ratio <= limit if name == 'imse_stag_over_tent' else ratio < limit
            met[name] = dict(ratio=ratio, limit=limit, passed=passed)
    return met


def format_table(results: Mapping[str, CaseResult]) -> str:
    """Median ms (wall; CUDA events when measured), ratio to inference, peak MB and, for the steps, the
    ratio to a TENT step, one line per case."""
    ratios, to_tent = ratios_to_inference(results), ratios_to_tent(results)
    cuda = any(r.device_s for r in results.values())
    header = f'{"case":28s} {"wall ms":>10s}' + (f' {"cuda ms":>10s}' if cuda else '') + \
        f' {"x inference":>12s} {"peak MB":>9s}' + (f' {"x TENT step":>12s}' if to_tent else '')
    lines = [header]
    for name, result in results.items():
        line = f'{name:28s} {1000 * result.wall_median:10.2f}'
        if cuda:
            line += f' {1000 * result.device_median:10.2f}'
        peak = '' if result.peak_bytes is None else f'{result.peak_bytes / 2 ** 20:.1f}'
        line += f' {ratios[name]:12.3f} {peak:>9s}'
        if name in to_tent:
            line += f' {to_tent[name]:12.3f}'
        lines.append(line)
    return '\n'.join(lines)


def format_targets(met: Mapping[str, dict]) -> str:
    return '\n'.join(f'{name:32s} {t["ratio"]:.3f} (limit {t["limit"]}) {"PASS" if t["passed"] else "FAIL"}'
                     for name, t in met.items())


def run_record(batch: int, size: tuple[int, int], results: Mapping[str, CaseResult]) -> dict:
    """The JSON record of one input shape."""
    return dict(batch=batch, height=size[0], width=size[1],
                cases={name: result.as_dict() for name, result in results.items()},
                ratio_to_inference=ratios_to_inference(results), ratio_to_tent=ratios_to_tent(results),
                targets=targets(results))
