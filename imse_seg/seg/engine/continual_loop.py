"""The continual test loop: a stream of (segment, round) pieces, adapted online and scored per piece."""
from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from mmengine.config import ConfigDict
from mmengine.dist import get_rank, get_world_size, is_main_process
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import DATASETS, LOOPS
from mmengine.runner.base_loop import BaseLoop
from torch.utils.data import DataLoader
from tqdm import tqdm

from ...reporting import ResultsWriter, atomic_write_text, format_class_table, format_table
from ...reporting.plot import plot_stream
from ..datasets import BAD_LABEL, UNREADABLE, SkipUnreadable, describe_segment
from .stream_checkpoint import (STREAM_CHECKPOINT, SegmentProgress, StreamInterrupted, StreamPosition,
                                fingerprint, load_stream_checkpoint, rng_state, save_stream_checkpoint,
                                set_rng_state)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""Signals on which a single-process stream saves its state after the current batch and stops."""
LOADER_OPTIONS_WITHOUT_EFFECT = ('num_workers', 'persistent_workers', 'pin_memory', 'prefetch_factor')
"""Dataloader options that do not change the stream, left out of a checkpoint's fingerprint."""


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
    (default: the work dir) with the segment's counts (unreadable images, samples left out of the metric
    by kind, divergence-guard events), ``after_test_epoch`` hooks see the segment's metrics, and the
    visualizer gets the curve. The segment being streamed is ``place`` (round and segment name), which
    hooks read and the metric is told at each segment start (its prediction maps, with ``output_dir``, go
    to a folder per round and segment). At the end the conditions x rounds table is logged and the overall
    means returned.

    The stream state (model weights, method and guard state, random generators, position, the current
    segment's metric accumulators and counts, the results so far) is saved atomically to
    ``stream_checkpoint.pth`` in ``results_dir`` at every segment boundary and, with
    ``checkpoint_interval``, every that many batches; on SIGTERM or SIGINT a single-process stream saves
    it after the current batch and raises :class:`StreamInterrupted`. With ``resume`` the loop loads it
    (refusing the checkpoint of another config, model or source checkpoint) and continues: the final
    results equal those of an uninterrupted run. Under a launcher each rank writes
    ``stream_checkpoint.rank<r>.pth``.

    Args:
        runner: The runner.
        dataloader: Dataloader config shared by all segments (batch size, pipeline, dataset type...).
        evaluator: Evaluator config, e.g. ``dict(type='StreamIoUMetric')``.
        segments: ``[dict(name='fog', dataset=dict(...overrides...)), ...]`` in stream order.
        rounds: How many times the whole sequence of segments is streamed.
        results_dir: Where the results files go; defaults to ``runner.work_dir``.
        force: Overwrite results (and a stream checkpoint) already in ``results_dir``.
        resume: Continue the run whose stream checkpoint is in ``results_dir``.
        checkpoint_interval: Also save the stream state every this many batches; None: at segment
            boundaries only.
        amp: Run the adaptation method's forwards in mixed precision (bfloat16 autocast; the losses and the
            update in float32: :mod:`imse_seg.core.precision`), as mmengine's ``TestLoop(fp16=True)`` runs
            its test steps; ``tools/adapt.py --amp`` sets it. The :class:`AdaptationSetupHook` hands it to
            the model.
    """

    def __init__(self, runner, dataloader: dict, evaluator: dict | list, segments: Sequence[dict],
                 rounds: int = 1, results_dir: str | None = None, force: bool = False, resume: bool = False,
                 checkpoint_interval: int | None = None, amp: bool = False) -> None:
        self._runner = runner
        self.check_options(segments, rounds, force=force, resume=resume, checkpoint_interval=checkpoint_interval,
                           amp=amp)
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
        self.resume = resume
        self.checkpoint_interval = checkpoint_interval
        self.amp = amp
        self.run_parts = dict(model=runner.cfg.get('model'), segments=list(segments),
                              method=[hook for hook in runner.cfg.get('custom_hooks', [])
                                      if hook.get('type') == 'AdaptationSetupHook'],
                              dataloader={key: value for key, value in dict(dataloader).items()
                                          if key not in LOADER_OPTIONS_WITHOUT_EFFECT})
        if self.amp:  # a part only under amp, so that the checkpoints of full-precision runs keep their digests
            self.run_parts['precision'] = 'mixed (bfloat16 autocast)'
        suffix = f'.rank{get_rank()}' if get_world_size() > 1 else ''
        self.checkpoint_path = self.results_dir / STREAM_CHECKPOINT.replace('.pth', f'{suffix}.pth')
        self._stop_signal: int | None = None
        self.place: dict[str, Any] = {}
        """The segment being streamed: ``dict(round=..., segment=...)`` (empty before the stream starts)."""

    @staticmethod
    def check_options(segments: Sequence[dict] = (), rounds: int = 1, results_dir: str | None = None,
                      force: bool = False, resume: bool = False, checkpoint_interval: int | None = None,
                      amp: bool = False) -> None:
        """Refuse option values the loop cannot run with (``ValueError``); also checked before a run starts
        (:func:`imse_seg.config_check.check_components`), so that a mistake is answered before any output."""
        if not segments:
            raise ValueError('ContinualTestLoop needs at least one segment')
        if not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f'rounds must be an integer >= 1, got {rounds!r}')
        if force and resume:
            raise ValueError('force and resume exclude each other: start the run over, or continue it')
        if checkpoint_interval is not None and (not isinstance(checkpoint_interval, int) or checkpoint_interval < 1):
            raise ValueError(f'checkpoint_interval must be an integer >= 1 or None, got {checkpoint_interval!r}')
        if not isinstance(amp, bool):
            raise ValueError(f'amp must be True or False, got {amp!r}')

    @property
    def stream_length(self) -> int:
        return self.rounds * sum(len(loader) for _, loader in self.segments)

    def run(self) -> dict:
        """Stream every segment of every round (from the checkpoint, resuming); return the overall means."""
        runner = self.runner
        writer = self._open_results()
        runner.call_hook('before_test')
        model = self._adaptive_model()
        self.fingerprint = fingerprint(self.run_parts, model.module, runner.cfg.get('load_from'))
        position, progress, pending_rng = StreamPosition(), SegmentProgress(), None
        if self.resume:
            position, progress, pending_rng = self._load(model, writer)
        per_round = [len(loader) for _, loader in self.segments]
        self.stream_batches = sum(per_round) * (position.round - 1) + sum(per_round[:position.segment]) + \
            position.batch
        bar = tqdm(total=self.stream_length, initial=self.stream_batches, desc='stream', unit='batch',
                   dynamic_ncols=True, disable=not is_main_process())
        with self._stop_on_signals():
            for round_index in range(position.round, self.rounds + 1):
                first = position.segment if round_index == position.round else 0
                for segment_index in range(first, len(self.segments)):
                    here, current, rng = StreamPosition(round_index, segment_index), SegmentProgress(), None
                    if (round_index, segment_index) == (position.round, position.segment):
                        here, current, rng = position, progress, pending_rng
                    metrics = self._run_segment(here, current, writer, bar, rng)
                    name = self.segments[segment_index][0]
                    bar.set_postfix_str(f'{name} r{round_index} mIoU {metrics.get("mIoU", float("nan")):.1f}')
        bar.close()
        summary = self._summarise(writer)
        runner.call_hook('after_test')
        return summary

    def _open_results(self) -> ResultsWriter | None:
        """The results writer (main process), after refusing to overwrite a run without force or resume."""
        if self.force:
            self.checkpoint_path.unlink(missing_ok=True)
        elif not self.resume and self.checkpoint_path.exists():
            raise FileExistsError(f'{self.results_dir} holds the stream checkpoint of a run '
                                  f'({self.checkpoint_path.name}); pass --resume to continue it or --force '
                                  'to start over')
        if not is_main_process():
            return None
        return ResultsWriter(self.results_dir, resume=self.resume, force=self.force)

    def _adaptive_model(self):
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    def _load(self, model, writer: ResultsWriter | None) -> tuple[StreamPosition, SegmentProgress, dict]:
        """Load the stream checkpoint into model, method, guard, metric and results; return where to go on."""
        checkpoint = load_stream_checkpoint(self.checkpoint_path, self.fingerprint)
        model.module.load_state_dict(checkpoint['model'])
        model.load_adaptation_state(checkpoint['adaptation'])
        self.evaluator.metrics[0].results[:] = checkpoint['metric_results']
        if writer is not None:
            writer.reset(checkpoint['records'])
        position = checkpoint['position']
        name = self.segments[position.segment][0] if position.segment < len(self.segments) else 'end'
        print_log(f'resuming from {self.checkpoint_path}: round {position.round}, segment {name}, batch '
                  f'{position.batch} ({len(checkpoint["records"])} segments recorded)', logger='current')
        return position, checkpoint['progress'], checkpoint['rng']

    def _save(self, model, position: StreamPosition, progress: SegmentProgress,
              writer: ResultsWriter | None) -> None:
        save_stream_checkpoint(
            self.checkpoint_path, fingerprint=self.fingerprint, position=position, progress=progress,
            model=model.module.state_dict(), adaptation=model.adaptation_state(),
            metric_results=list(self.evaluator.metrics[0].results),
            records=writer.records if writer is not None else [], rng=rng_state())

    def _run_segment(self, position: StreamPosition, progress: SegmentProgress, writer: ResultsWriter | None,
                     bar: tqdm, rng: dict | None) -> dict:
        runner = self.runner
        name, loader = self.segments[position.segment]
        round_index = position.round
        self.dataloader = loader
        model = self._adaptive_model()
        if rng is not None and position.batch == 0:
            set_rng_state(rng)
        print_log(f'segment {name} round {round_index}: {describe_segment(loader.dataset)}', logger='current')
        runner.call_hook('before_test_epoch')
        runner.model.eval()
        if position.batch == 0:
            model.start_segment(name)
            progress.guard_events_before = self._guard_events(model)
        started = time.perf_counter()
        self.place = dict(round=round_index, segment=name)
        metric = self.evaluator.metrics[0]
        if hasattr(metric, 'start_segment'):
            metric.start_segment(self.place)
        batches = self._batches(loader, position.batch)
        if rng is not None and position.batch > 0:
            set_rng_state(rng)
        for index, data_batch in batches:
            for path, reason in data_batch.pop(UNREADABLE, []):
                progress.unreadable += 1
                print_log(f'skipped unreadable image {path}: {reason}', logger='current', level=logging.WARNING)
            for path, reason in data_batch.pop(BAD_LABEL, []):
                metric.add_fault(BAD_LABEL)
                print_log(f'skipped bad label map {path}: {reason}', logger='current', level=logging.WARNING)
            if 'inputs' in data_batch:
                self.run_iter(index, data_batch)
            position = StreamPosition(round_index, position.segment, index + 1)
            self.stream_batches += 1
            bar.update(1)
            if hasattr(metric, 'running_miou') and index % 5 == 0:
                bar.set_postfix_str(f'{name} r{round_index} running mIoU {metric.running_miou():.1f}')
            if self._stop_signal is not None or (self.checkpoint_interval is not None and
                                                 self.stream_batches % self.checkpoint_interval == 0):
                self._save(model, position, self._so_far(progress, started), writer)
            if self._stop_signal is not None:
                raise StreamInterrupted(
                    f'stopped by {signal.Signals(self._stop_signal).name} at round {round_index}, segment '
                    f'{name}, batch {index + 1}; the state is saved in {self.checkpoint_path}: continue with '
                    '--resume', self._stop_signal)
        progress = self._so_far(progress, started)
        metrics = self.evaluator.evaluate(len(loader.dataset) - progress.unreadable)
        if writer is not None:
            faults = dict(getattr(metric, 'last_faults', {}))
            left_out = sum(faults.values())
            counts = dict(unreadable=progress.unreadable, **faults,
                          guard_events=self._guard_events(model) - progress.guard_events_before)
            writer.add(dict(condition=name, round=round_index), metrics,
                       num_images=len(loader.dataset) - progress.unreadable - left_out,
                       seconds=progress.seconds,
                       num_skipped=progress.unreadable + left_out + len(getattr(loader.dataset, 'missing_gt', ())),
                       per_class=getattr(metric, 'last_per_class_iou', None), counts=counts)
            self._write_method_events(model)
        runner.visualizer.add_scalars({f'{key}/{name}': value for key, value in metrics.items()},
                                      step=round_index)
        runner.call_hook('after_test_epoch', metrics=metrics)
        following = (StreamPosition(round_index, position.segment + 1) if position.segment + 1 < len(self.segments)
                     else StreamPosition(round_index + 1, 0))
        self._save(model, following, SegmentProgress(), writer)
        return metrics

    @staticmethod
    def _batches(loader: DataLoader, skip: int) -> Iterator[tuple[int, dict]]:
        """``(index, batch)`` of ``loader`` from batch ``skip`` on (the skipped ones are loaded, not run)."""
        iterator = iter(loader)
        for _ in range(skip):
            next(iterator)
        return enumerate(iterator, start=skip)

    @staticmethod
    def _so_far(progress: SegmentProgress, started: float) -> SegmentProgress:
        return SegmentProgress(progress.unreadable, progress.seconds + time.perf_counter() - started,
                               progress.guard_events_before)

    @staticmethod
    def _guard_events(model) -> int:
        guard = getattr(model, 'guard', None)
        return 0 if guard is None else len(guard.events)

    def _stop_on_signals(self):
        """Context in which SIGTERM/SIGINT ask the stream to save and stop (single process, main thread)."""
        single = get_world_size() == 1 and threading.current_thread() is threading.main_thread()
        return _SignalStop(self) if single else contextlib.nullcontext()

    def run_iter(self, index: int, data_batch: dict) -> None:
        """Predict and adapt on one batch, then feed the evaluator (gradients are the model's business).

        The model is told the batch's place in the stream first (round, segment, image paths), which its
        method's event log records."""
        self.runner.call_hook('before_test_iter', batch_idx=index, data_batch=data_batch)
        images = [sample.metainfo.get('img_path') for sample in data_batch['data_samples']]
        self._adaptive_model().locate(dict(self.place, images=images))
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
        if any(record['per_class'] for record in records):
            print_log(f'IoU per class and condition, mean over rounds:\n{format_class_table(records)}',
                      logger='current')
        values = [r['metrics']['mIoU'] for r in records if r['metrics'].get('mIoU') is not None]
        return {'mIoU': sum(values) / len(values)} if values else {}


class _SignalStop:
    """Installs handlers that set the loop's stop flag; a second signal ends the process at once."""

    def __init__(self, loop: ContinualTestLoop) -> None:
        self.loop = loop
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.loop._stop_signal is not None:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        self.loop._stop_signal = signum

    def __enter__(self) -> None:
        for signum in STOP_SIGNALS:
            self.previous[signum] = signal.signal(signum, self._handle)

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

