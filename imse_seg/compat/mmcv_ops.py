"""A stand-in for ``mmcv.ops`` when mmcv's compiled extension is absent (``mmcv-lite``).

Full mmcv 2.1 does not build against current torch, so the pinned stack uses ``mmcv-lite``, which ships the
Python sources of ``mmcv.ops`` but not ``mmcv._ext``; importing ``mmcv.ops`` then fails, and
mmsegmentation 1.2.2 imports it at module level (``models/utils/point_sample.py``,
``utils/mask_classification.py``, ``models/losses/focal_loss.py``, ``models/decode_heads/san_head.py``).
The stand-in registered here provides what those imports need: ``point_sample`` (plain PyTorch, loaded from
mmcv's own ``ops/point_sample.py``) and, for the compiled ops that mmseg names but SegFormer never uses,
placeholders that raise a clear error when used. Where ``mmcv._ext`` imports (a full mmcv), nothing is
touched.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

COMPILED_OPS = ('sigmoid_focal_loss', 'CrissCrossAttention', 'PSAMask', 'DeformConv2d',
                'ModulatedDeformConv2d', 'SyncBatchNorm')


def _missing_op(name: str) -> type:
    def fail(*args, **kwargs):
        raise RuntimeError(f'mmcv.ops.{name} needs mmcv compiled with its C++/CUDA ops; this environment '
                           'has mmcv-lite (imse_seg installs a stand-in for mmcv.ops). Install a full '
                           'mmcv build to use it.')

    return type(name, (), {'__init__': fail, '__call__': fail, '__doc__': f'Unavailable: {name}.'})


def _full_mmcv_available() -> bool:
    try:
        import mmcv._ext  # noqa: F401
    except ImportError:
        return False
    return True


def install_mmcv_ops_stand_in() -> bool:
    """Register the ``mmcv.ops`` stand-in if mmcv is installed without its compiled ops.

    Returns True when the stand-in is (now or already) in place, False when mmcv is absent or complete.
    """
    if importlib.util.find_spec('mmcv') is None or _full_mmcv_available():
        return False
    existing = sys.modules.get('mmcv.ops')
    if existing is not None:
        return getattr(existing, '__imse_seg_stand_in__', False)
    import mmcv

    module = types.ModuleType('mmcv.ops', __doc__)
    module.__imse_seg_stand_in__ = True
    source = Path(mmcv.__file__).parent / 'ops' / 'point_sample.py'
    spec = importlib.util.spec_from_file_location('mmcv.ops.point_sample', source)
    point_sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(point_sample)
    sys.modules['mmcv.ops.point_sample'] = point_sample
    module.point_sample = point_sample.point_sample
    module.bilinear_grid_sample = point_sample.bilinear_grid_sample
    module.rel_roi_point_to_rel_img_point = point_sample.rel_roi_point_to_rel_img_point
    for name in COMPILED_OPS:
        setattr(module, name, _missing_op(name))
    sys.modules['mmcv.ops'] = module
    mmcv.ops = module
    return True
