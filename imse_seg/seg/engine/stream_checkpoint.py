"""The resumable state of a continual stream: where it is, what it has learnt, and whose run it is."""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ...reporting import atomic_write
from imse_seg.checkpoint import CheckpointError

STREAM_CHECKPOINT = 'stream_checkpoint.pth'
VERSION = 1


class StreamInterrupted(Exception):
    """The stream stopped on a signal after saving its state; ``signal`` is the signal's number."""

    def __init__(self, message: str, signal: int) -> None:
        super().__init__(message)
        self.signal = signal


@dataclass
class StreamPosition:
    """The next batch to run: ``round`` (from 1), ``segment`` (index in stream order), ``batch`` (in it)."""
    round: int = 1
    segment: int = 0
    batch: int = 0


@dataclass
class SegmentProgress:
    """What the current segment has counted so far, besides the metric's accumulators."""
    unreadable: int = 0
    seconds: float = 0.0
    guard_events_before: int = 0


def fingerprint(parts: Mapping[str, Any], model: nn.Module, source: str | None) -> dict[str, str]:
    """Digests that tell whether a checkpoint belongs to this run: one per config part, the names and
    shapes of the model's tensors (after the method's set-up) and the bytes of the ``source`` checkpoint."""
    digests = {name: _digest(json.dumps(value, sort_keys=True, default=repr).encode())
               for name, value in parts.items()}
    shapes = ''.join(f'{name}:{tuple(value.shape)}\n' for name, value in model.state_dict().items())
    digests['parameters'] = _digest(shapes.encode())
    digests['source checkpoint'] = _source_digest(source)
    return digests


def _source_digest(source: str | None) -> str:
    """The digest of a local source checkpoint's bytes; of a URL's text (its bytes are the loader's)."""
    if not source:
        return 'none'
    if '://' in str(source):
        return 'url:' + _digest(str(source).encode())
    return _file_digest(Path(source))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, 'rb') as file:
        for block in iter(lambda: file.read(1 << 24), b''):
            sha.update(block)
    return sha.hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    """The states of torch's (CPU and CUDA), NumPy's and Python's global random generators."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return dict(torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=pos,
                           has_gauss=has_gauss, gauss=gauss),
                python=random.getstate())


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
    numpy = state['numpy']
    np.random.set_state((numpy['kind'], numpy['keys'].numpy().astype(np.uint32), numpy['pos'],
                         numpy['has_gauss'], numpy['gauss']))
    random.setstate(state['python'])


def save_stream_checkpoint(path: Path, *, fingerprint: Mapping[str, str], position: StreamPosition,
                           progress: SegmentProgress, **state: Any) -> None:
    """Write the stream state atomically (temporary file, then rename): a kill leaves the old or the new."""
    checkpoint = dict(version=VERSION, fingerprint=dict(fingerprint), position=asdict(position),
                      progress=asdict(progress), **state)
    atomic_write(path, lambda file: torch.save(checkpoint, file))


def load_stream_checkpoint(path: Path, fingerprint: Mapping[str, str]) -> dict[str, Any]:
    """Read a stream checkpoint and refuse it, naming what differs, unless it was written by this run.

    ``position`` and ``progress`` come back as :class:`StreamPosition` and :class:`SegmentProgress`.
    """
    if not path.is_file():
        raise FileNotFoundError(f'nothing to resume: {path} does not exist (it is written at the first '
                                'segment boundary or checkpoint interval); start the run without --resume')
    try:
        checkpoint = torch.load(path, weights_only=True)
    except Exception as error:  # a truncated or foreign file: torch raises various errors
        raise CheckpointError(f'stream checkpoint {path} cannot be read: {error}') from error
    if not isinstance(checkpoint, dict) or checkpoint.get('version') != VERSION:
        raise CheckpointError(f'{path} is not a stream checkpoint of version {VERSION}')
    saved = checkpoint['fingerprint']
    differ = [name for name in sorted(set(saved) | set(fingerprint)) if saved.get(name) != fingerprint.get(name)]
    if differ:
        raise CheckpointError(f'stream checkpoint {path} belongs to another run: its {", ".join(differ)} '
                              f'differ{"s" if len(differ) == 1 else ""} from this one. Resume with the config, '
                              'options and source checkpoint of that run, or pass --force to start over.')
    checkpoint['position'] = StreamPosition(**checkpoint['position'])
    checkpoint['progress'] = SegmentProgress(**checkpoint['progress'])
    return checkpoint
