"""Builds the adaptation method on the loaded model, before the test stream starts."""
from __future__ import annotations

from typing import Mapping

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from imse_seg.core import count_parameters

from imse_seg.registry import build_adaptation


@HOOKS.register_module()
class AdaptationSetupHook(Hook):
    """In ``before_test``, build ``method`` and attach it to the :class:`AdaptiveSegmentor`.

    ``Runner.test`` loads the checkpoint after ``before_run`` and before the test loop starts, so
    ``before_test`` is the first point where spectral surgery, STAG anchors and frozen copies see the
    real weights (shared/design.md). The hook also checks that the model's class count matches the
    dataset's, and logs how many parameters the method adapts. It works with mmengine's plain
    ``TestLoop`` (one segment) as well as with :class:`ContinualTestLoop`. A method is a config
    (``dict(type='EntropyAdaptation', ...)``), so switching methods is replacing this hook's entry in
    ``custom_hooks``.

    Args:
        method: Config of the adaptation method (registry :data:`imse_seg.registry.ADAPTATION`).
    """

    priority = 'VERY_HIGH'

    def __init__(self, method: Mapping) -> None:
        self.method_cfg = dict(method)

    def before_test(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'set_method'):
            raise TypeError(f'AdaptationSetupHook needs an AdaptiveSegmentor model, got {type(model).__name__}')
        classes = runner.test_loop.dataloader.dataset.metainfo.get('classes')
        check_classes(model.module.decode_head.num_classes, classes)
        model.set_method(build_adaptation(self.method_cfg))
        print_log(f'adaptation method {self.method_cfg["type"]}: {count_parameters(model.module)}',
                  logger='current')


def check_classes(num_classes: int, classes: tuple | None) -> None:
    """Refuse a model whose class count is not the dataset's (its predictions would be scored wrongly)."""
    if classes is not None and len(classes) != num_classes:
        raise ValueError(f'the model predicts {num_classes} classes but the dataset has {len(classes)} '
                         f'({", ".join(classes[:4])}, ...): model and data do not match')
