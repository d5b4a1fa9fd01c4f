"""Build everything a classification run needs from one config, stream it, and summarise the results.

Config fields (mmengine Python config; see ``configs/cls/``):

- ``model``: :func:`~imse_seg.cls.model.build_classifier` arguments (timm name, ``num_classes``, local
  ``checkpoint``, timm model arguments); ``transform``: overrides of timm's data config for the eval
  transform (e.g. ``input_size``, ``crop_pct``);
- ``data``: ``root`` (ImageNet-C layout), ``batch_size``, ``num_workers``;
- ``stream``: a stream setting of :mod:`imse_seg.cls.streams`;
- ``method``: an adaptation method of the ``imse_seg`` registry (:mod:`imse_seg.adaptation`); a code
  bank without ``full_batch_size`` gets the data's batch size (its statistics follow full batches only);
- ``seed``: torch seed (stream orders carry their own).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from timm.data import create_transform, resolve_model_data_config

from imse_seg.registry import build_method
from imse_seg.reporting import ResultsWriter, atomic_write_text, format_table
from imse_seg.reporting.plot import plot_stream

from .adaptive_classifier import AdaptiveClassifier
from .data import CorruptionFolders
from .loop import run_stream
from .model import build_classifier
from .streams import build_stream

logger = logging.getLogger('imse_seg.cls')


def run_classification(cfg: Mapping[str, Any], work_dir: str | Path, force: bool = False) -> dict[str, float]:
    """Run the configured stream into ``work_dir`` (results.jsonl/csv, plot, bank events); return means.

    The method, the data folders and the checkpoint are checked before any image is adapted on: a method
    of the segmentation path only, a missing folder, a class count that differs between data and model,
    or a wrong checkpoint fails at once.
    """
    torch.manual_seed(cfg.get('seed', 0))
    batch_size = cfg['data']['batch_size']
    method = build_method(with_bank_batch_size(cfg['method'], batch_size), 'classification')
    stream = build_stream(cfg['stream'])
    folders = CorruptionFolders(cfg['data']['root'], stream.folders())
    model_cfg = dict(cfg['model'])
    if len(folders.classes) != model_cfg['num_classes']:
        raise ValueError(f'{folders.root} holds {len(folders.classes)} classes, the model config has '
                         f'num_classes={model_cfg["num_classes"]}')
    model = build_classifier(**model_cfg)
    transform = create_transform(**resolve_model_data_config(model, args=dict(cfg.get('transform', {}))))
    blocks = stream.blocks(folders)
    writer = ResultsWriter(work_dir, force=force)
    classifier = AdaptiveClassifier(model, method)
    run_stream(classifier, blocks, transform, writer, batch_size=batch_size,
               num_workers=cfg['data'].get('num_workers', 0))
    return summarise(writer, classifier)


def with_bank_batch_size(method: Mapping[str, Any], batch_size: int) -> dict[str, Any]:
    """``method`` with its code bank's ``full_batch_size`` defaulting to the data's batch size."""
    method = dict(method)
    if method.get('code_bank') is not None:
        method['code_bank'] = {'full_batch_size': batch_size, **method['code_bank']}
    return method


def summarise(writer: ResultsWriter, classifier: AdaptiveClassifier) -> dict[str, float]:
    """Log the accuracy table, save the stream plot and the code bank's events; return the mean accuracy."""
    records = writer.records
    events = getattr(classifier.method, 'bank_events', lambda: [])()
    if events:
        atomic_write_text(writer.out_dir / 'bank_events.jsonl', ''.join(json.dumps(e) + '\n' for e in events))
    plot = plot_stream({writer.out_dir.name: records}, writer.out_dir / 'accuracy_stream.png', metric='accuracy')
    logger.info('accuracy per segment and round (%s, plot %s):\n%s', writer.out_dir, plot,
                format_table(records, metric='accuracy', rows='round'))
    values = [r['metrics']['accuracy'] for r in records if r['metrics']['accuracy'] is not None]
    return {'accuracy': sum(values) / len(values) if values else float('nan'), 'segments': len(records)}
