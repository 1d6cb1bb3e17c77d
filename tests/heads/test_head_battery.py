"""One battery over every vidlit head: forward, loss, backward, predict, bf16, state-dict round trip.

Each case builds a tiny head and a matching synthetic batch. The checks are the head contract
(``vidlit.heads.base.TaskHead``): ``loss`` returns a finite scalar ``"loss"`` whose gradient
reaches every trainable parameter used, ``predict`` returns one list entry per sample (or per
item the task scores), ``metrics()`` is a MetricCollection, the head runs under CPU bf16
autocast, and a state dict loaded into a fresh instance reproduces the eval outputs exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torchmetrics import MetricCollection

from vidlit.heads import (
    ActionFormerHead,
    AttentiveProbeHead,
    AVParsingHead,
    HandForecastHead,
    LinearProbeHead,
    LorisHead,
    MACILSDHead,
    MMPyramidHead,
    MPNHead,
    MuDaRHead,
    ShortTermAnticipationHead,
    StateChangeDETRHead,
    TaskHead,
    VSLNetHead,
)

pytestmark = pytest.mark.usefixtures("one_thread")

Case = tuple[Callable[[], TaskHead], Callable[[], tuple[torch.Tensor, dict]]]


def _actionformer() -> Case:
    def batch():
        b, t, c = 2, 32, 16
        mask = torch.ones(b, t, dtype=torch.bool)
        mask[1, 20:] = False
        targets = [
            {"video_id": f"clip{i}", "segments": torch.tensor([[2.0, 9.0]]), "labels": torch.tensor([1])}
            for i in range(b)
        ]
        features = torch.randn(b, t, c) * mask[..., None]
        return features, {
            "features": features,
            "mask": mask,
            "video_ids": ["clip0", "clip1"],
            "duration": torch.tensor([16.0, 10.0]),
            "step_sec": torch.full((b,), 0.5),
            "offset_sec": torch.full((b,), 0.25),
            "targets": targets,
        }

    return lambda: ActionFormerHead(16, 3, embed_dim=32, head_dim=32, num_heads=4, levels=3, window=5), batch


def _probe(cls, features_shape) -> Case:
    def batch():
        labels = torch.tensor([0, 1, 2, 1])
        ids = ["a", "b", "c", "d"]
        return torch.randn(*features_shape), {
            "labels": labels,
            "video_ids": ids,
            "targets": [{"video_id": v, "label": int(y)} for v, y in zip(ids, labels)],
        }

    kwargs = {"num_heads": 4} if cls is AttentiveProbeHead else {}
    return lambda: cls(in_dim=16, num_classes=3, **kwargs), batch


def _macil() -> Case:
    def batch():
        b, t = 2, 20
        batch = {
            "features": torch.randn(b, t, 24),
            "audio": torch.randn(b, t, 8),
            "mask": torch.ones(b, t, dtype=torch.bool),
            "labels": torch.tensor([1.0, 0.0]),
            "video_ids": ["a", "b"],
        }
        return batch["features"], batch

    return (
        lambda: MACILSDHead(in_dim=24, audio_dim=8, hidden_dim=16, ffn_dim=16, num_heads=2),
        batch,
    )


def _ave(cls) -> Case:
    def batch():
        labels = torch.full((2, 10), 28)
        labels[0, 3:7] = 4
        batch = {
            "audio": torch.randn(2, 10, 128),
            "visual": torch.rand(2, 10, 7, 7, 16),
            "segment_labels": labels,
            "video_labels": torch.zeros(2, 29).scatter_(1, labels, 1.0),
            "video_ids": ["a", "b"],
            "targets": [{"video_id": v, "labels": labels[i]} for i, v in enumerate("ab")],
        }
        return batch["audio"], batch

    return lambda: cls(in_dim=16, num_classes=29, dim=16, num_heads=2, attention_dim=8), batch


def _llp() -> Case:
    def batch():
        labels = torch.zeros(2, 5)
        labels[:, 0] = 1
        ids = ["a_0_10", "b_0_10"]
        batch = {
            "audio": torch.randn(2, 10, 8),
            "visual": torch.randn(2, 10, 12),
            "mask": torch.ones(2, 10, dtype=torch.bool),
            "labels": labels,
            "video_ids": ids,
            "targets": [{"video_id": v, "labels": labels[i]} for i, v in enumerate(ids)],
        }
        return batch["visual"], batch

    return lambda: AVParsingHead(in_dim=12, num_classes=5, audio_dim=8, embed_dim=16, num_levels=2), batch


def _scod() -> Case:
    def batch():
        return torch.randn(2, 64, 16), {
            "video": torch.zeros(2, 3, 8, 32, 32),
            "boxes": [torch.tensor([[0.5, 0.5, 0.25, 0.25]]), torch.zeros(0, 4)],
            "labels": [torch.zeros(1, dtype=torch.long), torch.zeros(0, dtype=torch.long)],
            "frame_size": torch.tensor([[64, 64], [64, 64]]),
            "image_ids": ["v/1.jpg", "w/2.jpg"],
            "video_ids": ["a", "b"],
        }

    return lambda: StateChangeDETRHead(in_dim=16, hidden=32, num_queries=4, num_layers=2, patch_size=8), batch


def _scod_refined() -> Case:
    def batch():
        features, inputs = _scod()[1]()
        return features, {**inputs, "video": torch.randn(2, 3, 8, 32, 32)}

    return (
        lambda: StateChangeDETRHead(
            in_dim=16, hidden=32, num_queries=4, num_layers=2, patch_size=8, refine_stride=2
        ),
        batch,
    )


def _sta() -> Case:
    def batch():
        orig = [torch.tensor([[8.0, 8.0, 24.0, 24.0], [40.0, 40.0, 60.0, 60.0]]), torch.zeros(0, 4)]

        def target(uid, n):
            return {
                "video_id": uid,
                "boxes": orig[0][:n],
                "nouns": torch.tensor([2] * n),
                "verbs": torch.tensor([1] * n),
                "ttcs": torch.tensor([0.5] * n),
            }

        return torch.randn(2, 64, 64), {
            "video": torch.randn(2, 3, 8, 32, 32),
            "boxes": [b / 64 for b in orig],
            "orig_boxes": orig,
            "box_scores": [torch.ones(2), torch.ones(0)],
            "video_ids": ["a", "b"],
            "targets": [target("a", 1), target("b", 0)],
        }

    return lambda: ShortTermAnticipationHead(in_dim=64, num_classes=3, num_verbs=4, hidden_dim=32), batch


def _mudar() -> Case:
    def batch():
        b, mids, labels = 4, ["m0@0", "m1@0", "m0@0", "m1@0"], [0, 1, 2, 0]
        batch = {
            "motion": torch.rand(b, 20, 16),
            "visual_envelope": torch.rand(b, 100),
            "audio_envelope": torch.rand(b, 100),
            "audio": torch.randn(b, 1, 96, 64),
            "genre": torch.tensor(labels),
            "video_ids": [f"v{i}@0" for i in range(b)],
            "music_ids": mids,
            "targets": [{"video_id": f"v{i}@0", "music_id": mids[i], "label": labels[i]} for i in range(b)],
        }
        return batch["motion"], batch

    return lambda: MuDaRHead(in_dim=16, num_classes=3, dim=16, embed_dim=8, time_bins=10, bin_dim=4), batch


def _nlq() -> Case:
    def batch():
        batch = {
            "features": torch.randn(2, 20, 12),
            "mask": torch.ones(2, 20, dtype=torch.bool),
            "queries": ["where is the cup?", "where are my keys?"],
            "video_ids": ["a", "b"],
            "duration": torch.tensor([10.0, 8.0]),
            "start_index": torch.tensor([3, 0]),
            "end_index": torch.tensor([7, 12]),
        }
        return batch["features"], batch

    return (
        lambda: VSLNetHead(12, dim=16, num_heads=2, max_pos_len=32, conv_layers=1, text_encoder="text_test"),
        batch,
    )


def _fhp() -> Case:
    def batch():
        return torch.randn(2, 10, 16), {
            "hands": torch.rand(2, 5, 2, 2) * 64,
            "valid": torch.ones(2, 5, 2, dtype=torch.bool),
            "video_ids": ["1_9", "2_9"],
        }

    return lambda: HandForecastHead(16, hidden=32, coord_scale=64.0), batch


def _fhp_soft_argmax() -> Case:
    def batch():
        return torch.randn(2, 8, 16), {
            "video": torch.zeros(2, 3, 4, 16, 16),  # a 2 x 2 x 2 token grid, patch 8 derived
            "hands": torch.rand(2, 5, 2, 2) * 64,
            "valid": torch.ones(2, 5, 2, dtype=torch.bool),
            "video_ids": ["1_9", "2_9"],
        }

    return lambda: HandForecastHead(16, hidden=32, coord_scale=64.0, readout="soft_argmax"), batch


def _loris() -> Case:
    def batch():
        b, n, rate = 2, 1024, 1000
        audio = torch.randn(b, 1, n) * 0.2
        batch = {
            "audio": audio,
            "beats": (torch.rand(b, 17) > 0.8).float(),
            "visual": torch.randn(b, 3, 16),
            "genre": torch.tensor([1, -1]),
            "sample_rate": rate,
            "video_ids": ["gPO_a", "b"],
            "targets": [{"video_id": v, "audio": audio[i, 0], "sample_rate": rate} for i, v in enumerate("ab")],
        }
        return audio, batch

    head = dict(patch=8, channels=(8, 16), factors=(4,), attn_levels=(1,), cond_dim=16, num_heads=2)
    return lambda: LorisHead(16, num_classes=3, sampling_steps=2, progress=False, **head), batch


CASES: dict[str, Case] = {
    "actionformer": _actionformer(),
    "linear_probe": _probe(LinearProbeHead, (4, 16)),
    "attentive_probe": _probe(AttentiveProbeHead, (4, 8, 16)),
    "macil_sd": _macil(),
    "mpn": _ave(MPNHead),
    "mm_pyramid": _ave(MMPyramidHead),
    "av_parsing": _llp(),
    "scod_detr": _scod(),
    "scod_detr_refined": _scod_refined(),
    "sta": _sta(),
    "mudar": _mudar(),
    "nlq_vslnet": _nlq(),
    "fhp": _fhp(),
    "fhp_soft_argmax": _fhp_soft_argmax(),
    "loris": _loris(),
}


def _build(name: str) -> tuple[TaskHead, torch.Tensor, dict]:
    make_head, make_batch = CASES[name]
    torch.manual_seed(0)
    head = make_head()
    features, batch = make_batch()
    return head, features, batch


def _tensors(x) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, dict):
        return [t for v in x.values() for t in _tensors(v)]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _tensors(v)]
    return [t for v in vars(x).values() for t in _tensors(v)] if hasattr(x, "__dict__") else []


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_loss_backward_predict(name):
    head, features, batch = _build(name)
    assert isinstance(head, TaskHead) and head.input and head.feature_layout
    head.train()
    outputs = head(features, batch)
    losses = head.loss(outputs, batch)
    loss = losses["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in head.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)  # zero-initialized output layers may give zeros
    assert any(g.abs().sum() > 0 for g in grads)
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    head.eval()
    with torch.no_grad():
        predictions = head.predict(head(features, batch), batch)
    assert isinstance(predictions, list) and len(predictions) == len(batch["video_ids"])
    assert isinstance(head.metrics(), MetricCollection)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bf16_autocast(name):
    head, features, batch = _build(name)
    head.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = head(features, batch)
        loss = head.loss(outputs, batch)["loss"]
        head.predict(outputs, batch)
    assert torch.isfinite(loss.float())
    assert all(torch.isfinite(t.float()).all() for t in _tensors(outputs) if t.is_floating_point())


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_dict_round_trip(name):
    head, features, batch = _build(name)
    head.eval()
    torch.manual_seed(123)  # a fresh instance with other weights
    fresh = CASES[name][0]()
    fresh.load_state_dict(head.state_dict())
    fresh.eval()
    with torch.no_grad():
        expected = _tensors(head(features, batch))
        actual = _tensors(fresh(features, batch))
    assert len(expected) == len(actual) > 0
    for a, b in zip(actual, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
