"""ShortTermAnticipationMAP: worked examples of the Ego4D STA top-5 mAP protocol.

Each expected value is worked out by hand from ``EGO4D/forecasting``'s ``sta_metrics.py`` and
``evaluate_short_term_anticipation_results.py``: matching in score order, IoU > 0.5 (pixel-
inclusive), |TTC error| <= 0.25, (top_k - 1) x N_gt false positives ignored per frame, VOC AP per
noun class in the ground truth.
"""

import pytest
import torch

from vidlit.metrics.sta_map import STA_MAP_NAMES, ShortTermAnticipationMAP, sta_box_iou, voc_average_precision

BOX = [10.0, 10.0, 49.0, 49.0]  # 40 x 40 pixels, inclusive
FAR = [100.0, 100.0, 139.0, 139.0]  # IoU 0 with BOX


def gt(uid, objects):
    """objects: (box, noun, verb, ttc)."""
    return {
        "video_id": uid,
        "boxes": torch.tensor([o[0] for o in objects], dtype=torch.float32).reshape(-1, 4),
        "nouns": torch.tensor([o[1] for o in objects], dtype=torch.long),
        "verbs": torch.tensor([o[2] for o in objects], dtype=torch.long),
        "ttcs": torch.tensor([o[3] for o in objects], dtype=torch.float32),
    }


def pred(uid, detections):
    """detections: (box, noun, verb, ttc, score)."""
    out = gt(uid, [d[:4] for d in detections])
    out["scores"] = torch.tensor([d[4] for d in detections], dtype=torch.float32)
    return out


def score(frames, **kwargs):
    metric = ShortTermAnticipationMAP(**kwargs)
    metric.update([p for p, _ in frames], [g for _, g in frames])
    return metric.compute()


def test_perfect_prediction_scores_one_and_headline_first():
    values = score([(pred("a", [(BOX, 3, 1, 0.5, 0.9)]), gt("a", [(BOX, 3, 1, 0.5)]))])
    assert list(values) == list(STA_MAP_NAMES) and STA_MAP_NAMES[0] == "map_box_noun_verb_ttc"
    assert values == dict.fromkeys(STA_MAP_NAMES, 1.0)


@pytest.mark.parametrize(("ttc", "ttc_ok"), [(0.75, True), (0.25, True), (0.76, False), (0.0, False)])
def test_ttc_threshold_is_inclusive(ttc, ttc_ok):
    # ground truth TTC 0.5 s: an error of exactly 0.25 s still matches
    values = score([(pred("a", [(BOX, 0, 2, ttc, 0.9)]), gt("a", [(BOX, 0, 2, 0.5)]))])
    assert values["map_box_noun"] == values["map_box_noun_verb"] == 1.0
    assert values["map_box_noun_ttc"] == values["map_box_noun_verb_ttc"] == float(ttc_ok)


def test_wrong_verb_only_fails_the_verb_criteria():
    values = score([(pred("a", [(BOX, 0, 1, 0.5, 0.9)]), gt("a", [(BOX, 0, 2, 0.5)]))])
    assert values == {"map_box_noun_verb_ttc": 0.0, "map_box_noun": 1.0, "map_box_noun_verb": 0.0,
                      "map_box_noun_ttc": 1.0}  # fmt: skip


def test_box_iou_is_pixel_inclusive_and_must_exceed_half():
    g = torch.tensor([[0.0, 0.0, 9.0, 9.0]])  # 10 x 10 pixels inclusive
    p = torch.tensor([[0.0, 0.0, 9.0, 19.0]])  # 10 x 20: inter 100, union 200
    assert sta_box_iou(p, g).item() == pytest.approx(0.5)
    assert sta_box_iou(p, g, inclusive=False).item() == pytest.approx(81 / 171)
    # boxes 0.5 px apart still overlap by half a pixel row under the +1 convention
    assert sta_box_iou(torch.tensor([[0.0, 0.0, 9.0, 9.0]]), torch.tensor([[9.5, 0.0, 19.5, 9.0]])).item() > 0
    at_half = score([(pred("a", [(p[0].tolist(), 0, 0, 1.0, 0.9)]), gt("a", [(g[0].tolist(), 0, 0, 1.0)]))])
    assert at_half["map_box_noun"] == 0.0  # IoU 0.5 is not > 0.5
    above = [0.0, 0.0, 9.0, 18.0]  # inter 100, union 190: IoU 0.526
    assert (
        score([(pred("a", [(above, 0, 0, 1.0, 0.9)]), gt("a", [(g[0].tolist(), 0, 0, 1.0)]))])["map_box_noun"]
        == 1.0
    )


def test_top5_ignores_four_false_positives_per_ground_truth():
    truth = gt("a", [(BOX, 0, 0, 1.0)])
    four_fp = [(FAR, 0, 0, 1.0, s) for s in (0.9, 0.8, 0.7, 0.6)]
    # the 4 higher-scoring false positives are ignored: the true positive ranks first
    assert score([(pred("a", [*four_fp, (BOX, 0, 0, 1.0, 0.5)]), truth)])["map_box_noun"] == 1.0
    # a fifth one is not: the true positive ranks second, precision 1/2
    five_fp = [*four_fp, (FAR, 0, 0, 1.0, 0.55)]
    assert score([(pred("a", [*five_fp, (BOX, 0, 0, 1.0, 0.5)]), truth)])["map_box_noun"] == 0.5
    # the plain mAP (top_k None) counts them all: precision 1/6 at the true positive
    plain = score([(pred("a", [*five_fp, (BOX, 0, 0, 1.0, 0.5)]), truth)], top_k=None)
    assert plain["map_box_noun"] == pytest.approx(1 / 6)
    # false positives ranked below the true positive cannot lower the AP in either case
    assert score([(pred("a", [(BOX, 0, 0, 1.0, 0.95), *five_fp]), truth)], top_k=None)["map_box_noun"] == 1.0


def test_top5_budget_scales_with_ground_truth_and_spans_all_nouns():
    # 2 ground-truth objects: 8 false positives are ignored
    truth = gt("a", [(BOX, 0, 0, 1.0), ([60.0, 60.0, 99.0, 99.0], 0, 0, 1.0)])
    eight_fp = [(FAR, 0, 0, 1.0, 0.9 - 0.01 * i) for i in range(8)]
    hits = [(BOX, 0, 0, 1.0, 0.5), ([60.0, 60.0, 99.0, 99.0], 0, 0, 1.0, 0.4)]
    assert score([(pred("a", [*eight_fp, *hits]), truth)])["map_box_noun"] == 1.0
    # false positives of another noun use up the frame's budget too
    truth = gt("b", [(BOX, 0, 0, 1.0)])
    other_noun = [(FAR, 1, 0, 1.0, s) for s in (0.9, 0.8, 0.7, 0.6)]
    values = score([(pred("b", [*other_noun, (FAR, 0, 0, 1.0, 0.55), (BOX, 0, 0, 1.0, 0.5)]), truth)])
    assert values["map_box_noun"] == 0.5  # only noun 0 is in the ground truth


def test_criteria_match_independently_in_score_order():
    # the higher-scoring prediction (IoU 0.6, wrong TTC) takes the box for the noun criterion;
    # the lower-scoring one (IoU ~0.9, right TTC) is the only candidate for the TTC criterion
    truth = gt("a", [([0.0, 0.0, 99.0, 99.0], 0, 0, 1.0)])
    loose = ([0.0, 0.0, 99.0, 59.0], 0, 0, 3.0, 0.9)  # IoU 0.6
    tight = ([0.0, 0.0, 99.0, 89.0], 0, 0, 1.1, 0.8)  # IoU 0.9
    values = score([(pred("a", [loose, tight]), truth)], top_k=None)
    assert values["map_box_noun"] == 1.0  # TP (loose), then a duplicate FP
    assert values["map_box_noun_ttc"] == 0.5  # FP (loose), then TP (tight)


def test_frame_without_prediction_is_dropped_as_the_official_script_does():
    frames = [
        (pred("a", [(BOX, 0, 0, 1.0, 0.9)]), gt("a", [(BOX, 0, 0, 1.0)])),
        (pred("b", []), gt("b", [(BOX, 0, 0, 1.0), (FAR, 1, 0, 1.0)])),
    ]
    # official: frame b's objects count nowhere, so noun 0 has 1 ground truth and noun 1 none
    assert score(frames)["map_box_noun"] == 1.0
    # corrected: noun 0 has recall 1/2 (AP 0.5), noun 1 is missed (AP 0)
    assert score(frames, count_unpredicted_frames=True)["map_box_noun"] == pytest.approx(0.25)


def test_frame_without_ground_truth_adds_false_positives():
    frames = [
        (pred("a", [(BOX, 0, 0, 1.0, 0.5)]), gt("a", [(BOX, 0, 0, 1.0)])),
        # no objects: its predictions are false positives, none ignored by the top-5 rule
        (pred("b", [(BOX, 0, 0, 1.0, 0.9), (BOX, 2, 0, 1.0, 0.8)]), gt("b", [])),
    ]
    assert score(frames)["map_box_noun"] == 0.5  # noun 0: FP (0.9) then TP (0.5); noun 2 not in the GT
    # averaging over predicted nouns too adds noun 2 with AP 0
    assert score(frames, count_all_classes=True)["map_box_noun"] == 0.25


def test_average_runs_over_ground_truth_nouns_and_a_missed_noun_counts_zero():
    frames = [
        (pred("a", [(BOX, 0, 0, 1.0, 0.9)]), gt("a", [(BOX, 0, 0, 1.0)])),
        (pred("b", [(BOX, 5, 0, 1.0, 0.9)]), gt("b", [(BOX, 1, 0, 1.0)])),
    ]
    assert score(frames)["map_box_noun"] == 0.5  # noun 0: 1, noun 1: 0 (noun 5 is not averaged)


def test_voc_interpolation():
    # ranking TP FP TP over 3 ground truths: recall 1/3 @ 1, 2/3 @ 2/3 -> AP = 1/3 + 2/9
    tp, scores = torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.9, 0.8, 0.7])
    assert voc_average_precision(tp, scores, 3) == pytest.approx(1 / 3 + 2 / 9)
    # the envelope lifts an early low precision: FP TP TP over 2 -> 1/2 * 2/3 + 1/2 * 2/3
    assert voc_average_precision(torch.tensor([0.0, 1.0, 1.0]), scores, 2) == pytest.approx(2 / 3)


def test_ties_rank_the_later_prediction_first():
    truth = gt("a", [(BOX, 0, 0, 1.0)])
    # equal scores: the later (the hit) ranks first
    assert (
        score([(pred("a", [(FAR, 0, 0, 1.0, 0.5), (BOX, 0, 0, 1.0, 0.5)]), truth)], top_k=None)[
            "map_box_noun"
        ]
        == 1.0
    )
    assert (
        score([(pred("a", [(BOX, 0, 0, 1.0, 0.5), (FAR, 0, 0, 1.0, 0.5)]), truth)], top_k=None)[
            "map_box_noun"
        ]
        == 0.5
    )


def test_repeated_frame_is_scored_once_and_percentages():
    metric = ShortTermAnticipationMAP(percentages=True)
    frame = (pred("a", [(BOX, 0, 0, 1.0, 0.9)]), gt("a", [(BOX, 0, 0, 1.0)]))
    miss = (pred("b", [(FAR, 0, 0, 1.0, 0.9)]), gt("b", [(BOX, 0, 0, 1.0)]))
    metric.update([frame[0], miss[0]], [frame[1], miss[1]])
    metric.update([frame[0]], [frame[1]])  # e.g. DistributedSampler padding
    assert metric.compute()["map_box_noun"] == pytest.approx(50.0)


def test_no_ground_truth_warns_and_scores_zero():
    metric = ShortTermAnticipationMAP()
    metric.update([pred("a", [(BOX, 0, 0, 1.0, 0.9)])], [gt("a", [])])
    with pytest.warns(UserWarning, match="no ground truth"):
        assert metric.compute() == dict.fromkeys(STA_MAP_NAMES, 0.0)


def test_bad_input_names_the_frame():
    metric = ShortTermAnticipationMAP()
    with pytest.raises(ValueError, match="preds\\[0\\] is for frame 'a' but targets\\[0\\] for 'b'"):
        metric.update([pred("a", [])], [gt("b", [])])
    bad = pred("a", [(BOX, 0, 0, 1.0, 0.9)])
    bad["scores"] = torch.tensor([0.9, 0.8])
    with pytest.raises(ValueError, match=r"preds\[0\] \(video_id 'a'\)\['scores'\] must have shape \[1\]"):
        metric.update([bad], [gt("a", [])])
    with pytest.raises(ValueError, match="top_k"):
        ShortTermAnticipationMAP(top_k=0)
