"""One run per work dir: an exclusive lock for the whole run, and what a run may find there when it starts.

Two runs started together into one folder would interleave their results, checkpoints and config dumps,
and the check for existing results (made when the stream starts) sees nothing yet. So the command-line
tools take :class:`WorkDirLock` before anything writes: a lock file (``run.lock``) created exclusively,
naming the process and host that hold it. A second run is refused at once (:class:`WorkDirLocked`, a
user error). The lock of a process that is gone (killed, crashed) is *stale*: it is reported and broken
when the run is told to take over the folder (``--force`` or ``--resume``), and refused otherwise.

:func:`prepare_work_dir` then refuses a folder that holds a previous run's results unless the run resumes
or starts over, and on starting over removes everything a run writes there (:data:`RUN_OUTPUTS`), so that
no file of the previous run survives next to the new one's. Framework-free.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

LOCK_FILE = 'run.lock'
RUN_OUTPUTS = ('results.jsonl', 'results.csv', 'bank_events.jsonl', 'miou_stream.png', 'accuracy_stream.png',
               'stream_checkpoint*.pth', '.*.tmp', '*.py')
"""Glob patterns of the files a run writes at the top of its work dir (results, the code bank's events,
plots, stream checkpoints and their temporary files, mmengine's config dump)."""
REFUSED_OUTPUTS = ('results.jsonl', 'results.csv', 'stream_checkpoint*.pth')
"""Those that mark a started run: a work dir holding one is refused without ``--resume`` or ``--force``."""
LOG_FOLDER_DIGITS = 14
"""mmengine's log folders are named by the run's timestamp, ``YYYYMMDD_HHMMSS``."""


class WorkDirLocked(FileExistsError):
    """Another run holds (or a dead run left) the lock of the work dir."""


class WorkDirLock:
    """Context manager holding ``work_dir/run.lock`` for the duration of a run.

    The file is created atomically and exclusively (written aside, then hard-linked into place, so it is
    never seen half-written) and holds the PID, host, start time and command line. On exit it is removed
    if it is still this process's. ``take_over``: break a stale lock (same host, process gone) with a
    warning on stderr instead of refusing; a live lock, or one of another host (whose process cannot be
    checked), is always refused.
    """

    def __init__(self, work_dir: str | Path, take_over: bool = False) -> None:
        self.work_dir = Path(work_dir)
        self.path = self.work_dir / LOCK_FILE
        self.take_over = take_over

    def __enter__(self) -> WorkDirLock:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        mine = dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime('%Y-%m-%d %H:%M:%S'),
                    command=' '.join(sys.argv))
        aside = self.work_dir / f'.{LOCK_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}'
        aside.write_text(json.dumps(mine) + '\n')
        try:
            self._link(aside)
        finally:
            aside.unlink()
        return self

    def _link(self, aside: Path) -> None:
        try:
            os.link(aside, self.path)
            return
        except FileExistsError:
            pass
        holder = read_lock(self.path)
        if not is_stale(holder):
            raise WorkDirLocked(f'{self.work_dir} is in use by another run ({describe(holder)}; lock file '
                                f'{self.path}): wait for it to end or pick another --work-dir')
        if not self.take_over:
            raise WorkDirLocked(f'{self.work_dir} holds the stale lock of a run that is gone '
                                f'({describe(holder)}): pass --force to break it and start over, or '
                                '--resume to continue that run')
        print(f'warning: breaking the stale lock of {self.work_dir} ({describe(holder)}): that process is '
              'gone', file=sys.stderr)
        self.path.unlink(missing_ok=True)
        try:
            os.link(aside, self.path)
        except FileExistsError:
            raise WorkDirLocked(f'{self.work_dir} was locked by another run while this one broke its stale '
                                'lock: wait for it to end or pick another --work-dir') from None

    def __exit__(self, *exc: Any) -> None:
        if read_lock(self.path).get('pid') == os.getpid():
            self.path.unlink(missing_ok=True)


def read_lock(path: Path) -> dict[str, Any]:
    """The holder named in a lock file ({} if the file is gone or unreadable, e.g. cut short by a kill)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def is_stale(holder: dict[str, Any]) -> bool:
    """Whether the lock's process is known to be gone: unreadable lock, or same host and no live process."""
    if 'pid' not in holder:
        return True
    if holder.get('host') != socket.gethostname():
        return False
    return not process_alive(int(holder['pid']))


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process of this host (a zombie, killed but not reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ('Z', 'X')


def describe(holder: dict[str, Any]) -> str:
    """The lock's holder in words, for the refusal and warning messages."""
    if 'pid' not in holder:
        return 'unreadable lock file'
    return f'pid {holder["pid"]} on host {holder.get("host")}, started {holder.get("started")}'


def prepare_work_dir(work_dir: str | Path, *, force: bool, resume: bool, keep: tuple[Path, ...] = ()) -> None:
    """Refuse, or clear, a work dir that holds a previous run, before the new run writes anything.

    Without ``force`` or ``resume`` a folder holding results or a stream checkpoint is refused
    (``FileExistsError``). With ``force`` every file of :data:`RUN_OUTPUTS` and every mmengine log folder
    (timestamp-named, holding its ``<timestamp>.log``) is removed; ``keep`` lists files to spare (the config
    being run, if it lies there). Other files in the folder are not touched.
    """
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return
    if not (force or resume):
        found = sorted({path.name for pattern in REFUSED_OUTPUTS for path in work_dir.glob(pattern)})
        if found:
            raise FileExistsError(f'{work_dir} already holds a run ({", ".join(found)}); pass --resume to '
                                  'continue it or --force to start over')
    if not force:
        return
    spared = {path.resolve() for path in keep}
    for pattern in RUN_OUTPUTS:
        for path in work_dir.glob(pattern):
            if path.is_file() and path.resolve() not in spared:
                path.unlink()
    for folder in log_folders(work_dir):
        shutil.rmtree(folder)


def log_folders(work_dir: Path) -> list[Path]:
    """mmengine's per-run log folders in ``work_dir``: ``YYYYMMDD_HHMMSS/`` holding ``YYYYMMDD_HHMMSS.log``."""
    return [path for path in work_dir.iterdir()
            if path.is_dir() and len(path.name) == LOG_FOLDER_DIGITS + 1 and path.name[8] == '_'
            and path.name.replace('_', '').isdigit() and (path / f'{path.name}.log').exists()]
