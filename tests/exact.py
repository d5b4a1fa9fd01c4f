"""Exact equality of nested states (dicts, lists, tuples, tensors, scalars) for tests that resume or reload."""
import torch


def assert_same(a, b) -> None:
    """Recursive exact equality: same types and keys, tensors of the same dtype and values."""
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    else:
        assert a == b
