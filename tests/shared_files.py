"""Third-party files from the shared folder in tests: skipped with the path named where they are absent,
except under CI (``IMSE_SEG_REQUIRE_SHARED=1``, set by .ci/run), where absence fails: CI has them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from imse_seg.third_party import ThirdPartyFile

REQUIRE_ENV = 'IMSE_SEG_REQUIRE_SHARED'


def shared_path(item: ThirdPartyFile) -> Path:
    """The path of ``item``; skips the test (fails it under CI) when it is absent."""
    path = item.path()
    if not path.exists():
        reason = f'needs {item.name} at {path} (set {item.env}); not part of the repository'
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f'{reason}, and {REQUIRE_ENV} is set: CI must have it')
        pytest.skip(reason)
    return path
