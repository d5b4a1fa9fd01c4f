"""The registry of adaptation components (methods, loss terms, parameter selections, retrieval).

mmseg's registries hold models, datasets, loops and hooks; the pieces a test-time adaptation *method* is
made of have no home there, so they get a registry of their own, scope ``imse_seg``, so that configs name
them like any other component: ``method=dict(type='EntropyAdaptation', ...)``.
"""
from __future__ import annotations

from typing import Any, Mapping

from mmengine.registry import DefaultScope, Registry

ADAPTATION = Registry('adaptation', scope='imse_seg',
                      locations=['imse_seg.adaptation', 'imse_seg.seg.adaptation'])


def build_adaptation(cfg: Mapping, **default_args: Any) -> Any:
    """Build an adaptation component from ``cfg`` in the ``imse_seg`` scope.

    Adaptation configs run inside mmseg's default scope, where mmengine would otherwise search an
    ``adaptation`` registry under mmseg, warn, and fall back to this one.
    """
    with DefaultScope.overwrite_default_scope('imse_seg'):
        return ADAPTATION.build(dict(cfg), default_args=default_args or None)
