"""Timing and peak memory of callables, on CPU or one CUDA device, robust to a shared machine.

Cases run interleaved round by round (after warm-up rounds), so load from other jobs falls on all of them
alike; each case reports the median wall time and, on CUDA, the median time between CUDA events recorded
around the call (the device's own time for the queued work). Peak memory is measured in one further call
per case: on CUDA ``torch.cuda.max_memory_allocated`` above what was allocated before the call; on CPU the
highest running sum of the allocations and frees torch's CPU allocator reports to the profiler during the
call (process RSS and ``tracemalloc`` cannot see torch's allocations reliably: freed blocks stay in the
C allocator).
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from imse_seg.errors import ConfigError

Case = Callable[[], object]


@dataclass
class CaseResult:
    """One case's measurements: wall seconds per run, CUDA-event seconds per run (CUDA only), peak bytes."""
    wall_s: list[float] = field(default_factory=list)
    device_s: list[float] = field(default_factory=list)
    peak_bytes: int | None = None

    @property
    def wall_median(self) -> float:
        return statistics.median(self.wall_s)

    @property
    def device_median(self) -> float | None:
        return statistics.median(self.device_s) if self.device_s else None

    def as_dict(self) -> dict:
        return dict(wall_median_s=self.wall_median, device_median_s=self.device_median,
                    peak_bytes=self.peak_bytes, wall_s=self.wall_s, device_s=self.device_s)


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (or what ``platform`` knows)."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def available_device(name: str) -> torch.device:
    """``torch.device(name)``, refusing (:class:`~imse_seg.errors.ConfigError`) a CUDA device torch cannot
    see, before any model is built (torch would fail later, deep in the first ``.to``)."""
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ConfigError(f'--device {name}: torch {torch.__version__} sees no CUDA GPU '
                          f'(torch.cuda.is_available() is False; CUDA build: {torch.version.cuda}); '
                          'run with --device cpu')
    return device


def device_name(device: torch.device) -> str:
    """A readable name of the device the cases run on."""
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'{cpu_model()} ({torch.get_num_threads()} torch threads, ' \
           f'OMP_WAIT_POLICY={os.environ.get("OMP_WAIT_POLICY", "unset")})'


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class Repeated:
    """A case that calls ``fn`` ``images`` times per run; its times are reported per call of ``fn``.

    For a method whose steps differ in a period (``sam_interval`` k: one SAM step, then k - 1 plain ones),
    one run covers the whole period, so that the median is the mean cost of a step, not that of the
    commonest step."""

    def __init__(self, fn: Case, images: int) -> None:
        self.fn, self.images = fn, images

    def __call__(self) -> None:
        for _ in range(self.images):
            self.fn()


def interleaved_timings(cases: dict[str, Case], device: torch.device, warmup: int,
                        repeats: int) -> dict[str, CaseResult]:
    """Run every case ``warmup + repeats`` times, round by round; record the last ``repeats`` runs (a
    :class:`Repeated` case's divided by its calls)."""
    results = {name: CaseResult() for name in cases}
    cuda = device.type == 'cuda'
    for round_ in range(warmup + repeats):
        for name, fn in cases.items():
            _synchronize(device)
            if cuda:
                start_event = torch.cuda.Event(enable_timing=True)
                end_event = torch.cuda.Event(enable_timing=True)
                start_event.record()
            start = time.perf_counter()
            fn()
            if cuda:
                end_event.record()
            _synchronize(device)
            calls = fn.images if isinstance(fn, Repeated) else 1
            elapsed = (time.perf_counter() - start) / calls
            if round_ >= warmup:
                results[name].wall_s.append(elapsed)
                if cuda:
                    results[name].device_s.append(start_event.elapsed_time(end_event) / 1000 / calls)
    return results


def _cpu_peak_bytes(fn: Case) -> int:
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    allocations: list[tuple[int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == 'cpu':
            allocations.append((node.start_time_ns, node.extra_fields.alloc_size))
        stack.extend(node.children)
    running = peak = 0
    for _, size in sorted(allocations):
        running += size
        peak = max(peak, running)
    return peak


def peak_memory(fn: Case, device: torch.device) -> int:
    """Bytes allocated by torch during one call of ``fn`` at its peak, above what was allocated before."""
    if device.type == 'cuda':
        _synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    return _cpu_peak_bytes(fn)


def measure_cases(cases: dict[str, Case], device: torch.device, warmup: int,
                  repeats: int) -> dict[str, CaseResult]:
    """Interleaved timings of ``cases``, then one peak-memory call of each."""
    results = interleaved_timings(cases, device, warmup, repeats)
    for name, fn in cases.items():
        results[name].peak_bytes = peak_memory(fn, device)
    return results
