"""The tests run this checkout's code, in process and in the subprocesses they start (issue 23)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import imse_seg

import test_adapt_distributed
import test_reliability
from checkout import REPO, checkout_env

OWN = REPO / 'imse_seg' / '__init__.py'


def imported_in_subprocess(env: dict[str, str], cwd: Path) -> Path:
    """Where a subprocess with ``env`` finds ``imse_seg`` (located, not imported: cheap), after checking
    that it also finds the test helpers configs import (``fault_hooks``)."""
    code = ('import importlib.util as u; assert u.find_spec("fault_hooks"), "no tests/ on the path"; '
            'print(u.find_spec("imse_seg").origin)')
    result = subprocess.run([sys.executable, '-c', code], env=env, cwd=cwd, capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return Path(result.stdout.strip()).resolve()


def test_tests_and_their_subprocesses_import_this_checkout(tmp_path: Path) -> None:
    assert Path(imse_seg.__file__).resolve() == OWN
    # a subprocess that inherits the environment (tools/adapt.py in most end-to-end tests) ...
    assert imported_in_subprocess(dict(os.environ), tmp_path) == OWN
    # ... and the ones given an environment of their own
    for env in (test_reliability.ENV, test_adapt_distributed.ENV):
        assert env['PYTHONPATH'].split(os.pathsep)[:2] == [str(REPO), str(REPO / 'tests')]
        assert imported_in_subprocess(env, tmp_path) == OWN
    assert imported_in_subprocess(checkout_env(), tmp_path) == OWN
