"""Results of continual streams: the per-segment writer, the final table and (in ``.plot``) the stream plot.

Framework-free (no mmseg), so the segmentation and classification paths share it. The plot lives in
:mod:`imse_seg.reporting.plot`, imported on demand, so that writing results does not load matplotlib.
"""
from .results import (RESULTS_CSV, RESULTS_JSONL, ROUND_FIELD, ResultsWriter, atomic_write, atomic_write_text,
                      format_class_table, format_table, load_results, mean_of_present, segment_label)

__all__ = ['RESULTS_CSV', 'RESULTS_JSONL', 'ROUND_FIELD', 'ResultsWriter', 'atomic_write',
           'atomic_write_text', 'format_class_table', 'format_table', 'load_results', 'mean_of_present',
           'segment_label']
