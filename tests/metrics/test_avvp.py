"""AVVPMetrics against worked examples of the official AVVP protocol (YapengTian/AVVP-ECCV20).

The hand-made video below (K = 3 classes, T = 10 segments) is scored by following
``main_avvp.py::eval`` and ``utils/eval_metrics.py`` by hand:

- ground truth: audio class 0 on [0, 5), class 1 on [6, 10); visual class 0 on [2, 8),
  class 2 on [0, 3); audio-visual (AND) class 0 on [2, 5);
- predictions >= 0.5: audio class 0 on [0, 4), class 1 on [5, 10), class 2 everywhere;
  visual class 0 on [3, 8), class 2 on [0, 3); video probabilities [0.9, 0.6, 0.3], so the
  official filtering removes every class-2 prediction.
"""

import pytest
import torch

from vidlit.metrics.avvp import AVVPMetrics, avvp_video_scores, event_counts, extract_events

T, K = 10, 3


def _runs(*runs: tuple[int, int, int]) -> torch.Tensor:
    """``[T, K]`` binary matrix with ``(class, start, end)`` runs set."""
    x = torch.zeros(T, K)
    for k, s, e in runs:
        x[s:e, k] = 1
    return x


def _probs(*runs: tuple[int, int, int]) -> torch.Tensor:
    # 0.8 inside the runs, 0.2 elsewhere
    return 0.2 + 0.6 * _runs(*runs)


GT = {"audio": _runs((0, 0, 5), (1, 6, 10)), "visual": _runs((0, 2, 8), (2, 0, 3))}
PRED = {
    "video_prob": torch.tensor([0.9, 0.6, 0.3]),
    "audio_prob": _probs((0, 0, 4), (1, 5, 10), (2, 0, 10)),
    "visual_prob": _probs((0, 3, 8), (2, 0, 3)),
}

# segment level: audio c0 TP4 FN1 -> 8/9, c1 TP4 FP1 -> 8/9, c2 skipped (nothing left after filtering)
# visual c0 TP5 FN1 -> 10/11, c2 FN3 -> 0; AV c0 TP1 FN2 -> 1/2
# Event@AV: c0 TP9 FN2 -> 18/20, c1 8/9, c2 FN3 -> 0
SEGMENT = {
    "segment_audio": 8 / 9,
    "segment_visual": (10 / 11 + 0) / 2,
    "segment_av": 0.5,
    "segment_event_av": (0.9 + 8 / 9 + 0) / 3,
}
# event level: audio c0 [0,4) vs [0,5) IoU 0.8, c1 [5,10) vs [6,10) IoU 0.8 -> 1, 1;
# visual c0 IoU 5/6 -> 1, c2 missed -> 0; AV c0 [3,4) vs [2,5) IoU 1/3 -> FP + FN -> 0
# Event@AV: c0 TP2 -> 1, c1 TP1 -> 1, c2 FN1 -> 0
EVENT = {"event_audio": 1.0, "event_visual": 0.5, "event_av": 0.0, "event_event_av": 2 / 3}


def _video(video_id: str, pred: dict, gt: dict) -> tuple[dict, dict]:
    return {"video_id": video_id, **pred}, {"video_id": video_id, **gt}


def test_extract_events_runs_of_positive_segments():
    assert extract_events(torch.tensor([1, 1, 0, 0, 1, 0, 1, 1, 1, 1])) == [(0, 2), (4, 5), (6, 10)]
    assert extract_events(torch.zeros(10)) == []
    assert extract_events(torch.ones(10)) == [(0, 10)]
    assert extract_events(torch.tensor([0] * 9 + [1])) == [(9, 10)]


def test_event_matching_at_iou_half_inclusive():
    gt = _runs((0, 0, 2))[:, 0]
    # [0, 4) vs [0, 2): intersection 2 >= 0.5 * union 4: a match (the official test is >=)
    assert event_counts(_runs((0, 0, 4))[:, 0], gt) == (1, 0, 0)
    # [0, 5) vs [0, 2): IoU 0.4: a false positive and a false negative
    assert event_counts(_runs((0, 0, 5))[:, 0], gt) == (0, 1, 1)
    # two predicted events against one ground-truth event: one TP, one FP
    assert event_counts(_runs((0, 0, 2), (0, 5, 7))[:, 0], gt) == (1, 1, 0)
    assert event_counts(torch.zeros(T), gt) == (0, 0, 1)


def test_worked_example_with_video_level_filtering():
    metric = AVVPMetrics(num_classes=K)
    metric.update(*map(list, zip(_video("v1", PRED, GT))))
    out = metric.compute()
    for name, value in {**SEGMENT, **EVENT}.items():
        assert out[name] == pytest.approx(value), name
    assert out["segment_type_av"] == pytest.approx((8 / 9 + 5 / 11 + 0.5) / 3)
    assert out["event_type_av"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert next(iter(out)) == "segment_type_av"  # the headline the official code selects by


def test_without_filtering_the_weak_prediction_no_longer_removes_class_2():
    metric = AVVPMetrics(num_classes=K, filter_by_video=False)
    metric.update(*map(list, zip(_video("v1", PRED, GT))))
    out = metric.compute()
    # audio c2 now predicted everywhere without ground truth: F 0, so (8/9 + 8/9 + 0) / 3;
    # visual c2 on [0, 3) now hits its ground truth: (10/11 + 1) / 2
    assert out["segment_audio"] == pytest.approx((8 / 9 + 8 / 9) / 3)
    assert out["segment_visual"] == pytest.approx((10 / 11 + 1) / 2)


def test_video_without_events_scores_one_unless_something_is_predicted():
    empty = {"audio": torch.zeros(T, K), "visual": torch.zeros(T, K)}
    # high frame probabilities, but every video probability < 0.5: all filtered out
    silent = {
        "video_prob": torch.full((K,), 0.2),
        "audio_prob": torch.ones(T, K),
        "visual_prob": torch.ones(T, K),
    }
    scores = avvp_video_scores(*AVVPMetrics(num_classes=K).binarize(silent), empty["audio"], empty["visual"])
    assert scores.tolist() == [1.0] * 8  # "all true negatives"
    # one false audio segment of class 1: audio and Event@AV drop to 0, visual and AV stay 1
    false_alarm = {
        "video_prob": torch.tensor([0.2, 0.7, 0.2]),
        "audio_prob": _probs((1, 0, 1)),
        "visual_prob": _probs(),
    }
    metric = AVVPMetrics(num_classes=K)
    metric.update(*map(list, zip(_video("empty", false_alarm, empty))))
    out = metric.compute()
    assert (out["segment_audio"], out["segment_visual"], out["segment_av"], out["segment_event_av"]) == (
        0.0,
        1.0,
        1.0,
        0.0,
    )
    assert out["segment_type_av"] == pytest.approx(2 / 3)


def test_scores_are_averaged_per_video_and_duplicates_count_once():
    empty = {"audio": torch.zeros(T, K), "visual": torch.zeros(T, K)}
    silent = {"video_prob": torch.zeros(K), "audio_prob": torch.zeros(T, K), "visual_prob": torch.zeros(T, K)}
    metric = AVVPMetrics(num_classes=K)
    metric.update(*map(list, zip(_video("v1", PRED, GT), _video("quiet", silent, empty))))
    metric.update(*map(list, zip(_video("v1", PRED, GT))))  # e.g. DistributedSampler padding
    out = metric.compute()
    # the mean of the per-video F-scores (v1 and 1.0), not an F-score of pooled counts
    assert out["segment_audio"] == pytest.approx((8 / 9 + 1.0) / 2)
    assert out["event_av"] == pytest.approx((0.0 + 1.0) / 2)
    assert out["segment_event_av"] == pytest.approx(((0.9 + 8 / 9) / 3 + 1.0) / 2)


def test_touching_annotation_rows_form_one_event():
    # audio ground truth rows 0-2 and 2-6 of one class: one event [0, 6), matched by [0, 5)
    gt = {"audio": _runs((0, 0, 2), (0, 2, 6)), "visual": torch.zeros(T, K)}
    pred = {
        "video_prob": torch.tensor([0.9, 0.1, 0.1]),
        "audio_prob": _probs((0, 0, 5)),
        "visual_prob": _probs(),
    }
    metric = AVVPMetrics(num_classes=K)
    metric.update(*map(list, zip(_video("v", pred, gt))))
    assert metric.compute()["event_audio"] == 1.0


def test_bad_input_is_named():
    metric = AVVPMetrics(num_classes=K)
    pred, target = _video("v1", PRED, GT)
    with pytest.raises(ValueError, match=r"targets\[0\] misses key\(s\) \['audio', 'visual'\]"):
        metric.update([pred], [{"video_id": "v1", "labels": torch.zeros(K)}])
    with pytest.raises(ValueError, match="preds\\[0\\] is for video 'v1' but targets\\[0\\] for 'v2'"):
        metric.update([pred], [{**target, "video_id": "v2"}])
    with pytest.raises(ValueError, match="'visual'\\] must have the shape"):
        metric.update([pred], [{**target, "visual": torch.zeros(8, K)}])
    with pytest.raises(ValueError, match="1 predictions but 0 targets"):
        metric.update([pred], [])
    with pytest.raises(ValueError, match="threshold"):
        AVVPMetrics(threshold=1.5)
