"""Soak test of resuming: ``python tools/soak_resume.py CONFIG --work-dir W [--kills 5] [adapt.py options]``.

Runs the stream of CONFIG twice with ``tools/adapt.py``: once uninterrupted (``W/reference``), once
(``W/soak``) killed with SIGKILL at ``--kills`` random batches and resumed with ``--resume`` after each kill,
then checks that both runs end bit-identical: the results records (less the wall times), the code bank's
events, and the final stream checkpoint's model, adaptation state, random generators and position. Exits 0
when they are, 1 (listing what differs) when not. The kill points are drawn with ``--seed`` over the
stream's batches; the progress is read off the run's progress bar. A kill before the first stream
checkpoint leaves nothing to resume, and that restart starts over (``--force``). Long (two full streams and the
restarts); CI does not run it (docs/reliability.md).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

TOOLS = Path(__file__).resolve().parent
PROGRESS = re.compile(r'stream:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)')
"""The progress bar of tools/adapt.py: ``stream:  37%|###   | 37/100 [...]``."""
COMPARED = ('model', 'adaptation', 'rng', 'position')


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--work-dir', required=True, help='gets reference/ and soak/ (both overwritten)')
    parser.add_argument('--kills', type=int, default=5, help='how many times the soak run is killed')
    parser.add_argument('--seed', type=int, default=0, help='seed of the kill points')
    return parser.parse_known_args(argv)


def adapt_command(config: str, work_dir: Path, options: list[str], *extra: str) -> list[str]:
    """``tools/adapt.py`` on ``config`` into ``work_dir``; ``options`` (``--checkpoint``, ``--cfg-options``...)
    last, since ``--cfg-options`` takes every value after it."""
    return [sys.executable, str(TOOLS / 'adapt.py'), config, '--work-dir', str(work_dir), *extra, *options]


def progress(log: Path) -> tuple[int, int] | None:
    """(batches done, stream length) from the last progress bar update in ``log``."""
    matches = PROGRESS.findall(log.read_text(errors='replace'))
    return (int(matches[-1][0]), int(matches[-1][1])) if matches else None


def run_to_end(command: list[str], log: Path) -> None:
    with open(log, 'w') as output:
        status = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False).returncode
    if status != 0:
        raise RuntimeError(f'{" ".join(command)} exited with {status}; see {log}')


def run_and_kill(command: list[str], log: Path, at_batch: int | None) -> tuple[int, int] | None:
    """Start ``command``; SIGKILL it once its progress reaches ``at_batch`` (None: let it finish)."""
    with open(log, 'w') as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        while process.poll() is None:
            done = progress(log)
            if at_batch is not None and done is not None and done[0] >= at_batch:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return done
            time.sleep(0.05)
    if process.returncode != 0:
        raise RuntimeError(f'{" ".join(command)} exited with {process.returncode}; see {log}')
    return progress(log)


def differences(reference: Path, soak: Path) -> list[str]:
    """What differs between the two runs' results, bank events and final stream checkpoints."""
    found = []
    if records(reference) != records(soak):
        found.append('results.jsonl')
    events = [(folder / 'bank_events.jsonl').read_bytes() if (folder / 'bank_events.jsonl').exists() else None
              for folder in (reference, soak)]
    if events[0] != events[1]:
        found.append('bank_events.jsonl')
    final = [torch.load(folder / 'stream_checkpoint.pth', map_location='cpu', weights_only=True)
             for folder in (reference, soak)]
    found += [f'stream checkpoint {part}' for part in COMPARED if not same(final[0][part], final[1][part])]
    return found


def records(folder: Path) -> list[dict]:
    lines = (folder / 'results.jsonl').read_text().splitlines()
    return [{key: value for key, value in json.loads(line).items() if key != 'seconds'} for line in lines]


def same(a: Any, b: Any) -> bool:
    """Exact equality of nested states (tensors bit for bit, dtype and shape included)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def main(argv: list[str] | None = None) -> int:
    args, options = parse_args(argv)
    root = Path(args.work_dir)
    reference, soak = root / 'reference', root / 'soak'
    root.mkdir(parents=True, exist_ok=True)
    print(f'uninterrupted run into {reference}', flush=True)
    run_to_end(adapt_command(args.config, reference, options, '--force'), root / 'reference.log')
    length = progress(root / 'reference.log')[1]
    kills = sorted(random.Random(args.seed).sample(range(1, length), min(args.kills, length - 1)))
    print(f'soak run into {soak}: SIGKILL at batches {kills} of {length}', flush=True)
    for attempt, batch in enumerate([*kills, None]):
        # a kill before the first stream checkpoint leaves nothing to resume: that restart starts over
        extra = '--resume' if attempt > 0 and (soak / 'stream_checkpoint.pth').exists() else '--force'
        done = run_and_kill(adapt_command(args.config, soak, options, extra), root / f'soak_{attempt}.log', batch)
        print(f'  attempt {attempt} ({extra}): {"killed at" if batch is not None else "finished at"} batch '
              f'{done[0] if done else "?"}', flush=True)
    found = differences(reference, soak)
    if found:
        print(f'NOT bit-identical after {len(kills)} kills: {", ".join(found)} differ', flush=True)
        return 1
    print(f'bit-identical after {len(kills)} kills: results, bank events, final model, adaptation state, '
          'random generators and position', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
