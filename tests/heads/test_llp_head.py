"""AVParsingHead: MM-Pyramid + HAN attentive MIL, its weakly-supervised loss and predictions."""

import pytest
import torch
import torch.nn.functional as F

from vidlit.heads.llp import AVParsingHead

B, T, K, CA, CV = 3, 10, 5, 8, 12


def _head(**kwargs) -> AVParsingHead:
    torch.manual_seed(0)
    kwargs = {"in_dim": CV, "num_classes": K, "audio_dim": CA, "embed_dim": 16, "num_levels": 2, **kwargs}
    return AVParsingHead(**kwargs).eval()


def _batch(b: int = B, t: int = T) -> dict:
    g = torch.Generator().manual_seed(1)
    labels = torch.zeros(b, K)
    labels[:, 0] = 1
    labels[0, 3] = 1
    return {
        "audio": torch.randn(b, t, CA, generator=g),
        "visual": torch.randn(b, t, CV, generator=g),
        "mask": torch.ones(b, t, dtype=torch.bool),
        "labels": labels,
        "video_ids": [f"vid{i}_0_10" for i in range(b)],
        # training batches carry no segment-level truth: weak supervision
        "targets": [{"video_id": f"vid{i}_0_10", "labels": labels[i]} for i in range(b)],
    }


def test_attentive_mil_outputs():
    head = _head()
    out = head(_batch()["visual"], _batch())
    assert out["frame_prob"].shape == (B, T, 2, K)
    for key in ("video_prob", "audio_video_prob", "visual_video_prob"):
        assert out[key].shape == (B, K) and (out[key] >= 0).all()
    # temporal attention sums to one over the segments, so each modality's video probability
    # is a convex combination of its segment probabilities
    fp = out["frame_prob"]
    for m, key in enumerate(("audio_video_prob", "visual_video_prob")):
        assert (out[key] <= fp[:, :, m].amax(1) + 1e-6).all()
        assert (out[key] >= fp[:, :, m].amin(1) - 1e-6).all()
    # HAN's video probability: sum over t and m of frame_att * av_att * frame_prob
    assert (out["video_prob"] <= 2 * fp.amax(dim=(1, 2)) + 1e-6).all()


def test_padded_segments_change_nothing():
    head = _head()
    batch = _batch(b=1, t=6)
    ref = head(batch["visual"], batch)
    padded = {
        **batch,
        "audio": torch.cat((batch["audio"], 100 * torch.ones(1, 4, CA)), 1),
        "visual": torch.cat((batch["visual"], 100 * torch.ones(1, 4, CV)), 1),
        "mask": torch.tensor([[True] * 6 + [False] * 4]),
    }
    out = head(padded["visual"], padded)
    torch.testing.assert_close(out["video_prob"], ref["video_prob"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["frame_prob"][:, :6], ref["frame_prob"], atol=1e-5, rtol=1e-5)
    (pred,) = head.predict(out, padded)
    assert pred["audio_prob"].shape == (6, K)


def test_loss_is_han_bce_with_visual_label_smoothing():
    head = _head(audio_label_smoothing=0.0, visual_label_smoothing=0.1)
    batch = _batch()
    out = head(batch["visual"], batch)
    losses = {k: v.item() for k, v in head.loss(out, batch).items()}
    out = {k: v.detach() for k, v in out.items()}
    y = batch["labels"]
    assert losses["video"] == pytest.approx(F.binary_cross_entropy(out["video_prob"], y).item(), rel=1e-5)
    assert losses["audio"] == pytest.approx(
        F.binary_cross_entropy(out["audio_video_prob"], y).item(), rel=1e-5
    )
    # official v = 0.9: targets 0.95 for present and 0.05 for absent classes
    smoothed = 0.9 * y + 0.05
    expected = F.binary_cross_entropy(out["visual_video_prob"], smoothed).item()
    assert losses["visual"] == pytest.approx(expected, rel=1e-5)
    assert losses["loss"] == pytest.approx(losses["video"] + losses["audio"] + losses["visual"])


def test_predictions_feed_the_official_metric():
    head = _head()
    batch = _batch()
    preds = head.predict(head(batch["visual"], batch), batch)
    assert [p["video_id"] for p in preds] == batch["video_ids"]
    assert preds[0]["audio_prob"].shape == (T, K) and preds[0]["video_prob"].shape == (K,)
    metrics = head.metrics()
    targets = [
        {"video_id": p["video_id"], "audio": torch.zeros(T, K), "visual": torch.zeros(T, K)} for p in preds
    ]
    metrics.update(preds, targets)
    values = metrics.compute()
    assert list(values)[0] == "segment_type_av"
    assert all(0.0 <= float(v) <= 1.0 for v in values.values())


def test_backbone_features_at_another_rate_are_pooled_to_the_segments():
    head = _head()
    batch = _batch()
    out = head(torch.randn(B, 2 * T, CV), batch)
    assert out["frame_prob"].shape == (B, T, 2, K)


def test_backward_and_bf16_autocast():
    head = _head().train()
    batch = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = head.loss(head(batch["visual"], batch), batch)
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    grads = [p.grad for p in head.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_bad_input():
    head = _head()
    batch = _batch()
    with pytest.raises(ValueError, match=r"batch\['audio'\] must be \[b, t, 8\]"):
        head(batch["visual"], {**batch, "audio": torch.randn(B, T, 7)})
    with pytest.raises(ValueError, match="expects visual features"):
        head(torch.randn(B, T, CV + 1), batch)
    with pytest.raises(ValueError, match="visual_label_smoothing"):
        AVParsingHead(in_dim=CV, visual_label_smoothing=1.0)
