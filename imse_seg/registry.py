"""The registry of adaptation components (methods, loss terms, parameter selections, retrieval).

mmseg's registries hold models, datasets, loops and hooks; the pieces a test-time adaptation *method* is
made of have no home there, so they get a registry of their own, scope ``imse_seg``, so that configs name
them like any other component: ``method=dict(type='EntropyAdaptation', ...)``.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Mapping

from mmengine.registry import DefaultScope, Registry

from imse_seg.errors import ConfigError

CLASSIFICATION_EXTRA = ('timm', 'torchvision')
"""What the classification path imports beyond the base install (``pip install -e .[cls]``)."""


def component_locations() -> list[str]:
    """The modules that register the components: the classification CoTTA's only where the ``cls`` extra is
    installed (it imports torchvision), so that a segmentation install needs neither timm nor torchvision."""
    locations = ['imse_seg.adaptation', 'imse_seg.seg.adaptation']
    if all(importlib.util.find_spec(name) is not None for name in CLASSIFICATION_EXTRA):
        locations.append('imse_seg.cls.cotta')
    return locations


ADAPTATION = Registry('adaptation', scope='imse_seg', locations=component_locations())


def build_adaptation(cfg: Mapping, **default_args: Any) -> Any:
    """Build an adaptation component from ``cfg`` in the ``imse_seg`` scope.

    Adaptation configs run inside mmseg's default scope, where mmengine would otherwise search an
    ``adaptation`` registry under mmseg, warn, and fall back to this one.
    """
    with DefaultScope.overwrite_default_scope('imse_seg'):
        return ADAPTATION.build(dict(cfg), default_args=default_args or None)


def methods_for(task: str) -> list[str]:
    """The registered method types that run on ``task`` (``'segmentation'`` or ``'classification'``)."""
    ADAPTATION.import_from_location()
    return sorted(name for name, obj in ADAPTATION.module_dict.items()
                  if isinstance(obj, type) and task in getattr(obj, 'tasks', ()))


def method_for(type_name: str, task: str) -> type:
    """The registered method class ``type_name`` if it runs on ``task``; a type that is not registered, or
    that runs on other tasks only (CoTTA needs a segmentor), is a :class:`~imse_seg.errors.ConfigError`
    that lists the methods which do run on ``task``."""
    with DefaultScope.overwrite_default_scope('imse_seg'):
        method_cls = ADAPTATION.get(type_name)
    if method_cls is None or task not in getattr(method_cls, 'tasks', (task,)):
        why = 'is not a registered method' if method_cls is None else \
            f'runs on {" and ".join(method_cls.tasks)} only'
        raise ConfigError(f'method type {type_name!r} {why}; the {task} path runs: '
                          f'{", ".join(methods_for(task))}')
    return method_cls


def build_method(cfg: Mapping, task: str) -> Any:
    """Build the adaptation method ``cfg`` for ``task`` (:func:`method_for` checks that it runs there)."""
    method_for(cfg['type'], task)
    return build_adaptation(cfg)
