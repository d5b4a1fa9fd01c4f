"""The MMSegmentation adapter: registered components over :mod:`imse_seg.core`.

Importing it (``import imse_seg`` does, or list ``imse_seg.seg`` in a config's ``custom_imports``)
registers the decode head and backbone variant for published SegFormer checkpoints, the ACDC dataset,
the stream IoU metric, the adaptive model and its methods, the continual test loop and its hooks.
"""
from imse_seg import adaptation as _generic_adaptation  # noqa: F401  (registers the generic methods)
from . import adaptation, datasets, engine, evaluation, models  # noqa: F401  (registration)
