"""Package metadata for imse_seg; the pinned stack lives in requirements.txt."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith('#')]


setup(
    name='imse_seg',
    version='0.1.0',
    description='Continual test-time adaptation for semantic segmentation (IMSE + STAG) on OpenMMLab.',
    packages=find_packages(include=['imse_seg', 'imse_seg.*']),
    python_requires='>=3.10',
    install_requires=read_requirements('requirements.txt'),
    extras_require={'test': read_requirements('requirements-test.txt')},
)
