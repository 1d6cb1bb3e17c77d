"""COCODetectionAP: worked examples of the COCO box protocol that Ego4D SCOD scores with.

COCO AP interpolates precision at the 101 recall points 0, 0.01, ..., 1 (the running maximum of
precision from the right), averages them, then averages over IoU thresholds 0.50:0.05:0.95.
"""

import pytest
import torch

from vidlit.metrics.coco_detection import COCODetectionAP


def pred(image_id, boxes, scores):
    return {
        "image_id": image_id,
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
    }


def gt(image_id, boxes):
    return {"image_id": image_id, "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)}


def score(preds, targets, **kwargs):
    metric = COCODetectionAP(**kwargs)
    metric.update(preds, targets)
    return {k: v.item() for k, v in metric.compute().items()}


def test_perfect_detections_score_one():
    boxes = [[10, 10, 20, 30], [40, 5, 12, 12]]
    values = score(
        [pred("a/1.jpg", boxes[0], [0.9]), pred("b/7.jpg", boxes[1], [0.3])],
        [gt("a/1.jpg", boxes[0]), gt("b/7.jpg", boxes[1])],
    )
    assert values == {"AP": 1.0, "AP50": 1.0, "AP75": 1.0}


def test_a_box_shifted_below_iou_half_scores_zero():
    # shifted by 10 of its 20 px width: IoU = 200 / 600 = 1/3 < 0.5, a false positive everywhere
    values = score([pred("a", [20, 10, 20, 20], [0.9])], [gt("a", [10, 10, 20, 20])])
    assert values == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}


def test_iou_between_thresholds():
    # IoU = 100 / 150 = 0.667: a hit at 0.50, 0.55, 0.60, 0.65 (4 of the 10 thresholds), a miss above
    values = score([pred("a", [0, 0, 10, 15], [0.9])], [gt("a", [0, 0, 10, 10])])
    assert values["AP50"] == 1.0 and values["AP75"] == 0.0
    assert values["AP"] == pytest.approx(0.4)


def test_an_image_without_detections_caps_recall():
    # two objects, one found: precision 1 up to recall 0.5, then nothing -> 51 of 101 recall points
    values = score(
        [pred("a", [0, 0, 10, 10], [0.9]), pred("b", [], [])],
        [gt("a", [0, 0, 10, 10]), gt("b", [5, 5, 10, 10])],
    )
    assert values["AP50"] == pytest.approx(51 / 101)
    assert values["AP"] == pytest.approx(51 / 101)


def test_detections_on_an_image_without_ground_truth_are_false_positives():
    targets = [gt("a", [0, 0, 10, 10]), gt("b", [])]
    # the false positive ranks first: precision 1/2 when the object is found, at every recall point
    above = score([pred("a", [0, 0, 10, 10], [0.5]), pred("b", [30, 30, 10, 10], [0.9])], targets)
    assert above["AP50"] == pytest.approx(0.5)
    # ranked below the hit it costs nothing: recall is already 1 when it comes
    below = score([pred("a", [0, 0, 10, 10], [0.5]), pred("b", [30, 30, 10, 10], [0.1])], targets)
    assert below["AP50"] == 1.0


def test_a_duplicate_detection_is_a_false_positive():
    # the second box of the same object matches nothing; ranked first, it halves precision
    values = score([pred("a", [[0, 0, 10, 10], [0, 0, 10, 10]], [0.4, 0.9])], [gt("a", [0, 0, 10, 10])])
    assert values["AP50"] == 1.0  # same box twice: the higher score matches, the other is a later FP
    values = score([pred("a", [[0, 0, 10, 10], [50, 50, 5, 5]], [0.4, 0.9])], [gt("a", [0, 0, 10, 10])])
    assert values["AP50"] == pytest.approx(0.5)


def test_an_image_seen_twice_is_scored_once():
    # DistributedSampler pads ranks with copies; the first occurrence counts
    metric = COCODetectionAP()
    metric.update([pred("a", [0, 0, 10, 10], [0.9])], [gt("a", [0, 0, 10, 10])])
    metric.update([pred("a", [50, 50, 5, 5], [0.95])], [gt("a", [0, 0, 10, 10])])
    dataset, results = metric.coco_objects()
    assert len(dataset["images"]) == 1 and len(dataset["annotations"]) == 1 and len(results) == 1
    assert metric.compute()["AP"].item() == 1.0


def test_merge_state_pools_images_of_two_metrics():
    first, second = COCODetectionAP(), COCODetectionAP()
    first.update([pred("a", [0, 0, 10, 10], [0.9])], [gt("a", [0, 0, 10, 10])])
    second.update([pred("b", [], [])], [gt("b", [0, 0, 10, 10])])
    first.merge_state(second)
    assert first.compute()["AP50"].item() == pytest.approx(51 / 101)


def test_categories_are_scored_separately_and_averaged():
    preds = [
        {
            "image_id": "a",
            "boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 10, 10]]),
            "scores": torch.tensor([0.9, 0.8]),
            "labels": torch.tensor([0, 0]),
        }
    ]
    targets = [
        {
            "image_id": "a",
            "boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 10, 10]]),
            "labels": torch.tensor([0, 1]),
        }
    ]
    # class 0: one hit and one FP after it (AP 1); class 1: its object was labelled 0 (AP 0)
    assert score(preds, targets, num_classes=2)["AP50"] == pytest.approx(0.5)


def test_nothing_to_score_gives_zero():
    assert score([pred("a", [], [])], [gt("a", [0, 0, 10, 10])])["AP"] == 0.0
    with pytest.warns(UserWarning, match="no ground truth"):
        assert score([pred("a", [0, 0, 5, 5], [0.5])], [gt("a", [])])["AP"] == 0.0


def test_reset_forgets_everything():
    metric = COCODetectionAP()
    metric.update([pred("a", [0, 0, 10, 10], [0.9])], [gt("a", [0, 0, 10, 10])])
    metric.reset()
    metric.update([pred("a", [40, 40, 10, 10], [0.9])], [gt("a", [0, 0, 10, 10])])
    assert metric.compute()["AP"].item() == 0.0


@pytest.mark.parametrize(
    ("preds", "targets", "message"),
    [
        ([pred("a", [0, 0, 1, 1], [1.0])], [gt("b", [0, 0, 1, 1])], "image 'a' but targets"),
        (
            [{"image_id": "a", "boxes": torch.zeros(1, 3), "scores": torch.ones(1)}],
            [gt("a", [])],
            r"\[N, 4\]",
        ),
        ([{"image_id": "a", "boxes": torch.zeros(1, 4)}], [gt("a", [])], "misses key"),
        ([pred("a", [0, 0, -1, 1], [1.0])], [gt("a", [])], "non-negative width"),
        ([pred("a", [0, 0, 1, 1], [1.0, 2.0])], [gt("a", [])], "scores"),
        ([{**pred("a", [0, 0, 1, 1], [1.0]), "labels": torch.tensor([3])}], [gt("a", [])], r"\[0, 1\)"),
        ([pred("a", [0, 0, 1, 1], [1.0])], [], "1 predictions but 0 targets"),
    ],
)
def test_malformed_input_names_the_sample(preds, targets, message):
    with pytest.raises(ValueError, match=message):
        COCODetectionAP().update(preds, targets)
