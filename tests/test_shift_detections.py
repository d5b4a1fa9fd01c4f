"""Scoring a code bank's detected shifts against the stream's true boundaries, and the per-class table."""
import pytest

from imse_seg.reporting.comparison import format_per_class
from imse_seg.reporting.shift_detections import format_detections, score_detections, segment_boundaries


def record(condition: str, round_: int, images: int, skipped: int = 0, per_class=None) -> dict:
    return dict(key=dict(condition=condition, round=round_), num_images=images, num_skipped=skipped,
                metrics=dict(mIoU=0.0), per_class=per_class or {})


STREAM = [record('fog', 1, 10), record('night', 1, 10, skipped=2), record('fog', 2, 10), record('night', 2, 10)]


def events(*detected: int, total: int = 42) -> list[dict]:
    return [dict(batch_index=i, detected=i in detected) for i in range(total)]


def test_boundaries_count_scored_and_skipped_batches() -> None:
    assert segment_boundaries(STREAM) == [(10, 'fog r1', 'night r1'), (22, 'night r1', 'fog r2'),
                                          (32, 'fog r2', 'night r2')]
    # in batches of 4 that never span two segments: 10 images -> 3 batches, 12 -> 3, 10 -> 3
    assert [batch for batch, _, _ in segment_boundaries(STREAM, batch_size=4)] == [3, 6, 9]


def test_hits_misses_and_false_alarms() -> None:
    # 12: two batches into night r1 (hit); 15: a second detection in the same segment (false alarm);
    # nothing near 22 (miss); 32 exactly at the boundary (hit); 3: no boundary before it (false alarm).
    score = score_detections(events(3, 12, 15, 32), STREAM, window=5)
    assert [b.detected_at for b in score.boundaries] == [12, None, 32]
    assert (score.hits, score.misses, score.false_alarms) == (2, 1, [3, 15])
    table = format_detections(score)
    assert '| night r1 -> fog r2 | 22 | - |' in table
    assert '2 of 3 boundaries detected, 1 missed; false alarms: 2 (batches: 3, 15).' in table
    assert format_detections(score, max_alarms=1).endswith('false alarms: 2 (batches: 3, ... 1 more).')


def test_a_detection_before_the_boundary_or_past_the_window_is_not_a_hit() -> None:
    score = score_detections(events(9, 15), STREAM, window=5)
    assert score.hits == 0 and score.false_alarms == [9, 15]
    with pytest.raises(ValueError, match='window'):
        score_detections(events(), STREAM, window=0)


def test_per_class_table_averages_each_class_over_segments() -> None:
    runs = {'source': [record('fog', 1, 1, per_class=dict(Road=80.0, Car=None)),
                       record('night', 1, 1, per_class=dict(Road=60.0, Car=40.0))],
            'imse_stag': [record('fog', 1, 1, per_class=dict(Road=90.0, Car=50.0)),
                          record('night', 1, 1, per_class=dict(Road=70.0, Car=30.0))]}
    assert format_per_class(runs).splitlines() == ['| class | source | imse_stag |', '| --- | ---: | ---: |',
                                                   '| Road | 70.0 | 80.0 |', '| Car | 40.0 | 40.0 |']
