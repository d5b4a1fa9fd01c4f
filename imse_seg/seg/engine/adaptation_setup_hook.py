"""Builds the adaptation method on the loaded model, before the test stream starts."""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from imse_seg.core import count_parameters

from imse_seg.registry import build_adaptation

DEFAULT_GUARD = MappingProxyType(dict(type='DivergenceGuard'))
"""The guard an adaptation runs under unless the config says otherwise (non-finite checks only)."""


@HOOKS.register_module()
class AdaptationSetupHook(Hook):
    """In ``before_test``, build ``method`` and attach it to the :class:`AdaptiveSegmentor`.

    ``Runner.test`` loads the checkpoint after ``before_run`` and before the test loop starts, so
    ``before_test`` is the first point where spectral surgery, STAG anchors and frozen copies see the
    real weights (shared/design.md). The hook also checks that the model's class count matches the
    dataset's, and logs how many parameters the method adapts. It works with mmengine's plain
    ``TestLoop`` (one segment) as well as with :class:`ContinualTestLoop`. A method is a config
    (``dict(type='EntropyAdaptation', ...)``), so switching methods is replacing this hook's entry in
    ``custom_hooks``. The method adapts under a :class:`~imse_seg.adaptation.DivergenceGuard` built from
    ``guard`` (by default: non-finite updates are refused, no collapse check); ``guard=None`` runs the
    method bare, so that a non-finite update ends the run. The method's forwards run in mixed precision when
    the loop asks for it (:class:`ContinualTestLoop`'s ``amp``).

    Args:
        method: Config of the adaptation method (registry :data:`imse_seg.registry.ADAPTATION`).
        guard: Config of the divergence guard, e.g. ``dict(type='DivergenceGuard', collapse_fraction=0.95)``.
    """

    priority = 'VERY_HIGH'

    def __init__(self, method: Mapping, guard: Mapping | None = DEFAULT_GUARD) -> None:
        self.method_cfg = dict(method)
        self.guard_cfg = None if guard is None else dict(guard)

    def before_test(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'set_method'):
            raise TypeError(f'AdaptationSetupHook needs an AdaptiveSegmentor model, got {type(model).__name__}')
        classes = runner.test_loop.dataloader.dataset.metainfo.get('classes')
        check_classes(model.module.decode_head.num_classes, classes)
        guard = None if self.guard_cfg is None else build_adaptation(self.guard_cfg)
        amp = getattr(runner.test_loop, 'amp', False)
        model.set_method(build_adaptation(self.method_cfg), guard, amp=amp)
        print_log(f'adaptation method {self.method_cfg["type"]}{" (mixed precision)" if amp else ""}: '
                  f'{count_parameters(model.module)}', logger='current')


def check_classes(num_classes: int, classes: tuple | None) -> None:
    """Refuse a model whose class count is not the dataset's (its predictions would be scored wrongly)."""
    if classes is not None and len(classes) != num_classes:
        raise ValueError(f'the model predicts {num_classes} classes but the dataset has {len(classes)} '
                         f'({", ".join(classes[:4])}, ...): model and data do not match')
