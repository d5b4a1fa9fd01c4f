"""docs/adding_a_method.md: its example method and config are the files of docs/examples/, verbatim, and that
config runs the method through tools/adapt.py, which hands it every image of the stream."""
from __future__ import annotations

import importlib
import re

import torch

from acdc_fixture import CONDITIONS, REPO, write_acdc_tree
from imse_seg.reporting import load_results
from tool_module import load_tool

EXAMPLES = REPO / 'docs' / 'examples'
DOC = REPO / 'docs' / 'adding_a_method.md'
CHECKPOINT = REPO / 'data' / 'demo_source' / 'segformer_tiny_camvid.pth'
IMAGES, ROUNDS = 2, 2


def doc_block(name: str) -> str:
    match = re.search(rf'<!-- docs/examples/{re.escape(name)} -->\s*```python\n(.*?)```', DOC.read_text(), re.S)
    assert match, f'{DOC.name} has no ```python block after <!-- docs/examples/{name} -->'
    return match.group(1)


def test_the_doc_shows_the_example_files_verbatim() -> None:
    for name in ('pseudo_label.py', 'demo_ctta_pseudo_label.py'):
        assert doc_block(name) == (EXAMPLES / name).read_text(), f'docs/examples/{name} and the doc differ'


def test_the_example_method_runs_on_every_image_of_the_stream(tmp_path, monkeypatch) -> None:
    data = write_acdc_tree(tmp_path / 'acdc', images_per_condition=IMAGES)
    monkeypatch.syspath_prepend(str(EXAMPLES))   # as PYTHONPATH=docs/examples does
    method_cls = importlib.import_module('pseudo_label').PseudoLabel
    seen: dict = dict(setups=0, places=[], batches=[], models=[])
    setup, adapt, locate = method_cls.setup, method_cls.adapt, method_cls.locate

    def counting_setup(self, model, forward):
        seen['setups'] += 1
        seen['source'] = [p.detach().clone() for p in model.parameters()]
        return setup(self, model, forward)

    def counting_adapt(self, model, inputs, valid=None):
        seen['batches'].append(inputs.shape[0])
        seen['models'].append(model)
        return adapt(self, model, inputs, valid)

    def recording_locate(self, where):
        seen['places'].append((where['round'], where['segment'], tuple(where['images'])))
        return locate(self, where)

    monkeypatch.setattr(method_cls, 'setup', counting_setup)
    monkeypatch.setattr(method_cls, 'adapt', counting_adapt)
    monkeypatch.setattr(method_cls, 'locate', recording_locate)
    work_dir = tmp_path / 'work'
    status = load_tool('adapt').main([str(EXAMPLES / 'demo_ctta_pseudo_label.py'), '--checkpoint', str(CHECKPOINT),
                                      '--work-dir', str(work_dir), '--cfg-options', f'test_cfg.rounds={ROUNDS}',
                                      f'test_dataloader.dataset.data_root={data}'])
    assert status == 0
    stream = [(r, c, (str(path),)) for r in range(1, ROUNDS + 1) for c in CONDITIONS
              for path in sorted((data / 'rgb_anon' / c).rglob('*_rgb_anon.png'))]
    assert seen['setups'] == 1
    assert seen['places'] == stream, 'the method is told each image, in stream order'
    assert seen['batches'] == [1] * len(stream), 'and adapts on each'
    model = seen['models'][-1]
    assert all(m is model for m in seen['models'])
    assert any(not torch.equal(before, after.detach()) for before, after in zip(seen['source'], model.parameters()))
    assert [r['key'] for r in load_results(work_dir)] == [dict(condition=c, round=r) for r in range(1, ROUNDS + 1)
                                                          for c in CONDITIONS]
