"""imse_seg: continual test-time adaptation of segmentation models (IMSE + STAG) on OpenMMLab.

Importing the package makes the pinned OpenMMLab stack usable: it registers the ``mmcv.ops`` stand-in
when mmcv has no compiled ops (see :mod:`imse_seg.compat`), quiets the stack's import-time warnings, and
registers the mmseg components of :mod:`imse_seg.seg`. The framework-free core is :mod:`imse_seg.core`;
:func:`adapt` runs a segmentation config's stream from Python, as ``tools/adapt.py`` does.
"""
import importlib.util

from .compat import install_mmcv_ops_stand_in, silence_openmmlab_import_noise

__version__ = '0.1.0'

silence_openmmlab_import_noise()
install_mmcv_ops_stand_in()
if importlib.util.find_spec('mmseg') is not None:
    from . import seg  # noqa: F401,E402  (registers the mmseg components)
from .api import adapt  # noqa: E402
