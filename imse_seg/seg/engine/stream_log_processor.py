"""mmengine's log processor with the stream's place in every test progress line."""
from __future__ import annotations

from mmengine.registry import LOG_PROCESSORS
from mmengine.runner import LogProcessor


@LOG_PROCESSORS.register_module()
class StreamLogProcessor(LogProcessor):
    """``LogProcessor`` whose test-iteration lines start with the segment and round being streamed.

    mmengine's line, ``Iter(test) [ 50/100]  eta: ...``, counts batches of the current segment; under
    :class:`~imse_seg.seg.engine.ContinualTestLoop` the same counts repeat for every segment and round, so
    the line becomes ``night round 2 | Iter(test) [ 50/100] ...``. Other loops' lines are mmengine's.
    """

    def get_log_after_iter(self, runner, batch_idx: int, mode: str) -> tuple[dict, str]:
        tag, log_str = super().get_log_after_iter(runner, batch_idx, mode)
        place = getattr(runner.test_loop, 'place', None) if mode == 'test' else None
        if place:
            log_str = f'{place["segment"]} round {place["round"]} | {log_str}'
        return tag, log_str
