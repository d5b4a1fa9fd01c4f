"""Test hooks that inject faults into a running stream (imported by configs through ``custom_imports``)."""
from __future__ import annotations

import random
import time

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class NonFiniteInputHook(Hook):
    """Make the segmentor's backbone see Inf inputs during the stream batches (counted from 0) in ``batches``.

    The hook stays for the whole batch, so the method's update and the guard's fallback prediction both
    see the non-finite input.
    """

    def __init__(self, batches: list[int]) -> None:
        self.batches = set(batches)
        self.seen = 0
        self.handle = None

    def before_test_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self.seen in self.batches:
            model = runner.model.module if hasattr(runner.model, 'method') else runner.model.module.module
            self.handle = model.backbone.register_forward_pre_hook(
                lambda module, args: (args[0] * float('inf'),) + tuple(args[1:]))
        self.seen += 1

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


@HOOKS.register_module()
class GlobalRandomInputHook(Hook):
    """Shift the brightness of every stream image by an offset drawn from the global random generators.

    The offset sums one draw each from torch's, NumPy's and Python's generator, so the stream's results
    depend on all three states: a stream resumed mid-way matches the uninterrupted one only if the resume
    restores them (nothing in the tested configs draws from them otherwise).
    """

    def before_test_iter(self, runner, batch_idx, data_batch=None) -> None:
        images = data_batch.get('inputs', [])
        for index, image in enumerate(images):
            offset = int(torch.randint(-8, 9, ())) + int(np.random.randint(-8, 9)) + random.randint(-8, 8)
            images[index] = (image.int() + offset).clamp(0, 255).to(image.dtype)


@HOOKS.register_module()
class SleepHook(Hook):
    """Sleep ``seconds`` after every stream batch: keeps a tiny run going while a test starts another."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        time.sleep(self.seconds)
