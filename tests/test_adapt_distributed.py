"""Multi-process adaptation (issue 5): 2 gloo ranks = 1 process with the same global batch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from acdc_fixture import REPO, write_acdc_tree, write_config, write_tiny_checkpoint
from checkout import checkout_env

TRACE = "custom_hooks.append(dict(type='ParameterTraceHook'))\ncustom_imports = dict(imports=['imse_seg.seg', 'acdc_fixture'], allow_failed_imports=False)"
ENV = checkout_env(OMP_NUM_THREADS='1')


def run(config: Path, work_dir: Path, checkpoint: Path, processes: int) -> None:
    if processes == 1:
        command = [sys.executable, str(REPO / 'tools' / 'adapt.py')]
    else:
        command = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={processes}',
                   '--master_port=29517', str(REPO / 'tools' / 'adapt.py')]
    command += [str(config), '--checkpoint', str(checkpoint), '--work-dir', str(work_dir),
                '--cfg-options', 'custom_hooks.0.method.optimizer.lr=0.05']
    if processes > 1:
        command += ['--launcher', 'pytorch']
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=ENV, check=False,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


def test_two_gloo_ranks_match_one_process(tmp_path) -> None:
    data = write_acdc_tree(tmp_path / 'acdc', images_per_condition=4)
    checkpoint = write_tiny_checkpoint(tmp_path / 'tiny.pth')
    distributed = write_config(tmp_path / 'ddp.py', data, 'tent_stag', rounds=1, extra='\n'.join([
        TRACE]))
    single = write_config(tmp_path / 'single.py', data, 'tent_stag', rounds=1, extra='\n'.join([
        TRACE, "test_dataloader['batch_size'] = 2"]))
    run(distributed, tmp_path / 'ddp', checkpoint, processes=2)
    run(single, tmp_path / 'single', checkpoint, processes=1)

    rank0 = (tmp_path / 'ddp' / 'trace_rank0.txt').read_text().split()
    rank1 = (tmp_path / 'ddp' / 'trace_rank1.txt').read_text().split()
    one = (tmp_path / 'single' / 'trace_rank0.txt').read_text().split()
    assert len(rank0) == len(one) == 8          # 4 conditions x 4 images / global batch 2
    assert rank0 == rank1                       # identical parameters on both ranks after every step
    assert [float(v) for v in rank0] == pytest.approx([float(v) for v in one], rel=1e-5)
    assert len(set(rank0)) > 1                  # and they did move

    def miou(work_dir: Path) -> list[float]:
        lines = (work_dir / 'results.jsonl').read_text().splitlines()
        return [json.loads(line)['metrics']['mIoU'] for line in lines]
    assert miou(tmp_path / 'ddp') == pytest.approx(miou(tmp_path / 'single'), abs=1e-6)
