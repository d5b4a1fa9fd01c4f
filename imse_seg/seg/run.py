"""One continual-adaptation run of an mmengine config: the code path ``tools/adapt.py`` and
:func:`imse_seg.adapt` share.

:func:`configure` applies what a run asks beyond its config (:class:`RunOptions`: work dir, checkpoint,
config overrides, restart mode, visual outputs, mixed precision) as config entries and checks the result before anything
heavy is built; :func:`run` checks the source checkpoint, takes the work dir's lock, clears or refuses a
previous run there, and streams the config through mmengine's ``Runner.test``.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmseg.registry import HOOKS

from imse_seg.config_check import check_top_level
from imse_seg.errors import ConfigError
from imse_seg.work_dir import WorkDirLock, prepare_work_dir

from .engine import StreamVisualizationHook
from .preflight import check_adapt_config, check_source_checkpoint

RANK_VARIABLES = dict(pytorch='RANK', slurm='SLURM_PROCID', mpi='OMPI_COMM_WORLD_RANK')
"""Where each launcher puts the process's rank before the process group exists."""
VISUALIZATION_HOOK = 'StreamVisualizationHook'
"""The visualisation hook ``show_dir`` adds to a config whose ``default_hooks`` have none."""


@dataclass(frozen=True)
class RunOptions:
    """What a run asks beyond its config; each field is the ``tools/adapt.py`` option of the same name.

    ``show_dir``: draw the ground truth and the prediction of every ``show_interval``-th batch of each
    segment (default: every one) into ``show_dir/round_<r>/<segment>/``; ``out``: write every prediction as a
    label-index PNG into ``out/round_<r>/<segment>/``; ``amp``: mixed precision (``test_cfg.amp``).
    """
    work_dir: str | None = None
    checkpoint: str | None = None
    random_weights: bool = False
    cfg_options: Mapping[str, Any] | None = None
    launcher: str = 'none'
    force: bool = False
    resume: bool = False
    show_dir: str | None = None
    show_interval: int | None = None
    out: str | None = None
    amp: bool = False


def configure(cfg: Config, name: str, options: RunOptions) -> Config:
    """``cfg`` with ``options`` applied, checked (:func:`~imse_seg.seg.preflight.check_adapt_config`) before
    anything heavy is built; ``name`` names the default work dir, ``work_dirs/<name>``.

    A mistake (a misspelled key or type, an override of a key the config lacks, ``force`` with
    ``resume``) is a :class:`~imse_seg.errors.ConfigError`.
    """
    overrides = dict(options.cfg_options or {})
    check_top_level(cfg.keys(), added=[key.split('.')[0] for key in overrides])
    cfg.launcher = options.launcher
    if overrides:
        cfg.merge_from_dict(overrides)
    cfg.work_dir = str(options.work_dir or cfg.get('work_dir') or Path('work_dirs') / name)
    if options.checkpoint:
        cfg.load_from = options.checkpoint
    if options.random_weights:
        cfg.load_from = None
    if options.force:
        cfg.test_cfg.force = True
    if options.resume:
        cfg.test_cfg.resume = True
    if options.amp:
        cfg.test_cfg.amp = True
    set_visual_outputs(cfg, options.show_dir, options.show_interval, options.out)
    check_adapt_config(cfg)
    return cfg


def set_visual_outputs(cfg: Config, show_dir: str | None, show_interval: int | None, out: str | None) -> None:
    """Turn on the drawings (``default_hooks.visualization``: ``draw``, ``interval``, ``test_out_dir``) and
    the prediction maps (``test_evaluator.output_dir``, as mmseg's ``tools/test.py --out`` does).

    A config without a visualisation hook gets :data:`VISUALIZATION_HOOK`; one with mmseg's
    ``SegVisualizationHook`` (inherited from an mmseg config) is refused: it names drawings by image only, so
    each round would overwrite the one before.
    """
    if show_interval is not None and show_dir is None:
        raise ConfigError('--show-interval needs --show-dir: it says which images are drawn there')
    if show_interval is not None and show_interval < 1:
        raise ConfigError(f'--show-interval must be an integer >= 1, got {show_interval}')
    if show_dir is not None:
        hooks = cfg.setdefault('default_hooks', {})
        hook = hooks.get('visualization') or dict(type=VISUALIZATION_HOOK)
        hook_cls = HOOKS.get(hook['type']) if isinstance(hook['type'], str) else hook['type']
        if isinstance(hook_cls, type) and not issubclass(hook_cls, StreamVisualizationHook):
            raise ConfigError(f"--show-dir needs default_hooks.visualization to be a {VISUALIZATION_HOOK}, not "
                              f"{hook_cls.__name__}, which would overwrite each round's drawings with the next's: "
                              f"add default_hooks = dict(visualization=dict(type='{VISUALIZATION_HOOK}'))")
        hooks['visualization'] = dict(hook, draw=True, interval=show_interval or 1, test_out_dir=str(show_dir))
    if out is not None:
        if not isinstance(cfg.get('test_evaluator'), Mapping):
            raise ConfigError(f'--out needs test_evaluator to be one metric config (a dict), got '
                              f'{type(cfg.get("test_evaluator")).__name__}')
        cfg.test_evaluator.output_dir = str(out)


def run(cfg: Config, options: RunOptions, keep: Sequence[Path] = ()) -> None:
    """Stream the :func:`configure`-d ``cfg``: refuse a source checkpoint that does not load strictly (unless
    ``options.random_weights``), hold the work dir's lock (first rank), refuse or clear a previous run there
    (sparing the files of ``keep``, e.g. the config file itself) and run ``Runner.test``."""
    check_source_checkpoint(cfg, options.random_weights)
    first_rank = int(os.environ.get(RANK_VARIABLES.get(options.launcher, ''), '0')) == 0
    take_over = options.force or options.resume
    lock = WorkDirLock(cfg.work_dir, take_over=take_over) if first_rank else contextlib.nullcontext()
    with lock:
        prepare_work_dir(cfg.work_dir, force=options.force and first_rank, resume=options.resume,
                         keep=tuple(keep))
        if options.launcher == 'pytorch' and not torch.cuda.is_available():
            # mmengine's own set-up calls torch.cuda.set_device; on CPU-only hosts join the group over gloo
            # first (the runner then finds it initialised), and run without a model wrapper's device ids.
            torch.distributed.init_process_group('gloo')
            cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)
        Runner.from_cfg(cfg).test()
