"""The package's requirements are ranges that the pinned stack satisfies (issue 20, installation)."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def setup_lists() -> dict[str, list[str]]:
    tree = ast.parse((REPO / 'setup.py').read_text())
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and node.targets[0].id.endswith('_REQUIRES')}


def pinned() -> dict[str, str]:
    pins = {}
    for line in (REPO / 'requirements.txt').read_text().splitlines():
        if line.strip() and not line.startswith('#'):
            requirement = Requirement(line)
            pins[requirement.name.lower()] = str(requirement.specifier).removeprefix('==')
    return pins


def test_requirements_are_ranges_that_the_pins_satisfy() -> None:
    pins = pinned()
    for name, entries in setup_lists().items():
        for entry in entries:
            requirement = Requirement(entry)
            assert not any(spec.operator == '==' for spec in requirement.specifier), f'{entry} is an exact pin'
            version = pins.get(requirement.name.lower())
            assert version is not None, f'{requirement.name} ({name}) is not pinned in requirements.txt'
            assert requirement.specifier.contains(version), f'the pin {version} is outside {entry}'


def test_installing_into_the_pinned_environment_changes_nothing_else() -> None:
    result = subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-index',
                             '--no-build-isolation', '--quiet', '--report', '-',
                             str(REPO)], capture_output=True, text=True, cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert [item['metadata']['name'] for item in report['install']] == ['imse_seg']


EXTRAS_ONLY = ('timm', 'torchvision', 'albumentations')
"""Packages only the extras bring (``cls``: timm, which needs torchvision; ``demo``: albumentations)."""


def test_segmentation_path_runs_and_refuses_rain_without_the_extras() -> None:
    script = f'''
import sys
for name in {EXTRAS_ONLY!r}:
    sys.modules[name] = None  # import fails as if not installed
import numpy as np
from mmengine.config import Config
import imse_seg
from imse_seg.seg.preflight import check_adapt_config
from imse_seg.demo.weather import render
check_adapt_config(Config.fromfile('configs/demo_ctta.py'))  # resolves the method: the registry's modules load
try:
    render('rain', np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), np.random.default_rng(0))
except ModuleNotFoundError as error:
    print(error)
'''
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "the 'demo' extra" in result.stdout


def test_extras_hold_what_only_the_extras_need() -> None:
    lists = setup_lists()
    install = {Requirement(entry).name for entry in lists['INSTALL_REQUIRES']}
    assert not install & set(EXTRAS_ONLY)
    assert {Requirement(entry).name for entry in lists['CLS_REQUIRES']} == {'timm'}


def test_classification_tool_without_the_cls_extra_stops_in_one_line() -> None:
    script = '''
import runpy, sys
sys.modules['timm'] = None  # import fails as if not installed
sys.argv = ['tools/adapt_cls.py', 'configs/cls/cifar10c_tent.py', '--dry-run']
runpy.run_path('tools/adapt_cls.py', run_name='__main__')
'''
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, cwd=REPO, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the classification path needs timm, which is not installed: pip install -e '.[cls]'"]
