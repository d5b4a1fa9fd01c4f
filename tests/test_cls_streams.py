"""Classification stream settings: block order, segment keys, pooling, label-shifted order."""
from collections import Counter

import numpy as np
import pytest

from imse_seg.cls.streams import (GRADUAL_SEVERITIES, IMAGENET_C_CORRUPTIONS, DirichletOrder, MixedStream,
                                  SequentialStream, ShuffledOrder, build_stream)


def fake_folder(corruption: str, severity: int) -> list[tuple[str, int]]:
    return [(f'{corruption}/{severity}/{i}.png', i % 3) for i in range(6)]


def test_continual_is_the_standard_order_at_severity_5():
    stream = build_stream(dict(type='SequentialStream'))
    assert stream.folders() == [(c, 5) for c in IMAGENET_C_CORRUPTIONS]
    blocks = stream.blocks(fake_folder)
    assert [b.name for b in blocks] == [f'{c}/5' for c in IMAGENET_C_CORRUPTIONS]
    assert all({s.key for s in b.samples} == {(b.name.split('/')[0], 5, 1)} for b in blocks)
    assert sorted(s.path for s in blocks[0].samples) == sorted(p for p, _ in fake_folder('gaussian_noise', 5))


def test_gradual_pools_the_two_visits_of_a_severity_and_recurring_repeats():
    stream = SequentialStream(['fog', 'snow'], GRADUAL_SEVERITIES, rounds=2)
    blocks = stream.blocks(fake_folder)
    assert len(blocks) == 2 * 2 * len(GRADUAL_SEVERITIES)
    assert [b.name for b in blocks[:9]] == [f'fog/{s}' for s in GRADUAL_SEVERITIES]
    counts = Counter(s.key for b in blocks for s in b.samples)
    assert len(counts) == 2 * 5 * 2
    assert counts[('fog', 1, 1)] == 12 and counts[('fog', 5, 2)] == 6


def test_mixed_shuffles_all_corruptions_into_one_block_per_round():
    blocks = MixedStream(['fog', 'snow', 'frost'], severity=5, rounds=2).blocks(fake_folder)
    assert len(blocks) == 2 and len(blocks[0].samples) == 18
    corruptions = [s.key[0] for s in blocks[0].samples]
    assert corruptions != sorted(corruptions)
    assert {s.key[2] for s in blocks[1].samples} == {2}


def test_dirichlet_order_is_a_permutation_with_fewer_classes_per_batch_than_shuffling():
    labels = np.repeat(np.arange(10), 50)
    classes_per_batch = {}
    for name, order in (('shuffled', ShuffledOrder()), ('dirichlet', DirichletOrder(concentration=0.1))):
        permutation = order(labels, np.random.default_rng(0))
        assert sorted(permutation) == list(range(len(labels)))
        batches = labels[permutation].reshape(-1, 25)
        classes_per_batch[name] = np.mean([len(set(batch)) for batch in batches])
    assert classes_per_batch['shuffled'] > 8
    assert classes_per_batch['dirichlet'] < 0.5 * classes_per_batch['shuffled']


def test_bad_stream_arguments_are_refused():
    with pytest.raises(ValueError, match='SequentialStream needs corruptions, severities and rounds >= 1'):
        SequentialStream(['fog'], [5], rounds=0)
    with pytest.raises(ValueError, match='DirichletOrder needs concentration > 0 and slots >= 1, got 0'):
        DirichletOrder(concentration=0)
