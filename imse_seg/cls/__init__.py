"""The classification adapter: timm models on ImageNet-C-layout streams, adapted by :mod:`imse_seg.adaptation`.

Only what is specific to classification lives here (timm model loading, the corruption-folder data, the
stream settings, the per-segment accuracy loop); the methods, losses, spectral layers and code bank are the
shared ones of :mod:`imse_seg.adaptation` and :mod:`imse_seg.core`.
"""
