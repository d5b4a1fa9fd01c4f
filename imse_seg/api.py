"""The Python entry point: continual adaptation of a segmentation config in one call, for users who would
rather not edit config files. The same run as ``tools/adapt.py`` (:mod:`imse_seg.seg.run` is their one code
path): same checks, work-dir lock, results files and visual outputs.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

from mmengine.config import Config

from .cli import read_config
from .errors import ConfigError
from .registry import methods_for

SETUP_HOOK = 'AdaptationSetupHook'
"""The custom hook whose ``method`` a :func:`adapt` call's ``method`` replaces."""


def adapt(config: str | Path | Config, method: str | Mapping[str, Any] | None = None, *,
          work_dir: str | Path | None = None, checkpoint: str | None = None, random_weights: bool = False,
          force: bool = False, resume: bool = False, show_dir: str | Path | None = None,
          show_interval: int | None = None, out: str | Path | None = None, amp: bool = False,
          **overrides: Any) -> list[dict]:
    """Adapt the segmenter of ``config`` (a config file or a loaded ``Config``) online over its stream and
    return the results: one record per condition and round, in stream order, as ``results.jsonl`` holds
    them (``record['key']`` names condition and round, ``record['metrics']`` holds mIoU, aAcc, mAcc).

    ``method``: a method the config defines by name (e.g. ``'tent'``, from its methods base file), or a
    method config (``dict(type='EntropyAdaptation', ...)``); None keeps the config's. ``overrides``: config
    entries, merged as ``--cfg-options`` merges them, e.g. ``test_cfg=dict(rounds=3)`` or
    ``**{'test_cfg.rounds': 3}``. The other keywords are ``tools/adapt.py``'s options of the same name
    (:class:`~imse_seg.seg.run.RunOptions`). Mistakes raise what the tool reports in one line
    (``ConfigError``, ``CheckpointError``, ``FileNotFoundError``, ``FileExistsError`` for a work dir that
    holds a run, without ``force`` or ``resume``); a SIGTERM or Ctrl-C during the stream saves its state and
    raises ``StreamInterrupted``, after which ``resume=True`` continues.
    """
    from .reporting import load_results
    from .seg.run import RunOptions, configure, run

    path = None if isinstance(config, Config) else Path(config)
    cfg = read_config(path) if path is not None else copy.deepcopy(config)
    if method is not None:
        set_method(cfg, method)
    name = Path(path or cfg.filename or '').stem
    if not (work_dir or cfg.get('work_dir') or name):
        raise ConfigError('a config that was not read from a file needs work_dir= (or its work_dir entry)')
    options = RunOptions(work_dir=None if work_dir is None else str(work_dir), checkpoint=checkpoint,
                         random_weights=random_weights, cfg_options=overrides, force=force, resume=resume,
                         show_dir=None if show_dir is None else str(show_dir), show_interval=show_interval,
                         out=None if out is None else str(out), amp=amp)
    cfg = configure(cfg, name, options)
    run(cfg, options, keep=() if path is None else (path,))
    return load_results(cfg.work_dir)


def set_method(cfg: Config, method: str | Mapping[str, Any]) -> None:
    """Make ``method`` (a name the config defines, or a method config) the one its setup hook builds."""
    hooks = [hook for hook in cfg.get('custom_hooks') or [] if hook.get('type') == SETUP_HOOK]
    if len(hooks) != 1:
        raise ConfigError(f'method= needs one {SETUP_HOOK} in the config\'s custom_hooks, found {len(hooks)}')
    if isinstance(method, str):
        defined = [key for key, value in cfg.items()
                   if isinstance(value, Mapping) and value.get('type') in methods_for('segmentation')]
        if method not in defined:
            raise ConfigError(f'method {method!r} is not defined by the config; it defines: '
                              f'{", ".join(defined) or "none (give a method config instead)"}')
        method = cfg[method]
    hooks[0]['method'] = copy.deepcopy(dict(method))
