"""What the command-line tools share: a user's mistake ends the process with one line, not a traceback."""
from __future__ import annotations

import sys
from typing import Callable, NoReturn

from .checkpoint import CheckpointError
from .config_check import ConfigError

USER_ERRORS = (FileNotFoundError, FileExistsError, CheckpointError, ConfigError)
"""A missing file or folder, results a run would overwrite or a work dir in use (``WorkDirLocked``), a
checkpoint that does not fit, a config mistake."""


def exit_with(main: Callable[[], int]) -> NoReturn:
    """Run ``main`` and exit with its status; on a :data:`USER_ERRORS` print ``error: ...`` and exit 2."""
    try:
        status = main()
    except USER_ERRORS as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(2)
    sys.exit(status)
