"""Silence the deprecation noise that mmseg and mmcv print when they are imported."""
import warnings

_NOISY_MODULES = r'(mmseg|mmcv|mmengine)(\..*)?'


def silence_openmmlab_import_noise() -> None:
    """Hide the import-time ``UserWarning``/``DeprecationWarning`` of the OpenMMLab packages.

    mmseg 1.2.2 warns at import about ``build_loss`` and MultiScaleDeformableAttention, none of which a
    user of this toolkit can act on; mmengine imports ``pkg_resources`` (setuptools < 81 is pinned for
    it) to resolve ``mmseg::`` config paths, whose deprecation warning is attributed to importlib.
    Warnings raised from the user's own code are untouched.
    """
    for category in (UserWarning, DeprecationWarning, FutureWarning):
        warnings.filterwarnings('ignore', category=category, module=_NOISY_MODULES)
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
