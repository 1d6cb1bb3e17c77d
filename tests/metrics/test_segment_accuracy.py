import pytest
import torch

from vidlit.metrics.segment_accuracy import SegmentAccuracy

BG = 28


def _item(video_id, labels):
    return {"video_id": video_id, "labels": torch.tensor(labels)}


def test_worked_example_pools_all_segments_of_the_split():
    """Official compute_acc: argmax per segment vs label, accuracy_score over all N * 10 segments."""
    metric = SegmentAccuracy(num_classes=29)
    # video a: event 0 on seconds 2..7 (end exclusive), prediction misses the onset and
    # overshoots by one second -> 8 of 10 right
    target_a = [BG, BG, 0, 0, 0, 0, 0, 0, BG, BG]
    pred_a = [BG, BG, BG, 0, 0, 0, 0, 0, 0, BG]
    # video b: all background (an event with StartTime == EndTime), predicted all right
    target_b = [BG] * 10
    # video c: the whole video is event 5 but predicted as class 6 -> 0 of 10
    target_c = [5] * 10
    pred_c = [6] * 10
    metric.update([_item("a", pred_a), _item("b", target_b)], [_item("a", target_a), _item("b", target_b)])
    metric.update([_item("c", pred_c)], [_item("c", target_c)])
    assert metric.compute().item() == pytest.approx(18 / 30)


def test_background_counts_like_any_class_and_is_not_averaged_per_class():
    metric = SegmentAccuracy(num_classes=3)
    # 9 background segments right, 1 event segment wrong: micro accuracy 0.9 (per-class mean would be 0.5)
    metric.update([_item("x", [2] * 10)], [_item("x", [2] * 9 + [0])])
    assert metric.compute().item() == pytest.approx(0.9)


def test_duplicate_videos_count_once_and_empty_is_zero():
    metric = SegmentAccuracy(num_classes=29)
    assert metric.compute().item() == 0.0
    metric.update([_item("a", [1, 1])], [_item("a", [1, 0])])
    metric.update([_item("a", [1, 1])], [_item("a", [1, 0])])  # DistributedSampler padding copy
    metric.update([_item("b", [0, 0])], [_item("b", [0, 0])])
    assert metric.compute().item() == pytest.approx(3 / 4)
    metric.reset()
    metric.update([], [])
    assert metric.compute().item() == 0.0


def test_errors_name_the_video():
    metric = SegmentAccuracy(num_classes=29)
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        metric.update([_item("a", [1]), _item("b", [1])], [_item("a", [1])])
    with pytest.raises(ValueError, match="video 'a' but targets\\[0\\] for 'b'"):
        metric.update([_item("a", [1])], [_item("b", [1])])
    with pytest.raises(ValueError, match="'a'.*has 2 segments but its target has 3"):
        metric.update([_item("a", [1, 1])], [_item("a", [1, 1, 1])])
    with pytest.raises(ValueError, match=r"'a'.*must lie in \[0, 29\)"):
        metric.update([_item("a", [29])], [_item("a", [1])])
    with pytest.raises(ValueError, match="int"):
        metric.update([{"video_id": "a", "labels": torch.rand(3)}], [_item("a", [1, 1, 1])])
    with pytest.raises(ValueError, match=r"preds\[0\] misses key\(s\) \['labels'\]"):
        metric.update([{"video_id": "a"}], [_item("a", [1])])
    with pytest.raises(ValueError, match="num_classes"):
        SegmentAccuracy(num_classes=1)
