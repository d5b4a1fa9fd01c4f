"""Which code the tests run: this checkout's, in process and in every subprocess they start.

The virtualenv's editable install of ``imse_seg`` points at the checkout it was made from; tests run from
another checkout (a git worktree) would import that one instead, in process and in the subprocesses of
the end-to-end tests. ``conftest.py`` calls :func:`use_this_checkout` before anything imports
``imse_seg``; a test that builds a subprocess environment of its own takes :func:`checkout_env`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / 'tests'


def python_path(existing: str | None = None) -> str:
    """A ``PYTHONPATH`` led by the repository root (``imse_seg``) and ``tests/`` (fixtures, test hooks)."""
    paths = [str(REPO), str(TESTS)]
    paths += [path for path in (existing or '').split(os.pathsep) if path and path not in paths]
    return os.pathsep.join(paths)


def checkout_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess that must run this checkout: ``os.environ``, :func:`python_path`,
    and ``extra`` variables."""
    return dict(os.environ, PYTHONPATH=python_path(os.environ.get('PYTHONPATH')), **extra)


def use_this_checkout() -> None:
    """Put the repository root first on ``sys.path`` and on ``PYTHONPATH`` (which subprocesses inherit)."""
    if sys.path[:1] != [str(REPO)]:
        sys.path.insert(0, str(REPO))
    os.environ['PYTHONPATH'] = python_path(os.environ.get('PYTHONPATH'))
