"""Shared test set-up: this checkout's code (tests/checkout.py), deterministic, single-threaded torch (the
CI machine has 2 cores)."""
import os

from checkout import use_this_checkout

use_this_checkout()
# Subprocesses (tools/adapt.py in the end-to-end tests) single-threaded too: two OpenMP threads per process
# on a shared 2-core machine made a CoTTA stream several times slower.
os.environ.setdefault('OMP_NUM_THREADS', '1')

import pytest  # noqa: E402
import torch  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import imse_seg  # noqa: E402,F401  (installs the mmcv.ops stand-in before any mmseg import)

torch.set_num_threads(1)
init_default_scope('mmseg')


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
