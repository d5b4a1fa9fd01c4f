"""The README's drop-in config works: mmseg's own SegFormer config plus the README's lines builds, runs
its pipeline on a 1080 x 1920 image and adapts (``tools/adapt.py --dry-run``, no data read).

The config is taken from the README itself, so the documentation cannot drift from what works.
"""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_dropin_config() -> str:
    readme = (REPO / 'README.md').read_text()
    match = re.search(r'<!-- drop-in config -->\s*```python\n(.*?)```', readme, re.S)
    assert match, 'README.md has no ```python block after <!-- drop-in config -->'
    return match.group(1)


def test_readme_dropin_config_builds_and_adapts(tmp_path: Path) -> None:
    text = readme_dropin_config()
    assert "mmseg::segformer/" in text and len(text.strip().splitlines()) <= 14
    config = tmp_path / 'my_ctta.py'
    config.write_text(text)
    completed = subprocess.run([sys.executable, 'tools/adapt.py', str(config), '--dry-run', '--work-dir',
                                str(tmp_path / 'work')], cwd=REPO, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = re.search(r'dry run: (\{.*\})', completed.stdout + completed.stderr).group(1)
    assert "'adapted': True" in summary and "'method': 'EntropyAdaptation'" in summary
