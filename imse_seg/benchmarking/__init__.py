"""Cost measurement of inference and adaptation steps (issue 8): timing, cases, report."""
from .timing import CaseResult, cpu_model, interleaved_timings, measure_cases, peak_memory

__all__ = ['CaseResult', 'cpu_model', 'interleaved_timings', 'measure_cases', 'peak_memory']
