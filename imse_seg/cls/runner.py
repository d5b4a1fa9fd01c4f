"""Build everything a classification run needs from one config, stream it, and summarise the results.

Config fields (mmengine Python config; see ``configs/cls/``):

- ``model``: :func:`~imse_seg.cls.model.build_classifier` arguments (timm name, ``num_classes``, local
  ``checkpoint``, timm model arguments); ``transform``: overrides of timm's data config for the eval
  transform (e.g. ``input_size``, ``crop_pct``);
- ``data``: ``source`` (a data source of :mod:`imse_seg.cls.data`: ImageNet-C folders, CIFAR-10-C arrays
  or a clean folder), ``batch_size``, ``num_workers``;
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

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform, resolve_model_data_config

from imse_seg.registry import build_method
from imse_seg.reporting import ResultsWriter, atomic_write_text, format_table
from imse_seg.reporting.plot import plot_stream

from .adaptive_classifier import AdaptiveClassifier
from .data import build_data_source
from .loop import run_stream
from .resume import ClassificationCheckpoint
from .model import build_classifier
from .streams import build_stream

logger = logging.getLogger('imse_seg.cls')


def run_classification(cfg: Mapping[str, Any], work_dir: str | Path, force: bool = False,
                       resume: bool = False) -> dict[str, float]:
    """Run the configured stream into ``work_dir`` (results.jsonl/csv, plot, bank events); return means.

    The stream state is saved after every block (:class:`~imse_seg.cls.resume.ClassificationCheckpoint`);
    with ``resume`` the run continues from it to the results of an uninterrupted run.

    The method, the data folders and the checkpoint are checked before any image is adapted on: a method
    of the segmentation path only, a missing folder, a class count that differs between data and model,
    or a wrong checkpoint fails at once.
    """
    torch.manual_seed(cfg.get('seed', 0))
    batch_size = cfg['data']['batch_size']
    method = build_method(with_bank_batch_size(cfg['method'], batch_size), 'classification')
    stream = build_stream(cfg['stream'])
    source = build_data_source(cfg['data']['source'], stream.folders())
    model_cfg = dict(cfg['model'])
    if len(source.classes) != model_cfg['num_classes']:
        raise ValueError(f'{source.root} holds {len(source.classes)} classes, the model config has '
                         f'num_classes={model_cfg["num_classes"]}')
    model = build_classifier(**model_cfg)
    transform = create_transform(**resolve_model_data_config(model, args=dict(cfg.get('transform', {}))))
    blocks = stream.blocks(source)
    writer = ResultsWriter(work_dir, force=force, resume=resume)
    classifier = AdaptiveClassifier(model, method)
    checkpoint = ClassificationCheckpoint(work_dir, cfg, model)
    start, tallies = checkpoint.load(classifier, writer) if resume else (0, {})
    run_stream(classifier, blocks, transform, writer, batch_size=batch_size, load=source.load,
               num_workers=cfg['data'].get('num_workers', 0), start=start, tallies=tallies,
               checkpoint=lambda next_block, open_tallies: checkpoint.save(classifier, writer, next_block,
                                                                           open_tallies))
    return summarise(writer, classifier)


def dry_run_classification(cfg: Mapping[str, Any], batch_size: int = 2) -> dict[str, Any]:
    """Build the model (with its checkpoint), the method and the eval transform, and adapt once on random
    images; read no data. A quick check of a config (e.g. in CI) before a long stream.

    Returns a summary: method, adapted parameter count, input and logits shapes, and whether the adapted
    parameters moved.
    """
    torch.manual_seed(cfg.get('seed', 0))
    method = build_method(with_bank_batch_size(cfg['method'], batch_size), 'classification')
    model = build_classifier(**dict(cfg['model']))
    data_config = resolve_model_data_config(model, args=dict(cfg.get('transform', {})))
    transform = create_transform(**data_config)
    _, height, width = data_config['input_size']
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
              for _ in range(batch_size)]
    inputs = torch.stack([transform(image) for image in images])
    classifier = AdaptiveClassifier(model, method)
    trained = method.adapted_parameters()
    before = [p.detach().clone() for p in trained]
    logits = classifier(inputs)
    summary = dict(method=type(method).__name__, parameters=sum(p.numel() for p in trained),
                   inputs=tuple(inputs.shape), logits=tuple(logits.shape),
                   adapted=any(not torch.equal(a, b) for a, b in zip(before, trained)))
    logger.info('dry run: %s', summary)
    return summary


def with_bank_batch_size(method: Mapping[str, Any], batch_size: int) -> dict[str, Any]:
    """``method`` with its code bank's ``full_batch_size`` defaulting to the data's batch size."""
    method = dict(method)
    if method.get('code_bank') is not None:
        method['code_bank'] = {'full_batch_size': batch_size, **method['code_bank']}
    return method


def summarise(writer: ResultsWriter, classifier: AdaptiveClassifier) -> dict[str, float]:
    """Log the accuracy and error tables, save the stream plot and the code bank's events; return the mean
    accuracy and error (percent; CTTA papers report the error) over the segments."""
    records = writer.records
    events = getattr(classifier.method, 'bank_events', lambda: [])()
    if events:
        atomic_write_text(writer.out_dir / 'bank_events.jsonl', ''.join(json.dumps(e) + '\n' for e in events))
    plot = plot_stream({writer.out_dir.name: records}, writer.out_dir / 'accuracy_stream.png', metric='accuracy')
    for metric in ('accuracy', 'error'):
        logger.info('%s per segment and round (%s, plot %s):\n%s', metric, writer.out_dir, plot,
                    format_table(records, metric=metric, rows='round'))
    values = [r['metrics']['accuracy'] for r in records if r['metrics']['accuracy'] is not None]
    accuracy = sum(values) / len(values) if values else float('nan')
    return {'accuracy': accuracy, 'error': 100.0 - accuracy, 'segments': len(records)}
