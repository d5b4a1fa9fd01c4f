"""What ``tools/adapt.py`` checks before it builds a runner: config mistakes and the source checkpoint.

Everything here reads the config and the checkpoint only, so a run refused for a mistake writes nothing.
"""
from __future__ import annotations

from mmengine.config import Config
from mmengine.registry import OPTIMIZERS as ROOT_OPTIMIZERS
from mmengine.registry import init_default_scope
from mmseg.registry import HOOKS, LOOPS, MODELS

from imse_seg.checkpoint import CheckpointError
from imse_seg.config_check import check_components
from imse_seg.registry import ADAPTATION

from .checkpoint import NO_CHECKPOINT, check_checkpoint_classes, check_checkpoint_fits

ADAPTATION_REGISTRIES = (ADAPTATION, ROOT_OPTIMIZERS)
"""Where the types of a method config and its parts (selections, terms, optimiser) are registered."""


def check_adapt_config(cfg: Config) -> None:
    """Refuse (``ConfigError``) a misspelled type or argument of the loop, the hooks (default and custom), the
    method and guard, and option values the loop rejects (e.g. ``test_cfg.rounds=0``)."""
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    if cfg.get('test_cfg') is not None and 'type' in cfg.test_cfg:
        check_components(cfg.test_cfg, 'test_cfg', (LOOPS,), descend=False)
    for key, hook in (cfg.get('default_hooks') or {}).items():
        if isinstance(hook, dict) and 'type' in hook:
            check_components(hook, f'default_hooks.{key}', (HOOKS,), descend=False)
    for index, hook in enumerate(cfg.get('custom_hooks') or []):
        path = f'custom_hooks.{index}'
        check_components(hook, path, (HOOKS,), descend=False)
        for part in ('method', 'guard'):
            if isinstance(hook.get(part), dict):
                check_components(hook[part], f'{path}.{part}', ADAPTATION_REGISTRIES)


def check_source_checkpoint(cfg: Config, random_weights: bool) -> None:
    """Refuse a run without a source checkpoint (unless ``random_weights``), or with one that does not load
    strictly into the configured segmentor (``CheckpointError``: missing, unexpected, mis-shaped tensors)."""
    if random_weights:
        return
    if not cfg.get('load_from'):
        raise CheckpointError(NO_CHECKPOINT)
    check_checkpoint_classes(cfg.load_from, cfg.model.module.decode_head.num_classes)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    check_checkpoint_fits(cfg.load_from, MODELS.build(cfg.model.module))
