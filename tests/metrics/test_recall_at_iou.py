"""RecallAtIoU: worked examples of the Ego4D NLQ protocol (evaluate_ego4d_nlq.py)."""

import pytest
import torch

from vidlit.core.segments import segment_iou
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
    with pytest.raises(ValueError, match="is for query 'p' but targets"):
        metric.update([_pred("p", [0, 1])], [_gt("q", 0, 1)])
    with pytest.raises(ValueError, match="thresholds"):
        RecallAtIoU(thresholds=(1.5,))


def _per_query_loop(preds, targets, thresholds, top_k):
    """RecallAtIoU before its update was vectorized: one query at a time (first occurrence wins)."""
    rows = {}
    for pred, target in zip(preds, targets):
        if target["video_id"] in rows:
            continue
        windows = pred["windows"].reshape(-1, 2)
        iou = segment_iou(windows, target["window"][None])[:, 0] if len(windows) else torch.zeros(0)
        row = {f"R{k}@{t:g}": float(bool((iou[:k] > t).any())) for k in top_k for t in thresholds}
        row["mIoU"] = float(iou[0]) if len(iou) else 0.0
        rows[target["video_id"]] = row
    return {key: sum(row[key] for row in rows.values()) / len(rows) for key in next(iter(rows.values()))}


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorized_update_matches_the_per_query_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    thresholds, top_k = (0.0, 0.3, 0.5, 0.7), (1, 3, 5)
    preds, targets = [], []
    for q in range(80):
        # half-second grid: IoUs land exactly on thresholds (0.5 of [0, 4] is [0, 2]) now and then
        start = torch.randint(0, 40, (1,), generator=gen).item() / 2
        length = torch.randint(0, 12, (1,), generator=gen).item() / 2  # zero-length ground truths too
        k = torch.randint(0, 8, (1,), generator=gen).item()  # some queries have fewer than 5, or none
        w_start = torch.randint(0, 40, (k,), generator=gen) / 2
        w_len = torch.randint(0, 12, (k,), generator=gen) / 2  # zero-length predictions too
        windows = torch.stack([w_start, w_start + w_len], 1)
        if k and q % 4 == 0:
            windows[-1] = torch.tensor([start, start + length])  # an exact hit at the last rank
        query = f"q{q % 70}"  # queries 70-79 repeat 0-9 (DistributedSampler padding)
        preds.append({"video_id": query, "windows": windows})
        targets.append(_gt(query, start, start + length))
    metric = RecallAtIoU(thresholds=thresholds, top_k=top_k)
    for lo, hi in ((0, 1), (1, 33), (33, 80)):
        metric.update(preds[lo:hi], targets[lo:hi])
    out = {key: float(value) for key, value in metric.compute().items()}
    expected = _per_query_loop(preds, targets, thresholds, top_k)
    assert out == pytest.approx(expected, abs=1e-6)
    assert 0 < out["R1@0.5"] < out["R5@0.5"] < 1  # the data has hits and misses at every depth


def test_merged_metrics_keep_the_earliest_update():
    # two metrics of one process, q1 first seen by `first` (a hit): whichever way they are merged
    # (merge_state puts the other metric's state in front), q1 is scored from that occurrence
    for into_first in (True, False):
        first, second = RecallAtIoU(), RecallAtIoU()
        first.update([_pred("q1", [0, 10])], [_gt("q1", 0, 10)])
        second.update([_pred("q1", [50, 60])], [_gt("q1", 0, 10)])
        receiver, other = (first, second) if into_first else (second, first)
        receiver.merge_state(other)
        assert receiver.compute()["R1@0.3"] == 1.0, into_first
