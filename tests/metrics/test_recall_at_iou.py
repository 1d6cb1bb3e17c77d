"""RecallAtIoU: worked examples of the Ego4D NLQ protocol (evaluate_ego4d_nlq.py)."""

import pytest
import torch

from vidlit.metrics.recall_at_iou import RecallAtIoU


def _pred(key, *windows):
    return {"video_id": key, "windows": torch.tensor(windows, dtype=torch.float32).reshape(-1, 2)}


def _gt(key, start, end):
    return {"video_id": key, "window": torch.tensor([start, end])}


def test_worked_example():
    # ground truth [10, 20] for three queries
    metric = RecallAtIoU()
    metric.update(
        [
            # q1: top-1 [10, 20] exact (IoU 1)
            _pred("q1", [10, 20], [0, 5]),
            # q2: top-1 [14, 24]: inter 6 / union 14 = 0.4286 (> 0.3, < 0.5); rank 3 [12, 20]: 0.8
            _pred("q2", [14, 24], [30, 40], [12, 20], [0, 1], [2, 3]),
            # q3: top-1 misses (IoU 0); rank 6 would hit but only the first 5 count for R5
            _pred("q3", [30, 40], [31, 40], [32, 40], [33, 40], [34, 40], [10, 20]),
        ],
        [_gt("q1", 10, 20), _gt("q2", 10, 20), _gt("q3", 10, 20)],
    )
    out = metric.compute()
    assert list(out) == ["R1@0.3", "R1@0.5", "R5@0.3", "R5@0.5", "mIoU"]
    assert out["R1@0.3"] == pytest.approx(2 / 3)
    assert out["R1@0.5"] == pytest.approx(1 / 3)
    assert out["R5@0.3"] == pytest.approx(2 / 3)
    assert out["R5@0.5"] == pytest.approx(2 / 3)
    # official mIoU: mean of each query's TOP-1 IoU (overlap[0] holds only the first prediction)
    assert out["mIoU"] == pytest.approx((1.0 + 6 / 14 + 0.0) / 3)


def test_threshold_is_strict():
    # IoU exactly 0.5: [0, 10] vs [5, 10] -> 5 / 10; the official test is overlap > threshold
    metric = RecallAtIoU(thresholds=(0.5,), top_k=(1,))
    metric.update([_pred("q", [5, 10])], [_gt("q", 0, 10)])
    assert metric.compute()["R1@0.5"] == 0.0


def test_zero_length_windows():
    metric = RecallAtIoU(thresholds=(0.0, 0.3), top_k=(1, 5))
    metric.update(
        [
            # zero-length ground truth inside the prediction: IoU 0, never retrieved, even at t = 0
            _pred("a", [0, 10]),
            # zero-length prediction at the zero-length ground truth: 0/0, NaN officially, 0 here
            _pred("b", [4, 4]),
            # zero-length prediction inside a normal ground truth: IoU 0
            _pred("c", [5, 5]),
        ],
        [_gt("a", 4, 4), _gt("b", 4, 4), _gt("c", 0, 10)],
    )
    out = metric.compute()
    assert all(float(v) == 0.0 for v in out.values()), out


def test_missing_and_short_prediction_lists():
    metric = RecallAtIoU()
    metric.update([_pred("a"), _pred("b", [0, 10])], [_gt("a", 0, 10), _gt("b", 0, 10)])
    out = metric.compute()
    # no prediction: a miss with IoU 0; one prediction is enough for R@5
    assert out["R5@0.5"] == 0.5 and out["R1@0.5"] == 0.5 and out["mIoU"] == 0.5


def test_duplicate_queries_count_once_and_states_merge():
    a, b = RecallAtIoU(), RecallAtIoU()
    a.update([_pred("q1", [0, 10])], [_gt("q1", 0, 10)])
    b.update([_pred("q2", [20, 30]), _pred("q1", [50, 60])], [_gt("q2", 0, 10), _gt("q1", 0, 10)])
    a.merge_state(b)
    out = a.compute()
    # q1 is scored once, from its first occurrence (the hit); q2 misses
    assert out["R1@0.3"] == 0.5


def test_errors_name_the_query():
    metric = RecallAtIoU()
    with pytest.raises(ValueError, match=r"targets\[0\] \(video_id 'q'\)\['window'\] must have shape \[2\]"):
        metric.update([_pred("q", [0, 1])], [{"video_id": "q", "window": torch.zeros(3)}])
    with pytest.raises(ValueError, match="start <= end"):
        metric.update([_pred("q", [5, 1])], [_gt("q", 0, 1)])
    with pytest.raises(ValueError, match="is for 'p' but targets"):
        metric.update([_pred("p", [0, 1])], [_gt("q", 0, 1)])
    with pytest.raises(ValueError, match="thresholds"):
        RecallAtIoU(thresholds=(1.5,))
