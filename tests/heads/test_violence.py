"""MACILSDHead: top-k MIL, the modality-aware contrastive loss, the visual peer and its EMA."""

import math

import pytest
import torch
import torch.nn.functional as F

from vidlit.heads.violence import MACILSDHead, info_nce, topk_mil_logits

C, A = 24, 8


def _head(**kwargs) -> MACILSDHead:
    torch.manual_seed(0)
    defaults = dict(
        in_dim=C, audio_dim=A, hidden_dim=16, ffn_dim=16, num_heads=2, dropout=0.0, attn_dropout=0.0
    )
    return MACILSDHead(**{**defaults, **kwargs})


def _batch(b=4, t=20, crops=None, lengths=None) -> dict:
    torch.manual_seed(1)
    shape = (b, t, C) if crops is None else (b, crops, t, C)
    mask = torch.ones(b, t, dtype=torch.bool)
    for i, n in enumerate(lengths or []):
        mask[i, n:] = False
    return {
        "features": torch.randn(shape),
        "audio": torch.randn(b, t, A),
        "mask": mask,
        "labels": torch.tensor([1.0, 0.0] * (b // 2)),
        "video_ids": [f"v{i}" for i in range(b)],
    }


def test_topk_mil_takes_floor_t_over_16_plus_one_real_snippets():
    logits = torch.arange(20.0)[None].repeat(2, 1)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 15:] = False  # 15 real snippets: k = 1
    # T = 20: k = 2, mean of 19 and 18; T = 15: the best real snippet, 14
    assert topk_mil_logits(logits, mask).tolist() == [18.5, 14.0]


def test_info_nce_is_cross_entropy_over_cosines():
    q, p, n = torch.randn(3, 5), torch.randn(3, 5), torch.randn(4, 5)
    cos = lambda a, b: F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T  # noqa: E731
    logits = torch.cat((cos(q, p).diagonal()[:, None], cos(q, n)), 1) / 0.1
    expected = -logits.log_softmax(1)[:, 0].mean()
    assert info_nce(q, p, n, temperature=0.1) == pytest.approx(float(expected), rel=1e-5)


def test_shapes_predict_and_crop_averaging():
    head = _head().eval()
    batch = _batch(b=2, t=12, crops=5, lengths=[12, 7])
    with torch.no_grad():
        out = head(batch["features"], batch)
        preds = head.predict(out, batch)
    assert out["av_logits"].shape == (10, 12) and out["audio_rep"].shape == (10, 12, 16)
    assert [p["scores"].shape[0] for p in preds] == [12, 7]
    # video 1 alone, unpadded, crop by crop: padding is masked out and crops are averaged
    single = {k: v[1:2, ..., :7, :] if k == "features" else v for k, v in batch.items()}
    single.update(audio=batch["audio"][1:2, :7], mask=torch.ones(1, 7, dtype=torch.bool), video_ids=["v1"])
    with torch.no_grad():
        crops = [head(single["features"][:, c], single)["av_logits"].sigmoid()[0] for c in range(5)]
    assert torch.allclose(preds[1]["scores"], torch.stack(crops).mean(0), atol=1e-5)


def test_weak_supervision_loss_trains_model_and_peer_separately():
    head = _head(steps_per_epoch=1).train()
    head.set_epoch(5)  # contrastive weight min(1.5, 0.1 * 5) = 0.5
    batch = _batch()
    batch.pop("mask")  # no targets or frame labels needed: video-level labels only
    losses = head.loss(head(batch["features"], batch), batch)
    assert float(losses["contrast_weight"]) == pytest.approx(0.5)
    assert set(losses) >= {"loss", "mil", "peer", "contrast_bgd", "contrast_nor"}
    losses["loss"].backward()
    peer_grads = [p.grad.clone() for p in head.peer.parameters()]
    assert all(g is not None for g in peer_grads) and head.proj_audio.weight.grad.abs().sum() > 0
    # the peer's parameters get gradient from its own MIL loss only
    head.zero_grad()
    batch["mask"] = torch.ones(4, 20, dtype=torch.bool)
    out = head(batch["features"], batch)
    F.binary_cross_entropy_with_logits(
        topk_mil_logits(out["peer_logits"], out["mask"]), batch["labels"]
    ).backward()
    for expected, param in zip(peer_grads, head.peer.parameters()):
        assert torch.allclose(param.grad, expected, atol=1e-6)


def test_contrastive_loss_needs_both_semi_bags():
    head = _head()
    out = head(_batch()["features"], _batch())
    out["av_logits"] = torch.full_like(out["av_logits"], 5.0)  # every video predicted violent
    assert all(float(v) == 0 for v in head.contrastive_losses(out).values())
    out["av_logits"][:2] = -5.0  # two predicted normal: all four terms are live InfoNCE losses
    losses = head.contrastive_losses(out)
    assert all(float(v.detach()) > 0 for v in losses.values())


def test_ema_after_each_epoch_follows_the_official_cosine():
    head = _head(steps_per_epoch=2, ema_momentum=0.91, ema_epochs=50)
    assert head.ema_momentum_at(0) == pytest.approx(0.91) and head.ema_momentum_at(50) == pytest.approx(1.0)
    assert head.ema_momentum_at(25) == pytest.approx(1 + 0.5 * (0.91 - 1) * (1 + math.cos(math.pi / 2)))
    assert [head.contrast_weight_at(e) for e in (0, 3, 20)] == pytest.approx([0.0, 0.3, 1.5])
    batch = _batch()
    before = head.classifier.weight.detach().clone()
    for _ in range(2):  # epoch 0: two training steps, no EMA yet
        head.train()
        head.loss(head(batch["features"], batch), batch)
    assert torch.equal(head.classifier.weight, before) and int(head.ema_done) == 0
    peer = head.peer.classifier.weight.detach().clone()
    audio = head.proj_audio.weight.detach().clone()
    head.eval()
    with torch.inference_mode():  # the validation after epoch 0 sees its EMA, as main.py does
        head(batch["features"], batch)
    assert torch.allclose(head.classifier.weight, 0.91 * before + 0.09 * peer)
    assert torch.equal(head.proj_audio.weight, audio)  # the audio path has no peer
    assert int(head.ema_done) == 1 and head.epoch == 1
    state = head.state_dict()
    assert int(state["train_steps"]) == 2 and int(state["ema_done"]) == 1  # resumes the schedule


def test_bad_configuration():
    with pytest.raises(ValueError, match="num_classes must be 1"):
        _head(num_classes=3)
    with pytest.raises(ValueError, match="not divisible"):
        _head(hidden_dim=10, num_heads=4)
