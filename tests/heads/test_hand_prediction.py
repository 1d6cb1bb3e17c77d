"""HandForecastHead: shapes, masked SmoothL1 and predictions in the metric's format."""

import pytest
import torch
import torch.nn.functional as F

from vidlit.heads.hand_prediction import HandForecastHead


@pytest.fixture
def batch():
    valid = torch.ones(2, 5, 2, dtype=torch.bool)
    valid[0, :, 1] = False  # right hand never annotated in clip 0
    return {"hands": torch.rand(2, 5, 2, 2) * 64, "valid": valid, "video_ids": ["3_10", "4_20"]}


def test_tokens_and_pooled_features(batch):
    torch.manual_seed(0)
    head = HandForecastHead(16, hidden=32, coord_scale=64.0)
    tokens = head(torch.randn(2, 10, 16), batch)
    assert tokens.shape == (2, 5, 2, 2) and tokens.dtype == torch.float32
    # the output layer starts at zero: every key point at the frame centre
    assert torch.allclose(tokens, torch.full_like(tokens, 32.0))
    assert head(torch.randn(2, 16), batch).shape == (2, 5, 2, 2)
    with pytest.raises(ValueError, match=r"expects features \[B, N, 16\]"):
        head(torch.randn(2, 10, 8), batch)


def test_loss_masks_missing_hands(batch):
    head = HandForecastHead(16, hidden=32, coord_scale=64.0, beta=5.0)
    outputs = head(torch.randn(2, 10, 16), batch)
    loss = head.loss(outputs, batch)["loss"]
    mask = batch["valid"][..., None].expand(-1, -1, -1, 2)
    expected = F.smooth_l1_loss(outputs[mask], batch["hands"][mask], beta=5.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # a wild prediction for the unannotated right hand of clip 0 changes nothing
    shifted = outputs.clone()
    shifted[0, :, 1] += 1000
    assert head.loss(shifted, batch)["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
    loss.backward()
    # the output layer starts at zero, so only it gets a gradient at the first step
    assert head.out.weight.grad.abs().sum() > 0


def test_predict_format(batch):
    head = HandForecastHead(16, hidden=32)
    preds = head.predict(head(torch.randn(2, 10, 16), batch), batch)
    assert [p["video_id"] for p in preds] == ["3_10", "4_20"] and preds[0]["hands"].shape == (5, 2, 2)
    metric = head.metrics()
    metric.update(
        preds,
        [
            {"video_id": k, "hands": batch["hands"][i], "valid": batch["valid"][i]}
            for i, k in enumerate(batch["video_ids"])
        ],
    )
    assert set(metric.compute()) >= {"mean_disp", "contact_disp_left"}
