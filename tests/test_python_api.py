"""Issue 20, item 7: ``imse_seg.adapt``. The README's example runs as written (its code block, executed in a
folder laid out as the repository, the demo's data a tiny ACDC tree), and the method argument picks what
the run builds."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from mmengine.config import Config

import imse_seg
from acdc_fixture import CONDITIONS, REPO, write_acdc_tree
from imse_seg.api import set_method
from imse_seg.errors import ConfigError
from imse_seg.reporting import load_results

DEMO_CONFIG = REPO / 'configs' / 'demo_ctta.py'


def readme_block(marker: str) -> str:
    match = re.search(rf'<!-- {marker} -->\s*```python\n(.*?)```', (REPO / 'README.md').read_text(), re.S)
    assert match, f'README.md has no ```python block after <!-- {marker} -->'
    return match.group(1)


def test_readme_example_runs_as_written(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / 'configs').symlink_to(REPO / 'configs')
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data' / 'demo_source').symlink_to(REPO / 'data' / 'demo_source')
    write_acdc_tree(tmp_path / 'data' / 'demo', images_per_condition=2)
    monkeypatch.chdir(tmp_path)
    example = readme_block('python api')
    namespace: dict = {}
    exec(compile(example, 'README.md', 'exec'), namespace)
    records = namespace['records']
    work_dir = tmp_path / 'work_dirs' / 'api_demo_tent'
    assert records == load_results(work_dir)
    assert [record['key'] for record in records] == [dict(condition=c, round=r) for r in (1, 2) for c in CONDITIONS]
    assert all(record['num_images'] == 2 for record in records)
    printed = capsys.readouterr().out
    assert f"2 snow {round(records[-1]['metrics']['mIoU'], 1)}" in printed
    dumped = Config.fromfile(str(work_dir / 'demo_ctta.py'))
    assert dumped.custom_hooks[0].method == Config.fromfile(str(DEMO_CONFIG)).tent


def test_method_by_name_or_config_replaces_the_setup_hooks_method() -> None:
    cfg = Config.fromfile(str(DEMO_CONFIG))
    set_method(cfg, 'source')
    assert cfg.custom_hooks[0].method == dict(type='Source')
    set_method(cfg, dict(type='NormStatisticsAdaptation', statistics=dict(type='TestStatistics')))
    assert cfg.custom_hooks[0].method.type == 'NormStatisticsAdaptation'


def test_a_method_the_config_does_not_define_lists_those_it_does() -> None:
    cfg = Config.fromfile(str(DEMO_CONFIG))
    with pytest.raises(ConfigError, match=r"method 'tnet' is not defined by the config; it defines: .*\btent\b"):
        set_method(cfg, 'tnet')


def test_an_override_of_a_key_the_config_lacks_is_refused_before_the_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--cfg-options sets 'test_cgf'"):
        imse_seg.adapt(DEMO_CONFIG, work_dir=tmp_path / 'w', test_cgf=dict(rounds=1))
    assert not (tmp_path / 'w').exists()
