"""Shared test set-up: deterministic, single-threaded torch (the CI machine has 2 cores)."""
import pytest
import torch
from mmengine.registry import init_default_scope

import imse_seg  # noqa: F401  (installs the mmcv.ops stand-in before any mmseg import)

torch.set_num_threads(1)
init_default_scope('mmseg')


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
