import pytest
import torch

from vidlit.heads.ave import AudioGuidedSpatialAttention, MMPyramidHead, MPNHead

pytestmark = pytest.mark.usefixtures("one_thread")

BG = 28


def _batch(b=3, visual_dim=16, weak=False, pooled=False):
    torch.manual_seed(0)
    labels = torch.full((b, 10), BG)
    labels[0, 2:6] = 4
    labels[1] = 7
    video = torch.zeros(b, 29)
    video.scatter_(1, labels, 1.0)
    batch = {
        "audio": torch.randn(b, 10, 128),
        "visual": torch.rand(b, 10, visual_dim) if pooled else torch.rand(b, 10, 7, 7, visual_dim),
        "video_labels": video,
        "video_ids": [f"v{i}" for i in range(b)],
        "targets": [{"video_id": f"v{i}", "labels": labels[i]} for i in range(b)],
    }
    if not weak:
        batch["segment_labels"] = labels
    return batch


HEADS = {
    "mpn": lambda: MPNHead(in_dim=16, num_classes=29, dim=16, num_heads=2, attention_dim=8),
    "mm_pyramid": lambda: MMPyramidHead(in_dim=16, num_classes=29, dim=16, num_heads=2, attention_dim=8),
}


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("weak", [False, True])
def test_forward_loss_predict_metric(name, weak):
    head = HEADS[name]()
    batch = _batch(weak=weak)
    out = head(batch["audio"], batch)
    assert out["segment_logits"].shape == (3, 10, 29)
    losses = head.loss(out, batch)
    assert torch.isfinite(losses["loss"])
    assert ("video_bce" in losses) == weak
    losses["loss"].backward()
    grads = [p.grad for p in head.parameters() if p.requires_grad]
    assert sum(g is not None and g.abs().sum() > 0 for g in grads) > len(grads) // 2
    preds = head.predict(out, batch)
    assert preds[0]["labels"].shape == (10,) and preds[0]["scores"].shape == (10, 29)
    assert torch.allclose(preds[0]["scores"].sum(-1), torch.ones(10), atol=1e-5)
    metric = head.metrics()
    metric.update(preds, batch["targets"])
    assert 0.0 <= metric.compute()["acc"].item() <= 1.0


def test_weak_loss_ignores_segment_labels_it_is_not_given():
    head = HEADS["mm_pyramid"]().eval()
    a, b = _batch(weak=True), _batch(weak=True)
    b["targets"] = [
        {"video_id": t["video_id"], "labels": torch.zeros(10, dtype=torch.long)} for t in b["targets"]
    ]
    assert head.loss(head(a["audio"], a), a)["loss"] == head.loss(head(b["audio"], b), b)["loss"]


def test_mpn_combines_category_and_event_probabilities():
    head = HEADS["mpn"]().eval()
    batch = _batch()
    out = head(batch["audio"], batch)
    p = out["segment_logits"].exp()
    event = torch.sigmoid(out["event_logits"])
    assert torch.allclose(p[..., BG], 1 - event, atol=1e-5)
    assert torch.allclose(p[..., :BG].argmax(-1), out["category_logits"].argmax(-1)[:, None].expand(-1, 10))


def test_pooled_visual_features_and_errors():
    head = HEADS["mm_pyramid"]()
    batch = _batch(pooled=True)
    assert head(batch["audio"], batch)["segment_logits"].shape == (3, 10, 29)
    with pytest.raises(ValueError, match="in_dim"):
        head(batch["audio"], {**batch, "visual": torch.rand(3, 10, 7, 7, 8)})
    with pytest.raises(ValueError, match="audio_dim"):
        head(torch.randn(3, 10, 64), batch)
    with pytest.raises(ValueError, match="no 'visual'"):
        head(batch["audio"], {"audio": batch["audio"]})


def test_audio_guided_attention_is_a_convex_pooling_of_the_map():
    torch.manual_seed(0)
    att = AudioGuidedSpatialAttention(4, 8, hidden=8)
    visual = torch.rand(1, 1, 7, 7, 8)
    pooled, alpha = att(torch.randn(1, 1, 4), visual)
    assert alpha.shape == (1, 1, 49) and torch.allclose(alpha.sum(-1), torch.ones(1, 1))
    assert torch.allclose(pooled, torch.einsum("btn,btnc->btc", alpha, visual.reshape(1, 1, 49, 8)))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_weak_mpn_loss_is_float32_under_autocast(device):
    # BCE on probabilities must leave autocast: CUDA refuses it under mixed precision (the CPU
    # case only checks the dtype; the CUDA case raised before the fix)
    head = MPNHead(in_dim=16, num_classes=5, dim=16, attention_dim=16, num_heads=2).to(device)
    batch = {
        "audio": torch.randn(2, 10, 128, device=device),
        "visual": torch.rand(2, 10, 7, 7, 16, device=device),
        "video_labels": torch.tensor([[1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]], device=device),
        "video_ids": ["a", "b"],
    }
    with torch.autocast(device, dtype=torch.bfloat16):
        loss = head.loss(head(batch["audio"], batch), batch)["loss"]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
