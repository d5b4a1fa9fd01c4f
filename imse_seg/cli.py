"""What the command-line tools share: a user's mistake ends the process with one line, not a traceback."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, NoReturn

from mmengine.config import Config

from .checkpoint import CheckpointError
from .errors import ConfigError

USER_ERRORS = (FileNotFoundError, FileExistsError, CheckpointError, ConfigError)
"""A missing file or folder, results a run would overwrite or a work dir in use (``WorkDirLocked``), a
checkpoint that does not fit, a config that asks for what the model or the path does not have."""


def exit_with(main: Callable[[], int]) -> NoReturn:
    """Run ``main`` and exit with its status; on a :data:`USER_ERRORS` print ``error: ...`` and exit 2."""
    try:
        status = main()
    except USER_ERRORS as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(2)
    sys.exit(status)


def read_config(path: str | Path) -> Config:
    """``Config.fromfile(path)``, with a ``{{_base_.name}}`` that no base file defines as a :class:`ConfigError`
    (mmengine raises a bare ``KeyError: 'name'``), e.g. a method the path has no config for."""
    try:
        return Config.fromfile(str(path))
    except KeyError as error:
        raise ConfigError(f'{path} refers to {{{{_base_.{error.args[0]}}}}}, which none of its _base_ files '
                          'defines') from error
