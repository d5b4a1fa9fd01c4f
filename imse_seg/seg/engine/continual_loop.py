"""The continual test loop: a stream of (segment, round) pieces, adapted online and scored per piece."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

from mmengine.config import ConfigDict
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import DATASETS, LOOPS
from mmengine.runner.base_loop import BaseLoop
from torch.utils.data import DataLoader
from tqdm import tqdm

from ...reporting import ResultsWriter, atomic_write_text, format_table
from ...reporting.plot import plot_stream
from ..datasets import UNREADABLE, SkipUnreadable, describe_segment


@LOOPS.register_module()
class ContinualTestLoop(BaseLoop):
    """Online test-time adaptation over a stream of segments, repeated for ``rounds`` rounds.

    Each segment (e.g. one ACDC condition) is the loop's ``dataloader`` config with the segment's
    ``dataset`` overrides merged in; all are built up front, so a missing data folder fails before any
    compute. For every batch, in stream order, the model's ``test_step`` predicts and adapts (the
    :class:`~imse_seg.seg.adaptation.AdaptiveSegmentor` enables gradients itself: this loop, unlike
    mmengine's ``TestLoop``, does not wrap iterations in ``no_grad``). Nothing is reset between segments
    unless the method asks for it. After each segment the evaluator is reduced (mIoU per segment per
    round), the result is appended atomically to ``results.jsonl``/``results.csv`` in ``results_dir``
    (default: the work dir), ``after_test_epoch`` hooks see the segment's metrics, and the visualizer gets
    the curve. At the end the conditions x rounds table is logged and the overall means returned.

    Args:
        runner: The runner.
        dataloader: Dataloader config shared by all segments (batch size, pipeline, dataset type...).
        evaluator: Evaluator config, e.g. ``dict(type='StreamIoUMetric')``.
        segments: ``[dict(name='fog', dataset=dict(...overrides...)), ...]`` in stream order.
        rounds: How many times the whole sequence of segments is streamed.
        results_dir: Where the results files go; defaults to ``runner.work_dir``.
        force: Overwrite results already in ``results_dir``.
    """

    def __init__(self, runner, dataloader: dict, evaluator: dict | list, segments: Sequence[dict],
                 rounds: int = 1, results_dir: str | None = None, force: bool = False) -> None:
        self._runner = runner
        if not segments:
            raise ValueError('ContinualTestLoop needs at least one segment')
        if rounds < 1:
            raise ValueError(f'rounds must be >= 1, got {rounds}')
        seed = runner.seed
        self.segments: list[tuple[str, DataLoader]] = []
        for segment in segments:
            loader_cfg = ConfigDict(dataloader)
            loader_cfg.merge(dict(dataset=segment.get('dataset', {})))
            loader_cfg.dataset = SkipUnreadable(DATASETS.build(loader_cfg.dataset))
            loader_cfg.setdefault('collate_fn', dict(type='stream_collate'))
            self.segments.append((segment['name'], runner.build_dataloader(loader_cfg, seed=seed)))
        self.rounds = rounds
        self.dataloader = self.segments[0][1]
        self.evaluator = runner.build_evaluator(evaluator)
        metainfo = self.dataloader.dataset.metainfo
        self.evaluator.dataset_meta = metainfo
        runner.visualizer.dataset_meta = metainfo
        self.results_dir = Path(results_dir or runner.work_dir)
        self.force = force

    @property
    def stream_length(self) -> int:
        return self.rounds * sum(len(loader) for _, loader in self.segments)

    def run(self) -> dict:
        """Stream every segment of every round; return the means over all segments."""
        runner = self.runner
        writer = ResultsWriter(self.results_dir, force=self.force) if is_main_process() else None
        runner.call_hook('before_test')
        progress = tqdm(total=self.stream_length, desc='stream', unit='batch', dynamic_ncols=True,
                        disable=not is_main_process())
        for round_index in range(1, self.rounds + 1):
            for name, loader in self.segments:
                metrics = self._run_segment(name, round_index, loader, writer, progress)
                progress.set_postfix_str(f'{name} r{round_index} mIoU {metrics.get("mIoU", float("nan")):.1f}')
        progress.close()
        summary = self._summarise(writer)
        runner.call_hook('after_test')
        return summary

    def _run_segment(self, name: str, round_index: int, loader: DataLoader,
                     writer: ResultsWriter | None, progress: tqdm) -> dict:
        runner = self.runner
        self.dataloader = loader
        print_log(f'segment {name} round {round_index}: {describe_segment(loader.dataset)}', logger='current')
        runner.call_hook('before_test_epoch')
        runner.model.eval()
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if hasattr(model, 'start_segment'):
            model.start_segment(name)
        started = time.perf_counter()
        metric = self.evaluator.metrics[0]
        unreadable = 0
        for index, data_batch in enumerate(loader):
            for path, reason in data_batch.pop(UNREADABLE, []):
                unreadable += 1
                print_log(f'skipped unreadable image {path}: {reason}', logger='current', level=logging.WARNING)
            if 'inputs' in data_batch:
                self.run_iter(index, data_batch)
            progress.update(1)
            if hasattr(metric, 'running_miou') and index % 5 == 0:
                progress.set_postfix_str(f'{name} r{round_index} running mIoU {metric.running_miou():.1f}')
        metrics = self.evaluator.evaluate(len(loader.dataset) - unreadable)
        if writer is not None:
            writer.add(dict(condition=name, round=round_index), metrics, num_images=len(loader.dataset) - unreadable,
                       seconds=time.perf_counter() - started,
                       num_skipped=unreadable + len(getattr(loader.dataset, 'missing_gt', ())),
                       per_class=getattr(metric, 'last_per_class_iou', None))
        if writer is not None:
            self._write_method_events(model)
        runner.visualizer.add_scalars({f'{key}/{name}': value for key, value in metrics.items()},
                                      step=round_index)
        runner.call_hook('after_test_epoch', metrics=metrics)
        return metrics

    def run_iter(self, index: int, data_batch: dict) -> None:
        """Predict and adapt on one batch, then feed the evaluator (gradients are the model's business)."""
        self.runner.call_hook('before_test_iter', batch_idx=index, data_batch=data_batch)
        outputs = self.runner.model.test_step(data_batch)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook('after_test_iter', batch_idx=index, data_batch=data_batch, outputs=outputs)

    def _write_method_events(self, model) -> None:
        """The method's event log so far (e.g. code bank shifts and retrievals), as JSON lines."""
        events = getattr(model.method, 'bank_events', lambda: [])()
        if events:
            atomic_write_text(self.results_dir / 'bank_events.jsonl',
                              ''.join(json.dumps(event) + '\n' for event in events))

    def _summarise(self, writer: ResultsWriter | None) -> dict:
        if writer is None:
            return {}
        records = writer.records
        table = format_table(records, metric='mIoU', rows='round')
        plot = plot_stream({self.results_dir.name: records}, self.results_dir / 'miou_stream.png')
        print_log(f'mIoU per condition and round ({self.results_dir}, plot {plot}):\n{table}',
                  logger='current')
        values = [r['metrics']['mIoU'] for r in records if r['metrics'].get('mIoU') is not None]
        return {'mIoU': sum(values) / len(values)} if values else {}
