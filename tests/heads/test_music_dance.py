"""MuDaR head: rhythm alignment worked examples, multi-positive InfoNCE, the head contract, metrics."""

import pytest
import torch
import torch.nn.functional as F

from vidlit.heads.music_dance import MuDaRHead, multi_positive_info_nce, rhythm_alignment
from vidlit.layers.contrastive import contrastive_loss
from vidlit.metrics.music_dance import GenreAccuracy, MusicDanceRetrieval, SyncAccuracy

pytestmark = pytest.mark.usefixtures("one_thread")


def _beats(n: int, times: list[int]) -> torch.Tensor:
    env = torch.zeros(n)
    for t in times:
        env[t] = 1.0
        env[t + 1] = 0.5  # a short decay, as onset envelopes have
    return env


def test_rhythm_alignment_identical_is_one_at_lag_zero():
    env = _beats(200, [10, 47, 90, 121, 170])
    score, lag = rhythm_alignment(env, env.clone(), max_lag=10)
    assert score.item() == pytest.approx(1.0, abs=1e-6)
    assert lag.item() == 0


@pytest.mark.parametrize("shift", [3, -4, 8])
def test_rhythm_alignment_finds_the_shift(shift):
    visual = _beats(200, [20, 47, 90, 121, 170])
    audio = _beats(200, [t + shift for t in (20, 47, 90, 121, 170)])  # music onsets `shift` frames later
    score, lag = rhythm_alignment(visual, audio, max_lag=10)
    assert lag.item() == shift
    assert score.item() == pytest.approx(1.0, abs=1e-6)
    # beyond max_lag the true shift cannot be found and the score drops
    far, _ = rhythm_alignment(visual, audio, max_lag=abs(shift) - 1)
    assert far.item() < 0.5  # only the decays overlap


def test_rhythm_alignment_unrelated_rhythms_score_low_and_batches():
    visual = torch.stack([_beats(200, [20, 47, 90, 121, 170]), _beats(200, [5, 60, 100, 150])])
    audio = torch.stack([_beats(200, [33, 75, 110, 140, 185]), _beats(200, [5, 60, 100, 150])])
    score, lag = rhythm_alignment(visual, audio, max_lag=5)
    assert score.shape == lag.shape == (2,)
    assert score[0] < 0.3 and score[1] == pytest.approx(1.0, abs=1e-6)
    # a constant envelope has no rhythm: correlation 0, not NaN
    flat, _ = rhythm_alignment(torch.ones(50), _beats(50, [10, 30]), max_lag=3)
    assert flat.item() == 0.0


def test_rhythm_alignment_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in shape"):
        rhythm_alignment(torch.zeros(10), torch.zeros(11), 2)
    with pytest.raises(ValueError, match="max_lag"):
        rhythm_alignment(torch.zeros(10), torch.zeros(10), 10)


def test_multi_positive_info_nce_matches_clip_with_unique_keys_and_counts_shared_music():
    torch.manual_seed(0)
    dance = F.normalize(torch.randn(6, 8), dim=-1)
    music = F.normalize(torch.randn(6, 8), dim=-1)
    scale = torch.tensor(10.0)
    keys = torch.arange(6)
    clip, _ = contrastive_loss(dance, music, scale, gather=False)
    assert multi_positive_info_nce(dance, music, keys, scale).item() == pytest.approx(clip.item(), rel=1e-5)
    # two dances to one music window: the shared row is a positive for both, so the loss is lower
    music_shared = music.clone()
    music_shared[1] = music_shared[0]
    dance_shared = dance.clone()
    dance_shared[1] = F.normalize(music_shared[0] + 0.01, dim=-1)
    dance_shared[0] = F.normalize(music_shared[0] - 0.01, dim=-1)
    keys_shared = torch.tensor([0, 0, 2, 3, 4, 5])
    as_negatives = multi_positive_info_nce(dance_shared, music_shared, torch.arange(6), scale)
    as_positives = multi_positive_info_nce(dance_shared, music_shared, keys_shared, scale)
    assert as_positives < as_negatives
    # two identical pairs with the same key are exactly as good as one: -log(2/2) for them
    d = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), dim=-1)
    assert multi_positive_info_nce(d, d.clone(), torch.tensor([7, 7]), scale).item() == pytest.approx(
        0.0, abs=1e-6
    )


def _batch(b=4, t=20, c=16, n=100, seconds=1):
    torch.manual_seed(0)
    music_ids = [f"m{i % 2}@0" for i in range(b)]
    return {
        "motion": torch.rand(b, t, c),
        "visual_envelope": torch.rand(b, n),
        "audio_envelope": torch.rand(b, n),
        "audio": torch.randn(b, seconds, 96, 64),
        "genre": torch.tensor([i % 3 for i in range(b)]),
        "video_ids": [f"v{i}@0" for i in range(b)],
        "music_ids": music_ids,
        "targets": [{"video_id": f"v{i}@0", "music_id": music_ids[i], "label": i % 3} for i in range(b)],
    }


def test_head_forward_loss_predict_metrics():
    head = MuDaRHead(in_dim=16, num_classes=3, dim=16, embed_dim=8, time_bins=10, bin_dim=4)
    batch = _batch()
    out = head(batch["motion"], batch)
    assert out["dance_embedding"].shape == out["music_embedding"].shape == (4, 8)
    assert torch.allclose(out["dance_embedding"].norm(dim=-1), torch.ones(4))
    assert out["genre_logits"].shape == (4, 3) and out["sync_logits"].shape == (4, 2)
    losses = head.loss(out, batch)
    assert set(losses) == {"loss", "contrastive", "sync", "genre"}
    losses["loss"].backward()
    assert (
        head.log_logit_scale.grad is not None
        and head.timbre_encoder.embed[-1].weight.grad is not None
        and head.rhythm_conv[0].weight.grad is not None
    )
    head.eval()
    preds = head.predict(head(batch["motion"], batch), batch)
    assert len(preds) == 4 and preds[0]["sync_scores"].shape == (2,)
    assert -1.0 <= preds[0]["alignment"] <= 1.0 and abs(preds[0]["lag_seconds"]) <= 0.1
    metrics = head.metrics()
    metrics.update(preds, batch["targets"])
    values = metrics.compute()
    assert {"d2m/R@1", "m2d/R@1", "d2m/MdR", "genre/top1", "sync_acc"} <= set(values)
    # evaluation shifts the negative by half a window: deterministic
    again = head(batch["motion"], batch)["sync_logits"]
    assert torch.equal(again, head(batch["motion"], batch)["sync_logits"])


def test_head_rejects_mismatched_inputs():
    head = MuDaRHead(in_dim=16, num_classes=3, dim=16, embed_dim=8, time_bins=10, bin_dim=4)
    batch = _batch()
    with pytest.raises(ValueError, match="in_dim"):
        head(torch.rand(4, 20, 15), batch)
    batch["audio_envelope"] = batch["audio_envelope"][:, :50]
    with pytest.raises(ValueError, match="audio_envelope"):
        head(batch["motion"], batch)
    with pytest.raises(ValueError, match="min_shift"):
        MuDaRHead(in_dim=16, min_shift=0.7)


def test_music_dance_retrieval_groups_dances_by_music_window():
    # dances d0, d1 share music window A; d2 has window B. d1 is closer to B than to A.
    e = torch.eye(3)
    preds = [
        {"video_id": "d0", "dance_embedding": e[0], "music_embedding": e[0]},
        {"video_id": "d1", "dance_embedding": F.normalize(e[0] + 2 * e[1], dim=0), "music_embedding": e[0]},
        {"video_id": "d2", "dance_embedding": e[1], "music_embedding": e[1]},
    ]
    targets = [{"video_id": p["video_id"], "music_id": m} for p, m in zip(preds, ["A", "A", "B"])]
    metric = MusicDanceRetrieval(ks=(1,))
    metric.update(preds, targets)
    out = metric.compute()
    # d2m: d0 -> A rank 1, d1 -> A rank 2 (B scores higher), d2 -> B rank 1
    assert out["d2m/R@1"] == pytest.approx(2 / 3)
    assert out["d2m/MnR"] == pytest.approx(4 / 3)
    # m2d: A scores d0 1.0, d1 1/sqrt(5), d2 0: its best dance d0 ranks first (d1 is not needed);
    # B scores d0 0, d1 2/sqrt(5), d2 1.0: d2 ranks first
    assert out["m2d/R@1"] == pytest.approx(1.0)
    assert out["m2d/MnR"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="targets"):
        metric.update(preds, targets[:2])


def test_sync_and_genre_accuracy_worked_example():
    sync = SyncAccuracy()
    sync.update(
        [{"sync_scores": torch.tensor([0.9, 0.2])}, {"sync_scores": torch.tensor([0.4, 0.6])}],
        [{}, {}],
    )
    assert sync.compute() == {"sync_acc": 0.5}
    with pytest.raises(ValueError, match="sync_scores"):
        sync.update([{"sync_scores": torch.tensor([0.5])}], [{}])
    genre = GenreAccuracy(num_classes=3)
    genre.update(
        [
            {"video_id": "a", "scores": torch.tensor([0.1, 0.8, 0.1])},
            {"video_id": "b", "scores": torch.tensor([0.5, 0.3, 0.2])},
        ],
        [{"video_id": "a", "label": 1}, {"video_id": "b", "label": 2}],
    )
    assert genre.compute() == {"genre/top1": 0.5}
