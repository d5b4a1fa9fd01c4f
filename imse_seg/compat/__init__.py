"""Compatibility with the pinned OpenMMLab stack (see ``mmcv_ops`` and ``quiet``)."""
from .mmcv_ops import install_mmcv_ops_stand_in
from .quiet import silence_openmmlab_import_noise

__all__ = ['install_mmcv_ops_stand_in', 'silence_openmmlab_import_noise']
