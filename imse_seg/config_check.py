"""Config mistakes answered before anything is built: the key that is wrong and the closest valid name.

mmengine builds a config's parts lazily, deep inside the run: a misspelled ``type`` ends in the registry's
``KeyError``, a misspelled argument in the constructor's ``TypeError``, both as tracebacks after the run has
started writing. :func:`check_components` walks the parts of a config that the adaptation tools build
from registries (each dict with a ``type``) and refuses, with a :class:`ConfigError` naming the key path,

- a ``type`` its registry does not hold (closest registered names offered),
- an argument the registered class does not take (closest argument names offered),
- a value the class's own ``check_options`` rejects (e.g. ``test_cfg.rounds=0``).

:func:`check_top_level` refuses top-level keys that look like misspelled runner keys (``load_form``) and
``--cfg-options`` that add a top-level key the config does not have.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Iterable, Mapping

from mmengine.registry import Registry

from .errors import ConfigError

RUNNER_KEYS = ('model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader', 'train_cfg',
               'val_cfg', 'test_cfg', 'auto_scale_lr', 'optim_wrapper', 'param_scheduler', 'val_evaluator',
               'test_evaluator', 'default_hooks', 'custom_hooks', 'data_preprocessor', 'load_from', 'resume',
               'launcher', 'env_cfg', 'log_processor', 'log_level', 'visualizer', 'default_scope',
               'randomness', 'experiment_name', 'model_wrapper_cfg', 'custom_imports', 'compile')
"""The top-level keys mmengine's ``Runner.from_cfg`` (and its config loader) read."""
BUILDER_KEYS = ('type', '_scope_')
"""Keys of a component config that mmengine's builder takes, not the component (``_scope_``: the registry
scope, which configs inherited with ``mmseg::`` carry)."""


def closest(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the candidate closest to ``name``, or ``''`` if none is close."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ''


def check_top_level(keys: Iterable[str], added: Iterable[str] = ()) -> None:
    """Refuse a top-level key close to, but not, a runner key, and an ``added`` key the config lacks.

    ``keys``: the config's top-level keys (its own variables, e.g. ``test_pipeline``, are fine);
    ``added``: the top-level names of the ``--cfg-options`` keys.
    """
    keys = list(keys)
    for key in keys:
        if key not in RUNNER_KEYS and difflib.get_close_matches(key, RUNNER_KEYS, n=1, cutoff=0.8):
            raise ConfigError(f"unknown top-level config key '{key}'{closest(key, RUNNER_KEYS)}")
    for key in added:
        if key not in keys:
            raise ConfigError(f"--cfg-options sets '{key}', which is not a top-level key of the config"
                              f"{closest(key, list(RUNNER_KEYS) + keys)}")


def check_components(cfg: Mapping[str, Any], path: str, registries: tuple[Registry, ...],
                     descend: bool = True) -> None:
    """Check the component config ``cfg`` (found at ``path``) and, with ``descend``, those nested in it.

    ``registries``: where its ``type`` (and the nested ones') may be registered, searched in order.
    ``descend=False`` for a component whose nested configs belong to other registries (a loop's dataloader).
    """
    cls = resolve(cfg['type'], path, registries)
    arguments = {key: value for key, value in cfg.items() if key not in BUILDER_KEYS}
    names = accepted_arguments(cls)
    if names is not None:
        for key in arguments:
            if key not in names:
                raise ConfigError(f"{path}.{key}: {cfg['type']} takes no argument '{key}'{closest(key, names)}")
    check = getattr(cls, 'check_options', None)
    if check is not None:
        try:
            check(**arguments)
        except (ValueError, TypeError) as error:
            raise ConfigError(f'{path}: {error}') from error
    if not descend:
        return
    for key, value in arguments.items():
        for sub_path, sub_cfg in nested_components(value, f'{path}.{key}'):
            check_components(sub_cfg, sub_path, registries)


def resolve(type_name: Any, path: str, registries: tuple[Registry, ...]) -> Any:
    """The class registered as ``type_name`` in the first of ``registries`` holding it (a class passes)."""
    if not isinstance(type_name, str):
        return type_name
    for registry in registries:
        found = registry.get(type_name)
        if found is not None:
            return found
    known = [name for registry in registries for name in registry.module_dict]
    where = ', '.join(f'{registry.scope}::{registry.name}' for registry in registries)
    raise ConfigError(f"{path}.type: '{type_name}' is not registered ({where}){closest(type_name, known)}")


def accepted_arguments(cls: Any) -> list[str] | None:
    """The keyword arguments ``cls`` takes from a config (None: it takes any, ``**kwargs``), and the keys its
    builder takes out before calling it (``extra_config_keys``, e.g. an objective term's ``weight``)."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            and p.name not in ('params', 'runner')] + list(getattr(cls, 'extra_config_keys', ()))


def nested_components(value: Any, path: str) -> list[tuple[str, Mapping]]:
    """The ``(path, cfg)`` of the component configs (dicts with a ``type``) in ``value``, one level down
    through plain dicts and lists."""
    if isinstance(value, Mapping):
        if 'type' in value:
            return [(path, value)]
        return [found for key, item in value.items() for found in nested_components(item, f'{path}.{key}')]
    if isinstance(value, (list, tuple)):
        return [found for index, item in enumerate(value) for found in nested_components(item, f'{path}.{index}')]
    return []
