"""MACILSDHead: top-k MIL, the modality-aware contrastive loss, the visual peer and its EMA."""

import math

import pytest
import torch
import torch.nn.functional as F

from vidlit.heads.xd_violence import MACILSDHead, info_nce, topk_mil_logits

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
    head = _head().train()
    head.on_train_epoch_start(5)  # contrastive weight min(1.5, 0.1 * 5) = 0.5
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
    head = _head(ema_momentum=0.91, ema_epochs=50)
    assert head.ema_momentum_at(0) == pytest.approx(0.91) and head.ema_momentum_at(50) == pytest.approx(1.0)
    assert head.ema_momentum_at(25) == pytest.approx(1 + 0.5 * (0.91 - 1) * (1 + math.cos(math.pi / 2)))
    assert [head.contrast_weight_at(e) for e in (0, 3, 20)] == pytest.approx([0.0, 0.3, 1.5])
    batch = _batch()
    before = head.classifier.weight.detach().clone()
    head.train()
    head.on_train_epoch_start(0)
    for _ in range(2):  # epoch 0: two training steps, no EMA yet
        head.loss(head(batch["features"], batch), batch)
    assert torch.equal(head.classifier.weight, before) and int(head.ema_done) == 0
    peer = head.peer.classifier.weight.detach().clone()
    audio = head.proj_audio.weight.detach().clone()
    head.on_train_epoch_end(0)  # before the validation of epoch 0, as main.py does
    assert torch.allclose(head.classifier.weight, 0.91 * before + 0.09 * peer)
    assert torch.equal(head.proj_audio.weight, audio)  # the audio path has no peer
    assert int(head.ema_done) == 1 and head.epoch == 0
    head.on_train_epoch_start(1)  # nothing missed: no second EMA
    assert torch.allclose(head.classifier.weight, 0.91 * before + 0.09 * peer) and head.epoch == 1
    state = head.state_dict()
    assert int(state["current_epoch"]) == 1 and int(state["ema_done"]) == 1  # resumes the schedule
    # an epoch end that a checkpoint missed is caught up when the next epoch starts
    late = _head(ema_momentum=0.91, ema_epochs=50)
    late.on_train_epoch_start(2)
    assert int(late.ema_done) == 2 and late.epoch == 2


def test_deprecated_steps_per_epoch_and_old_checkpoints_still_load():
    with pytest.warns(FutureWarning, match="steps_per_epoch is deprecated"):
        head = _head(steps_per_epoch=13)
    old = {k: v for k, v in head.state_dict().items() if k != "current_epoch"}
    old["train_steps"], old["ema_done"] = torch.tensor(26), torch.tensor(2)  # a checkpoint of 2 epochs
    fresh = _head()
    fresh.load_state_dict(old)
    assert int(fresh.ema_done) == 2 and fresh.epoch == 2


class _Videos(torch.utils.data.Dataset):
    """Eight fixed weakly labelled videos, the batch layout of ``collate_xd_violence``."""

    def __init__(self):
        g = torch.Generator().manual_seed(3)
        self.features, self.audio = torch.randn(8, 16, C, generator=g), torch.randn(8, 16, A, generator=g)
        self.labels = torch.tensor([1.0, 0.0] * 4)
        self.features[self.labels == 1, 4:8] += 2.0  # a learnable violent segment

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return self.features[i], self.audio[i], self.labels[i]


def _collate(items):
    features, audio, labels = (torch.stack(x) for x in zip(*items))
    return {
        "features": features,
        "audio": audio,
        "mask": torch.ones(features.shape[:2], dtype=torch.bool),
        "labels": labels,
        "video_ids": [f"v{i}" for i in range(len(labels))],
        "targets": [{"video_id": f"v{i}"} for i in range(len(labels))],
    }


class _Recorder(__import__("lightning").Callback):
    """Per training step: the contrastive weight the head used and its EMA count."""

    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        weight = float(trainer.callback_metrics["train/contrast_weight"])
        self.seen.append((trainer.current_epoch, round(weight, 6), int(module.head.ema_done)))


def _fit(root, epochs, ckpt_path=None):
    import lightning as L

    from vidlit.tasks import TaskModule

    L.seed_everything(0, verbose=False)
    head = _head(ema_momentum=0.5, ema_epochs=4, contrast_ramp=0.5)  # big steps: 0.5 per epoch
    module = TaskModule(head, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2))
    recorder = _Recorder()
    trainer = L.Trainer(
        max_epochs=epochs,
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[recorder, L.pytorch.callbacks.ModelCheckpoint(dirpath=root, save_last=True)],
    )
    loader = torch.utils.data.DataLoader(_Videos(), batch_size=4, collate_fn=_collate)
    trainer.fit(module, loader, ckpt_path=ckpt_path)
    return module, recorder.seen


def test_epoch_schedule_from_task_module_resumes_exactly(tmp_path, one_thread):
    """The ramp and the EMA follow TaskModule's epochs, and a resumed run equals an uninterrupted one."""
    full, seen = _fit(tmp_path / "full", epochs=3)
    # 2 steps per epoch: the weight ramps 0, 0.5, 1.0 by epoch; one EMA at each epoch's end
    assert seen == [(0, 0.0, 0), (0, 0.0, 0), (1, 0.5, 1), (1, 0.5, 1), (2, 1.0, 2), (2, 1.0, 2)]
    assert int(full.head.ema_done) == 3 and full.head.epoch == 2
    _fit(tmp_path / "killed", epochs=2)  # the run "killed" after epoch 1, then resumed
    resumed, seen_resumed = _fit(tmp_path / "resumed", epochs=3, ckpt_path=tmp_path / "killed" / "last.ckpt")
    assert seen_resumed == seen[4:]
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_bad_configuration():
    with pytest.raises(ValueError, match="num_classes must be 1"):
        _head(num_classes=3)
    with pytest.raises(ValueError, match="not divisible"):
        _head(hidden_dim=10, num_heads=4)
