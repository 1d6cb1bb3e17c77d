"""HandDisplacement: worked examples of the Ego4D future-hand protocol (tools/eval.py)."""

import math

import pytest
import torch

from vidlit.metrics.hand_displacement import HandDisplacement


def _target(key, hands, valid=None):
    hands = torch.as_tensor(hands, dtype=torch.float32)
    valid = torch.ones(5, 2, dtype=torch.bool) if valid is None else valid
    return {"video_id": key, "hands": hands, "valid": valid}


def test_worked_example_with_missing_hands():
    # ground truth: all key points at (10, 10); prediction off by (3, 4) -> 5 px everywhere,
    # except the right hand at the contact frame, off by (6, 8) -> 10 px
    gt = torch.full((5, 2, 2), 10.0)
    pred = gt + torch.tensor([3.0, 4.0])
    pred[4, 1] = gt[4, 1] + torch.tensor([6.0, 8.0])
    valid = torch.ones(5, 2, dtype=torch.bool)
    valid[0, 0] = False  # left hand missing at pre_45: skipped
    valid[4, 0] = False  # left hand missing at contact: no left contact point in this sample
    metric = HandDisplacement()
    metric.update([{"video_id": "1_44", "hands": pred}], [_target("1_44", gt, valid)])
    # second sample: flat official 20-vector, exact prediction
    flat = torch.arange(20, dtype=torch.float32) + 1
    metric.update([{"video_id": "2_99", "hands": flat}], [_target("2_99", flat.reshape(5, 2, 2))])
    out = metric.compute()
    names = ["mean_disp", "mean_disp_left", "mean_disp_right"]
    assert list(out) == names + [n.replace("mean", "contact") for n in names]
    # left: 3 points of 5 px (sample 1) + 5 points of 0 px (sample 2)
    assert out["mean_disp_left"] == pytest.approx(15 / 8)
    # right: 4 x 5 px + 1 x 10 px (sample 1) + 5 x 0 px
    assert out["mean_disp_right"] == pytest.approx(30 / 10)
    assert out["mean_disp"] == pytest.approx(45 / 18)
    # contact: left only from sample 2 (0 px); right 10 px and 0 px
    assert out["contact_disp_left"] == 0.0
    assert out["contact_disp_right"] == pytest.approx(5.0)
    assert out["contact_disp"] == pytest.approx(10 / 3)


def test_views_of_a_sample_are_averaged():
    # the official submission sums the views and the evaluator divides by their number
    gt = torch.zeros(5, 2, 2)
    metric = HandDisplacement()
    metric.update(
        [{"video_id": "7_1", "hands": gt + 2.0}, {"video_id": "7_1", "hands": gt - 2.0}],
        [_target("7_1", gt), _target("7_1", gt)],
    )
    metric.update([{"video_id": "7_1", "hands": gt + 3.0}], [_target("7_1", gt)])
    # mean view: (2 - 2 + 3) / 3 = 1 in x and y -> sqrt(2)
    assert metric.compute()["mean_disp"] == pytest.approx(math.sqrt(2))


def test_a_hand_never_annotated_is_nan():
    valid = torch.zeros(5, 2, dtype=torch.bool)
    valid[:, 1] = True
    metric = HandDisplacement()
    metric.update(
        [{"video_id": "a", "hands": torch.ones(5, 2, 2)}], [_target("a", torch.zeros(5, 2, 2), valid)]
    )
    with pytest.warns(UserWarning, match="no annotated key point for mean_disp_left"):
        out = metric.compute()
    assert math.isnan(out["mean_disp_left"]) and out["mean_disp_right"] == pytest.approx(math.sqrt(2))


def test_bad_shapes_name_the_sample():
    metric = HandDisplacement()
    with pytest.raises(
        ValueError, match=r"preds\[0\] \(video_id 'a'\)\['hands'\] must have shape \[5, 2, 2\]"
    ):
        metric.update([{"video_id": "a", "hands": torch.zeros(7)}], [_target("a", torch.zeros(5, 2, 2))])
    with pytest.raises(ValueError, match="is for sample 'b' but targets"):
        metric.update([{"video_id": "b", "hands": torch.zeros(20)}], [_target("a", torch.zeros(5, 2, 2))])
