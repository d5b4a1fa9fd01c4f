"""imse_seg: continual test-time adaptation of segmentation models (IMSE + STAG) on OpenMMLab.

Importing the package makes the pinned OpenMMLab stack usable: it registers the ``mmcv.ops`` stand-in
when mmcv has no compiled ops (see :mod:`imse_seg.compat`) and quiets the stack's import-time warnings.
The framework-free core is :mod:`imse_seg.core`.
"""
from .compat import install_mmcv_ops_stand_in, silence_openmmlab_import_noise

__version__ = '0.1.0'

silence_openmmlab_import_noise()
install_mmcv_ops_stand_in()
