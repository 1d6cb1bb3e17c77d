"""FrameLevelAP: worked examples of the XD-Violence protocol (16x frame expansion, trapezoidal PR-AUC)."""

import pytest
import torch

from vidlit.metrics.frame_ap import FrameLevelAP, pr_auc, repeat_to_frames


def _labels(frames: int, *ranges: tuple[int, int]) -> torch.Tensor:
    labels = torch.zeros(frames, dtype=torch.uint8)
    for start, end in ranges:
        labels[start:end] = 1
    return labels


def _ap(preds, targets, **kwargs) -> float:
    metric = FrameLevelAP(**kwargs)
    metric.update(preds, targets)
    return metric.compute()["AP"]


def test_snippet_scores_cover_16_frames_each():
    # snippet 0 is violent in its first 8 frames only: its 8 normal frames share its high score
    labels = _labels(32, (0, 8))
    assert torch.equal(repeat_to_frames(torch.tensor([0.9, 0.1])), torch.tensor([0.9] * 16 + [0.1] * 16))
    # points (R 0, P 1) -> (R 1, P 8/16) -> (R 1, P 8/32): trapezoid (1 + 0.5) / 2
    ap = _ap(
        [{"video_id": "v", "scores": torch.tensor([0.9, 0.1])}], [{"video_id": "v", "frame_labels": labels}]
    )
    assert ap == pytest.approx(0.75)


def test_frames_of_all_videos_form_one_ranking():
    # a: one violent snippet at 0.8; b: one normal snippet at 0.9. Pooled: (0, 1) -> (0, 0) -> (1, 0.5),
    # area 0.25. A mean over videos would be undefined for b; step-wise AP would give 0.5.
    preds = [
        {"video_id": "a", "scores": torch.tensor([0.8])},
        {"video_id": "b", "scores": torch.tensor([0.9])},
    ]
    targets = [
        {"video_id": "a", "frame_labels": _labels(16, (0, 16))},
        {"video_id": "b", "frame_labels": _labels(16)},
    ]
    assert _ap(preds, targets) == pytest.approx(0.25)


def test_tied_scores_are_one_point_so_a_constant_predictor_scores_half_plus_half_prevalence():
    labels = _labels(64, (0, 16))  # prevalence 1/4
    ap = _ap(
        [{"video_id": "v", "scores": torch.full((4,), 0.5)}], [{"video_id": "v", "frame_labels": labels}]
    )
    assert ap == pytest.approx((1 + 0.25) / 2)


def test_crops_of_a_video_are_averaged():
    labels = _labels(48, (20, 40))
    crops = [torch.tensor([0.1, 0.9, 0.3]), torch.tensor([0.3, 0.5, 0.9])]
    per_crop = _ap(
        [{"video_id": "v", "scores": c} for c in crops], [{"video_id": "v", "frame_labels": labels}] * 2
    )
    averaged = _ap(
        [{"video_id": "v", "scores": (crops[0] + crops[1]) / 2}], [{"video_id": "v", "frame_labels": labels}]
    )
    # averaged [0.2, 0.7, 0.6]; frames 20..39 violent. Points: (R 0, P 1) -> (12/20, 12/16) after the
    # 0.7 snippet -> (1, 20/32) after the 0.6 one -> (1, 20/48), which adds no area
    expected = 0.6 * (1 + 12 / 16) / 2 + 0.4 * (12 / 16 + 20 / 32) / 2
    assert per_crop == pytest.approx(averaged) == pytest.approx(expected)


def test_matches_sklearn_precision_recall_curve_and_auc():
    metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(0)
    metric = FrameLevelAP()
    all_scores, all_labels = [], []
    for i in range(12):
        snippets = int(torch.randint(3, 30, (1,), generator=generator))
        start = int(torch.randint(0, snippets * 16 - 10, (1,), generator=generator))
        labels = _labels(snippets * 16, (start, start + 37)) if i % 2 else _labels(snippets * 16)
        scores = torch.randint(0, 10, (snippets,), generator=generator).float() / 10  # many ties
        metric.update(
            [{"video_id": f"v{i}", "scores": scores}], [{"video_id": f"v{i}", "frame_labels": labels}]
        )
        all_scores.append(scores.repeat_interleave(16))
        all_labels.append(labels)
    # the official evaluation, verbatim: precision_recall_curve(list(gt), np.repeat(pred, 16)) + auc
    precision, recall, _ = metrics.precision_recall_curve(
        torch.cat(all_labels).numpy(), torch.cat(all_scores).numpy()
    )
    assert metric.compute()["AP"] == pytest.approx(metrics.auc(recall, precision), abs=1e-12)
    assert pr_auc(torch.cat(all_labels), torch.cat(all_scores)) == pytest.approx(
        metrics.auc(recall, precision)
    )


def test_padded_duplicates_and_reset():
    labels = _labels(32, (0, 10))
    pred, target = (
        {"video_id": "v", "scores": torch.tensor([0.7, 0.2])},
        {"video_id": "v", "frame_labels": labels},
    )
    metric = FrameLevelAP()
    metric.update([pred], [target])
    once = metric.compute()["AP"]
    metric.update([pred], [target])  # a copy DistributedSampler pads on: averages away
    assert metric.compute()["AP"] == pytest.approx(once)
    metric.reset()
    with pytest.warns(UserWarning, match="before any update"):
        assert metric.compute() == {"AP": 0.0}


def test_no_violent_frame_warns_and_scores_zero():
    metric = FrameLevelAP()
    metric.update(
        [{"video_id": "v", "scores": torch.rand(3)}], [{"video_id": "v", "frame_labels": _labels(48)}]
    )
    with pytest.warns(UserWarning, match="no positive frame"):
        assert metric.compute()["AP"] == 0.0


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        (
            {"video_id": "v", "scores": torch.rand(3)},
            {"video_id": "v", "frame_labels": torch.zeros(47)},
            "'v'.*47 frame labels for 3 snippets",
        ),
        (
            {"video_id": "v", "scores": torch.rand(3)},
            {"video_id": "w", "frame_labels": torch.zeros(48)},
            "for video 'v' but targets",
        ),
        (
            {"video_id": "v", "scores": torch.rand(2, 3)},
            {"video_id": "v", "frame_labels": torch.zeros(96)},
            r"\[T\] tensor",
        ),
        (
            {"video_id": "v"},
            {"video_id": "v", "frame_labels": torch.zeros(48)},
            r"misses key\(s\) \['scores'\]",
        ),
    ],
)
def test_bad_input_names_the_video(pred, target, message):
    with pytest.raises(ValueError, match=message):
        FrameLevelAP().update([pred], [target])


def test_crops_with_different_labels_raise():
    metric = FrameLevelAP()
    metric.update(
        [{"video_id": "v", "scores": torch.rand(2)}], [{"video_id": "v", "frame_labels": _labels(32, (0, 4))}]
    )
    metric.update(
        [{"video_id": "v", "scores": torch.rand(2)}], [{"video_id": "v", "frame_labels": _labels(32)}]
    )
    with pytest.raises(ValueError, match="disagree"):
        metric.compute()
