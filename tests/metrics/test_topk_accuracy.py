import pytest
import torch

from vidlit.metrics import TopKAccuracy


def _pred(video_id, *scores):
    return {"video_id": video_id, "scores": torch.tensor(scores)}


def _target(video_id, label):
    return {"video_id": video_id, "label": label}


def test_worked_example_top1_top5():
    # 6 classes, 4 videos; true class ranks 1st, 2nd, 6th and 5th
    metric = TopKAccuracy(num_classes=6, top_k=(1, 2, 5))
    metric.update(
        [
            _pred("a", 0.5, 0.1, 0.1, 0.1, 0.1, 0.1),
            _pred("b", 0.4, 0.3, 0.1, 0.1, 0.05, 0.05),
            _pred("c", 0.3, 0.2, 0.2, 0.15, 0.1, 0.05),
        ],
        [_target("a", 0), _target("b", 1), _target("c", 5)],
    )
    metric.update([_pred("d", 0.3, 0.25, 0.2, 0.15, 0.06, 0.04)], [_target("d", 4)])
    assert metric.compute() == {"top1": 0.25, "top2": 0.5, "top5": 0.75}


def test_views_of_a_video_are_averaged_before_scoring():
    metric = TopKAccuracy(num_classes=3, top_k=(1,))
    # video a: views vote 0, 1, 1 by arg-max, but the mean [0.4, 0.35, 0.25] says class 0
    metric.update(
        [_pred("a", 0.9, 0.05, 0.05), _pred("a", 0.2, 0.45, 0.35), _pred("b", 0.1, 0.2, 0.7)],
        [_target("a", 0), _target("a", 0), _target("b", 2)],
    )
    metric.update([_pred("a", 0.1, 0.55, 0.35)], [_target("a", 0)])  # views may span batches
    assert metric.compute() == {"top1": 1.0}  # 2 videos, not 4 views: 2 of 2 right
    metric.update([_pred("c", 0.1, 0.2, 0.7)], [_target("c", 0)])
    assert metric.compute()["top1"] == pytest.approx(2 / 3)


def test_k_of_num_classes_or_more_is_not_reported():
    metric = TopKAccuracy(num_classes=3, top_k=(1, 3, 5))  # top3 / top5 of 3 classes: always 1.0
    metric.update([_pred("a", 0.1, 0.3, 0.6)], [_target("a", 0)])
    assert metric.compute() == {"top1": 0.0}
    headline = TopKAccuracy(num_classes=2, top_k=(5, 1))  # the headline k is clipped, not dropped
    headline.update([_pred("a", 0.1, 0.9)], [_target("a", 0)])
    assert headline.compute() == {"top5": 1.0, "top1": 0.0}


def test_ties_count_against_the_prediction():
    metric = TopKAccuracy(num_classes=4, top_k=(1, 2, 3))
    # the true class ties with one other class for first place
    metric.update([_pred("a", 0.25, 0.25, 0.25, 0.25)], [_target("a", 1)])
    assert metric.compute() == {"top1": 0.0, "top2": 0.0, "top3": 0.0}
    metric.reset()
    metric.update([_pred("a", 0.4, 0.4, 0.2, 0.0)], [_target("a", 0)])
    assert metric.compute() == {"top1": 0.0, "top2": 1.0, "top3": 1.0}


def test_empty_and_reset():
    metric = TopKAccuracy(num_classes=2, top_k=(1,))
    with pytest.warns(UserWarning, match="before any update"):
        assert metric.compute() == {"top1": 0.0}
    metric.update([], [])
    metric.update([_pred("a", 0.9, 0.1)], [_target("a", 0)])
    assert metric.compute() == {"top1": 1.0}


def test_merge_state_combines_views_across_metrics():
    # what syncing two processes does: both halves of video a end up averaged
    first, second = TopKAccuracy(num_classes=2, top_k=(1,)), TopKAccuracy(num_classes=2, top_k=(1,))
    first.update([_pred("a", 0.9, 0.1)], [_target("a", 1)])
    second.update([_pred("a", 0.0, 1.0)], [_target("a", 1)])
    first.merge_state(second)
    assert first.compute() == {"top1": 1.0}


@pytest.mark.parametrize(
    ("preds", "targets", "message"),
    [
        ([_pred("a", 0.5, 0.5)], [], r"got 1 predictions but 0 targets"),
        ([_pred("a", 0.5, 0.5)], [_target("b", 0)], r"preds\[0\] is for video 'a' but targets\[0\] for 'b'"),
        (
            [_pred("a", 0.5, 0.5, 0.0)],
            [_target("a", 0)],
            r"preds\[0\] \(video_id 'a'\)\['scores'\] must have shape \[2\]",
        ),
        (
            [_pred("a", 0.5, 0.5)],
            [_target("a", 2)],
            r"targets\[0\] \(video_id 'a'\)\['label'\] must lie in \[0, 2\)",
        ),
        ([{"video_id": "a"}], [_target("a", 0)], r"preds\[0\] misses key\(s\) \['scores'\]"),
    ],
)
def test_bad_input_names_the_item(preds, targets, message):
    with pytest.raises(ValueError, match=message):
        TopKAccuracy(num_classes=2).update(preds, targets)


def test_conflicting_labels_of_one_video():
    metric = TopKAccuracy(num_classes=2)
    metric.update([_pred("a", 0.5, 0.5), _pred("a", 0.5, 0.5)], [_target("a", 0), _target("a", 1)])
    with pytest.raises(ValueError, match="different target labels"):
        metric.compute()
