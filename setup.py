"""Package metadata for imse_seg.

``install_requires`` holds the ranges the code needs, so that ``pip install -e .`` into an existing
MMSegmentation 1.x environment keeps its torch, mmengine and mmcv; the exact versions the demo and CI run
on are pinned in requirements.txt (``make install``). mmcv is not listed: full mmcv 2.x and mmcv-lite both
provide it (imse_seg installs a stand-in for the compiled ``mmcv.ops`` it needs when they are absent). timm,
which only the classification path (``imse_seg.cls``) imports, is the ``cls`` extra: it requires torchvision,
and in an environment without one pip would pull the newest torchvision and, with it, another torch
(``tools/check_install_into_mmseg.sh`` checks that the segmentation install changes no torch).
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith('#')]


INSTALL_REQUIRES = [
    'torch>=2.1',
    'mmengine>=0.10,<1.0',
    'mmsegmentation>=1.2,<2.0',
    'opencv-python>=4.5',
    'numpy>=1.24',
    'matplotlib>=3.5',
    'safetensors>=0.4',
    'tqdm>=4.60',
    'ftfy>=6.0',      # imported by mmseg's model package
    'regex',
    'setuptools<81',  # pkg_resources, which mmengine needs to resolve `mmseg::` config bases
]
CLS_REQUIRES = ['timm>=0.9']
DEMO_REQUIRES = ['albumentations>=2.0', 'scikit-learn>=1.3', 'imagecorruptions-imaug>=1.1.5', 'numba>=0.58',
                 'scikit-image>=0.21']

setup(
    name='imse_seg',
    version='0.1.0',
    description='Continual test-time adaptation for semantic segmentation (IMSE + STAG) on OpenMMLab.',
    packages=find_packages(include=['imse_seg', 'imse_seg.*']),
    python_requires='>=3.11',
    install_requires=INSTALL_REQUIRES,
    extras_require={'cls': CLS_REQUIRES, 'demo': DEMO_REQUIRES, 'test': read_requirements('requirements-test.txt')},
)
