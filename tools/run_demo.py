"""The bundled CPU benchmark end to end: make the data and the checkpoint, adapt with each method, compare.

    python tools/run_demo.py [--all | --ablations | --methods M ...] [--long | --rounds N] [--split train|val]
        [--frames-per-condition N] [--benchmark efficientvit|tiny_segformer] [--jobs J]
        [--work-dir work_dirs/demo] [--data DIR]
        [--camvid DIR] [--weights FILE] [--checkpoint FILE] [--cfg-options KEY=VALUE ...]

The default benchmark (``efficientvit``, docs/results.md) is the published EfficientViT-Seg-B0 Cityscapes
model adapting online, batch 1, to CamVid frames under fog -> night -> rain -> snow (docs/demo_data.md):

1. converts the authors' checkpoint (``--weights``, ``$IMSE_SEG_EFFICIENTVIT_B0`` or
   ``../shared/weights/efficientvit_seg_b0_cityscapes.pt``) to ``--checkpoint`` (default: the configs'
   ``load_from``) unless it is there, and writes the stream (``tools/make_demo_data.py --preset
   efficientvit``, CamVid read from ``--camvid``, ``$IMSE_SEG_CAMVID`` or ``../shared/data/camvid``)
   unless ``--data`` already holds one;
2. runs ``tools/adapt.py configs/<benchmark config>_<method>.py`` for each method into
   ``<work-dir>/<benchmark>/<split>/r<rounds>[_<N>frames]/<method>/`` (its output in ``adapt.log`` there), ``--jobs``
   processes at a time, the slowest first, each with an equal share of the CPU's threads (one thread per
   process is faster here than two threads fighting over two cores; ``--jobs 1`` gives one run both). A
   method whose results there are complete and came from the same command is reused, so ``--all`` after
   ``--methods tent`` adds only the missing methods; a run that was interrupted (stopped, killed, the
   machine lost) continues from its stream checkpoint with ``--resume``; SIGTERM or Ctrl-C stops every
   running method, each saved. A progress bar counts the stream segments finished;
3. prints the comparison table (per condition averaged over rounds, first and last round, mean, seconds
   per image) and writes it to ``summary.md`` beside the runs with the plot of every method along the
   stream, ``miou_stream.png``.

Method sets: the default (``make demo``) is source, TENT and IMSE+STAG over the 3-round stream at 50 frames
per condition, sized to end within 10 minutes on 2 cores; ``--all`` every method of the benchmark's methods
file, ``--long`` source, TENT, CoTTA, IMSE and IMSE+STAG over 10 rounds, ``--ablations`` the flagship with
one component changed at a time, each over the full stream of 100 frames per condition (the docs' tables).
``--split train`` is the reported stream; ``--split val`` the tuning stream, the only one hyper-parameters
were chosen on.
``--benchmark tiny_segformer`` runs the first demo instead (a SegFormer trained here, 120 x 160 frames).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from mmengine.config import Config
from tqdm import tqdm

from imse_seg.reporting import RESULTS_JSONL, atomic_write_text, load_results
from imse_seg.reporting.comparison import format_comparison, format_per_class
from imse_seg.reporting.shift_detections import format_detections, score_detections
from imse_seg.cli import exit_with
from imse_seg.seg.engine.continual_loop import STOP_SIGNALS
from imse_seg.seg.engine.stream_checkpoint import STREAM_CHECKPOINT
from imse_seg.third_party import EFFICIENTVIT_B0_CITYSCAPES

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Benchmark:
    """A stream the demo runs: its configs (``configs/<config_prefix><method>.py``), its data preset and the
    method sets of the command line. ``convert_from``: the published checkpoint converted to the configs'
    ``load_from`` when it is missing (None: the checkpoint is this project's own). ``frames``: frames per
    condition of the full stream (the docs' tables); ``demo_frames``: of the default run, sized so that
    ``make demo`` ends within 10 minutes on 2 cores."""
    name: str
    config_prefix: str
    preset: str
    data: str
    default: tuple[str, ...]
    all: tuple[str, ...]
    long: tuple[str, ...]
    ablations: tuple[str, ...]
    convert_from: str | None
    frames: int
    demo_frames: int


BENCHMARKS = {benchmark.name: benchmark for benchmark in (
    Benchmark('efficientvit', 'efficientvit_camvid_ctta_', 'efficientvit', 'data/camvid_stream',
              default=('source', 'tent', 'imse_stag'),
              all=('source', 'bn_stats', 'bn_stats_blend', 'tent', 'tent_stag', 'sar', 'cotta', 'vida',
                   'imse', 'imse_stag'),
              long=('source', 'tent', 'cotta', 'imse', 'imse_stag'),
              ablations=('imse_stag', 'imse_stag_no_diversity', 'imse_stag_no_retrieval', 'imse',
                         'imse_stag_no_sam', 'imse_stag_weight_alignment', 'imse_stag_row_alignment'),
              convert_from='efficientvit', frames=100, demo_frames=50),
    Benchmark('tiny_segformer', 'demo_ctta_', 'tiny_segformer', 'data/demo',
              default=('source', 'tent', 'cotta', 'imse', 'tent_stag', 'imse_stag'),
              all=('source', 'bn_stats', 'bn_stats_blend', 'tent', 'tent_stag', 'sar', 'cotta', 'vida',
                   'imse', 'imse_stag'),
              long=('source', 'tent', 'cotta', 'imse', 'imse_stag'),
              ablations=('imse_stag', 'imse_stag_no_diversity', 'imse_stag_no_retrieval', 'imse'),
              convert_from=None, frames=25, demo_frames=25),
)}
LONG_ROUNDS = 10
COST = {'source': 0.04, 'bn_stats': 0.06, 'bn_stats_blend': 0.07, 'tent': 0.18, 'tent_stag': 0.19, 'sar': 0.2,
        'imse_stag_no_sam': 0.22, 'imse': 0.4, 'imse_stag': 0.4, 'vida': 1.5, 'cotta': 3.2}
"""Seconds per image on one CPU thread (EfficientViT-B0, docs/benchmarks.md), only to start the slowest
runs first so that ``--jobs`` processes finish together; a method not listed counts as an ``imse_stag``."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--benchmark', choices=sorted(BENCHMARKS), default='efficientvit',
                        help='which stream and model (default: efficientvit, the published B0 on CamVid)')
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument('--methods', nargs='+', help='methods to run, each configs/<prefix><method>.py')
    chosen.add_argument('--all', action='store_true', help="every method (the docs' main table)")
    chosen.add_argument('--ablations', action='store_true', help='the flagship, one component changed at a time')
    parser.add_argument('--long', action='store_true',
                        help=f'{LONG_ROUNDS} rounds; with no --methods: source, TENT, CoTTA, IMSE, IMSE+STAG')
    parser.add_argument('--rounds', type=int, default=None, help='rounds of the stream (default: config)')
    parser.add_argument('--split', choices=['train', 'val'], default='train',
                        help='ACDC split streamed: train = reported, val = tuning (default train)')
    parser.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1),
                        help='methods run at once (default: 2, or 1 on a one-core machine)')
    parser.add_argument('--work-dir', type=Path, default=Path('work_dirs/demo'), help='where runs go')
    parser.add_argument('--frames-per-condition', type=int, default=None,
                        help='frames per condition of the stream (default: 50 for the default run, the full '
                             "100 for --all, --long, --ablations and --methods; the benchmark's own for "
                             'tiny_segformer)')
    parser.add_argument('--data', type=Path, default=None,
                        help="the stream's tree (default: the benchmark's, e.g. data/camvid_stream, or "
                             'data/camvid_stream_<N> for another --frames-per-condition)')
    parser.add_argument('--camvid', type=Path, default=None,
                        help='the CamVid folder the stream is made from (default: $IMSE_SEG_CAMVID or '
                             '../shared/data/camvid)')
    parser.add_argument('--weights', type=Path, default=None,
                        help="the authors' EfficientViT-Seg-B0 Cityscapes .pt (default: "
                             f'${EFFICIENTVIT_B0_CITYSCAPES.env} or ../shared/{EFFICIENTVIT_B0_CITYSCAPES.relative})')
    parser.add_argument('--checkpoint', type=Path, default=None,
                        help="the source model's checkpoint (default: the configs' load_from); converted from "
                             '--weights when missing')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='extra overrides passed to every run, e.g. custom_hooks.0.method.sam_rho=0.1')
    args = parser.parse_args(argv)
    benchmark = BENCHMARKS[args.benchmark]
    if args.rounds is not None and args.rounds < 1:
        parser.error('--rounds must be positive')
    if args.jobs < 1:
        parser.error('--jobs must be positive')
    if args.long and args.rounds is not None:
        parser.error('--long means 10 rounds; give --rounds or --long, not both')
    if args.long:
        args.rounds = LONG_ROUNDS
    args.method_list = list(args.methods or (benchmark.all if args.all else benchmark.ablations if args.ablations
                                             else benchmark.long if args.long else benchmark.default))
    default_run = not (args.methods or args.all or args.ablations or args.long)
    args.frames = args.frames_per_condition or (benchmark.demo_frames if default_run else benchmark.frames)
    if args.frames < 1:
        parser.error('--frames-per-condition must be at least 1')
    args.data = args.data or Path(benchmark.data if args.frames == benchmark.frames
                                  else f'{benchmark.data}_{args.frames}')
    for method in args.method_list:
        if not method_config(benchmark, method).exists():
            parser.error(f'no config for method {method!r}: {method_config(benchmark, method)} does not exist')
    return args


def method_config(benchmark: Benchmark, method: str) -> Path:
    """The config of one method on ``benchmark``."""
    return REPO / 'configs' / f'{benchmark.config_prefix}{method}.py'


def stream_segments(config: Path, rounds: int | None) -> tuple[int, int]:
    """``(rounds, segments)``: the rounds a run of ``config`` streams and the segments it scores."""
    cfg = Config.fromfile(str(config), import_custom_modules=False)
    rounds = rounds or cfg.test_cfg.rounds
    return rounds, rounds * len(cfg.test_cfg.segments)


def child_env(jobs: int) -> dict[str, str]:
    """The environment of a run: an equal share of the threads (``$OMP_NUM_THREADS`` if set).

    OpenMP's wait policy is left to OpenMP (its waiting threads spin briefly, then sleep) unless set:
    a one-thread run has no waiting threads, and a run of two threads with sleeping waiters (``PASSIVE``,
    forced here before) was slower than one thread on this machine (docs/benchmarks.md).
    """
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    return dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', threads))


def finished_segments(work_dir: Path) -> int:
    path = work_dir / RESULTS_JSONL
    return len(path.read_text().splitlines()) if path.exists() else 0


RUN_FILE = 'run_demo.json'


def recorded(work_dir: Path) -> dict | None:
    """The run record of ``work_dir``: ``{'command': [...], 'complete': bool}``, or None if there is none."""
    path = work_dir / RUN_FILE
    return json.loads(path.read_text()) if path.exists() else None


def record(work_dir: Path, command: list[str], complete: bool) -> None:
    """Write the run record of ``work_dir`` (read back by :func:`recorded`)."""
    atomic_write_text(work_dir / RUN_FILE, json.dumps({'command': command, 'complete': complete}))


def is_complete(work_dir: Path, command: list[str], segments: int) -> bool:
    """Whether ``work_dir`` holds a finished run of exactly ``command`` (then it is reused, not re-run)."""
    return (finished_segments(work_dir) == segments
            and recorded(work_dir) == {'command': command, 'complete': True})


def can_resume(work_dir: Path, command: list[str]) -> bool:
    """Whether ``work_dir`` holds an interrupted run of exactly ``command`` that left a stream checkpoint
    (then it is continued with ``--resume``, nothing streamed twice)."""
    return ((work_dir / STREAM_CHECKPOINT).exists()
            and recorded(work_dir) == {'command': command, 'complete': False})


def launched(command: list[str], resume: bool) -> list[str]:
    """``command`` as started: ``--force`` becomes ``--resume`` when an interrupted run is continued."""
    return [('--resume' if resume and part == '--force' else part) for part in command]


class BatchStop:
    """SIGTERM or SIGINT (Ctrl-C) to the batch: each running ``tools/adapt.py`` is asked once to save and stop.

    The children run in sessions of their own, so a terminal's Ctrl-C reaches this process alone, which
    passes it on as one SIGTERM per child: adapt.py saves its stream checkpoint on the first signal and
    ends at once, unsaved, on a second. A second signal here is passed on too, for a user who will not wait.
    """

    def __init__(self, running: dict[str, tuple[subprocess.Popen, Path, float]]) -> None:
        self.running = running
        self.signum: int | None = None
        self.signalled: set[int] = set()
        self.previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        again = self.signum is not None
        self.signum = self.signum or signum
        self.pass_on(again)

    def pass_on(self, again: bool = False) -> None:
        """SIGTERM to each running child not yet sent one (``again``: to each running child)."""
        for process, *_ in list(self.running.values()):
            if process.poll() is None and (again or process.pid not in self.signalled):
                self.signalled.add(process.pid)
                process.send_signal(signal.SIGTERM)

    def finish(self, commands: dict[str, list[str]], waiting: list[str]) -> NoReturn:
        """End the stopped batch once every running child has saved (or finished): one line per child on
        stderr (and one for the methods ``waiting`` to start), then exit 128 + the signal, as adapt.py does."""
        self.pass_on()
        if waiting:
            print(f'stopped by {signal.Signals(self.signum).name} before {", ".join(waiting)} started; the same '
                  'command runs them', file=sys.stderr, flush=True)
        for method, (process, work_dir, _) in self.running.items():
            status = process.wait()
            if status == 0:
                record(work_dir, commands[method], complete=True)
                print(f'{method}: done ({work_dir})', file=sys.stderr, flush=True)
            else:
                print(child_failure(method, status, work_dir), file=sys.stderr, flush=True)
        raise SystemExit(128 + self.signum)

    def __enter__(self) -> BatchStop:
        for signum in STOP_SIGNALS:
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def child_failure(method: str, returncode: int, work_dir: Path) -> str:
    """The one line that ends the batch when ``method``'s ``tools/adapt.py`` exits with ``returncode``.

    A child stopped by SIGTERM or SIGINT (adapt.py's exit status 128 + the signal) saved its stream
    checkpoint first: that is no failure, and the same command continues it.
    """
    if returncode in (128 + signal.SIGTERM, 128 + signal.SIGINT):
        return (f'{method} was stopped by a signal; its state is saved in {work_dir} and the same command '
                'continues it')
    return f'{method} failed with exit code {returncode}; its log is {work_dir / "adapt.log"}'


def prepare_checkpoint(benchmark: Benchmark, args: argparse.Namespace) -> None:
    """Convert the published checkpoint to ``--checkpoint`` (or the configs' ``load_from``) if it is missing."""
    if args.checkpoint is None and benchmark.convert_from is None:
        return
    target = REPO / (args.checkpoint or Config.fromfile(str(method_config(benchmark, args.method_list[0])),
                                                        import_custom_modules=False).load_from)
    if target.exists() or benchmark.convert_from is None:
        return
    source = EFFICIENTVIT_B0_CITYSCAPES.require(args.weights)
    print(f'converting {source} -> {target} ...', flush=True)
    converted = subprocess.run([sys.executable, 'tools/convert_checkpoint.py', str(source), str(target),
                                '--format', benchmark.convert_from], cwd=REPO)
    if converted.returncode != 0:
        raise SystemExit(f'the checkpoint could not be converted (exit status {converted.returncode})')


def prepare_data(benchmark: Benchmark, args: argparse.Namespace) -> None:
    """Write the benchmark's stream to ``--data`` unless a complete tree of as many frames is there."""
    manifest = args.data / 'manifest.json'
    if manifest.exists():
        frames = json.loads(manifest.read_text())['frames_per_condition']
        if frames != args.frames:
            raise FileExistsError(f'{args.data} holds {frames} frames per condition, not the {args.frames} '
                                  f'asked for: pass --frames-per-condition {frames} or another --data')
        return
    print(f'writing the {benchmark.preset} stream to {args.data} ...', flush=True)
    camvid = ['--camvid', str(args.camvid)] if args.camvid else []
    generated = subprocess.run([sys.executable, 'tools/make_demo_data.py', '--preset', benchmark.preset,
                                '--out', str(args.data), '--frames-per-condition', str(args.frames), *camvid],
                               cwd=REPO)
    if generated.returncode != 0:
        raise SystemExit(f'the demo data could not be written (exit status {generated.returncode})')


def start_run(method: str, work_dir: Path, command: list[str], jobs: int, bar: tqdm) -> subprocess.Popen:
    """Start ``command`` (one method's ``tools/adapt.py``) into ``work_dir``, continuing an interrupted run of
    it, in a session of its own (see :class:`BatchStop`) and with its output in ``adapt.log`` there."""
    work_dir.mkdir(parents=True, exist_ok=True)
    resume = can_resume(work_dir, command)
    if resume:
        bar.write(f'{method}: continuing the interrupted run in {work_dir}')
    else:
        (work_dir / RESULTS_JSONL).unlink(missing_ok=True)
        record(work_dir, command, complete=False)
    with open(work_dir / 'adapt.log', 'a' if resume else 'w') as log:
        return subprocess.Popen([sys.executable, *launched(command, resume)], cwd=REPO, env=child_env(jobs),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def run_methods(benchmark: Benchmark, args: argparse.Namespace, out: Path) -> None:
    """Run every method's ``tools/adapt.py``, ``args.jobs`` at a time, with a bar over finished segments."""
    options = [f'test_dataloader.dataset.data_root={args.data}', f'test_dataloader.dataset.split={args.split}']
    options += [f'test_cfg.rounds={args.rounds}'] if args.rounds else []
    options += args.cfg_options
    checkpoint = ['--checkpoint', str(args.checkpoint)] if args.checkpoint else []
    segments = {method: stream_segments(method_config(benchmark, method), args.rounds)[1]
                for method in args.method_list}
    commands = {method: ['tools/adapt.py', str(method_config(benchmark, method).relative_to(REPO)),
                         '--work-dir', str(out / method), '--force', *checkpoint, '--cfg-options', *options]
                for method in args.method_list}
    waiting = sorted((method for method in args.method_list
                      if not is_complete(out / method, commands[method], segments[method])),
                     key=lambda method: -COST.get(method, COST['imse_stag']))
    running: dict[str, tuple[subprocess.Popen, Path, float]] = {}
    with BatchStop(running) as stop:
        with tqdm(total=sum(segments.values()), unit='segment', desc='demo', dynamic_ncols=True) as bar:
            for method in args.method_list:
                if method not in waiting:
                    bar.write(f'{method}: reused the finished run in {out / method}')
            while waiting or running:
                while waiting and len(running) < args.jobs and stop.signum is None:
                    method = waiting.pop(0)
                    process = start_run(method, out / method, commands[method], args.jobs, bar)
                    running[method] = (process, out / method, time.perf_counter())
                time.sleep(1)
                if stop.signum is not None:
                    break
                for method, (process, work_dir, started) in list(running.items()):
                    if process.poll() is None:
                        continue
                    del running[method]
                    if process.returncode != 0:
                        stop.pass_on()
                        raise SystemExit(child_failure(method, process.returncode, work_dir))
                    record(work_dir, commands[method], complete=True)
                    bar.write(f'{method}: done in {time.perf_counter() - started:.0f} s ({work_dir})')
                done = sum(finished_segments(out / method) for method in args.method_list if method not in waiting)
                if done != bar.n:
                    bar.update(done - bar.n)
        if stop.signum is not None:
            stop.finish(commands, waiting)


def details(runs: dict[str, list[dict]], out: Path) -> str:
    """The per-class IoU of the source and the flagship, and each code bank's detected shifts."""
    text = ''
    shown = {method: runs[method] for method in ('source', 'imse_stag') if method in runs}
    if shown:
        text += f'\nPer-class IoU (%), mean over all segments:\n\n{format_per_class(shown)}\n'
    for method, records in runs.items():
        events = out / method / 'bank_events.jsonl'
        if events.exists():
            score = score_detections(load_jsonl(events), records)
            text += f'\nCode bank of {method}: detected shifts against the true boundaries\n\n' \
                    f'{format_detections(score)}\n'
    return text


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchmark = BENCHMARKS[args.benchmark]
    started = time.perf_counter()
    prepare_checkpoint(benchmark, args)
    prepare_data(benchmark, args)
    rounds, _ = stream_segments(method_config(benchmark, args.method_list[0]), args.rounds)
    stream = f'r{rounds}' if args.frames == benchmark.frames else f'r{rounds}_{args.frames}frames'
    out = args.work_dir / benchmark.name / args.split / stream
    run_methods(benchmark, args, out)
    runs = {method: load_results(out / method) for method in args.method_list}
    table = format_comparison(runs)
    from imse_seg.reporting.plot import plot_stream  # matplotlib only when plotting
    plot = plot_stream(runs, out / 'miou_stream.png')
    command = ' '.join(['python', 'tools/run_demo.py', *(sys.argv[1:] if argv is None else argv)])
    name = 'reported' if args.split == 'train' else 'tuning'
    summary = (f'mIoU (%) on the {benchmark.name} benchmark, {name} stream (ACDC split `{args.split}`), '
               f'{args.frames} frames per condition, {rounds} rounds, per condition averaged over rounds; '
               f'`{command}`\n\n{table}\n'
               + details(runs, out))
    atomic_write_text(out / 'summary.md', summary)
    print(f'\n{summary}\nplot: {plot}\ntable: {out / "summary.md"}\n'
          f'done in {(time.perf_counter() - started) / 60:.1f} min', flush=True)
    return 0


if __name__ == '__main__':
    exit_with(main)
