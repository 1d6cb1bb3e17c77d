import inspect
import math

import pytest
import torch
from torchmetrics import MetricCollection

from vidlit.core.segments import segment_iou
from vidlit.heads.ego4d_mq import ActionFormerHead, assign_points, diou_loss_1d, ego4d_regression_range

IN_DIM, NUM_CLASSES, T = 16, 3, 64
TINY = dict(embed_dim=32, head_dim=32, num_heads=4, levels=4, window=5)


pytestmark = pytest.mark.usefixtures("one_thread")


def _head(**kwargs) -> ActionFormerHead:
    torch.manual_seed(0)
    return ActionFormerHead(IN_DIM, NUM_CLASSES, **{**TINY, **kwargs})


def _batch(lengths=(64, 40), step=0.5, offset=0.25, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    b = len(lengths)
    features = torch.randn(b, T, IN_DIM, generator=g)
    mask = torch.zeros(b, T, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
        features[i, n:] = 0
    targets = [
        {
            "video_id": f"clip{i}",
            "segments": torch.tensor([[2.0, 9.0], [12.0, 15.5]]),
            "labels": torch.tensor([0, 2]),
        }
        for i in range(b)
    ]
    return {
        "features": features,
        "mask": mask,
        "video_ids": [f"clip{i}" for i in range(b)],
        "duration": torch.tensor([n * step for n in lengths]),
        "step_sec": torch.full((b,), step),
        "offset_sec": torch.full((b,), offset),
        "targets": targets,
    }


def test_defaults_are_actionformer_ego4d():
    defaults = {k: p.default for k, p in inspect.signature(ActionFormerHead).parameters.items()}
    assert defaults["levels"] == 8 and defaults["window"] == 9
    assert defaults["center_sample_radius"] == 1.5 and defaults["nms_sigma"] == 0.9
    assert defaults["max_segments"] == 2000 and defaults["nms_min_score"] == 0.001
    assert defaults["pre_nms_topk"] == 5000 and defaults["pre_nms_thresh"] == 0.001
    assert defaults["multiclass_nms"] is True and defaults["voting_thresh"] == 0.95
    assert ego4d_regression_range(8) == [
        (0, 4), (2, 8), (4, 16), (8, 32), (16, 64), (32, 128), (64, 256), (128, 10000),
    ]  # fmt: skip
    assert ego4d_regression_range(7)[-1] == (64, 10000)  # ego4d_slowfast.yaml
    head = ActionFormerHead(in_dim=64, num_classes=5)
    assert head.input == "features" and head.feature_layout == "temporal"


def test_forward_shapes_for_all_levels():
    head = _head()
    batch = _batch(lengths=(60, 33))
    features = batch["features"][:, :60]  # not a multiple of 2**(levels-1): padded inside
    batch["mask"] = batch["mask"][:, :60]
    out = head(features, batch)
    assert [x.shape for x in out["cls_logits"]] == [(2, 64 // 2**lv, NUM_CLASSES) for lv in range(4)]
    assert [x.shape for x in out["offsets"]] == [(2, 64 // 2**lv, 2) for lv in range(4)]
    assert [m.shape for m in out["masks"]] == [(2, 64 // 2**lv) for lv in range(4)]
    assert all((o >= 0).all() for o in out["offsets"])  # ReLU on distances
    assert out["masks"][0][1].sum() == 33 and out["masks"][3][1].sum() == 5


def test_loss_is_finite_and_reaches_every_parameter():
    head = _head().train()
    batch = _batch()
    losses = head.loss(head(batch["features"], batch), batch)
    assert set(losses) == {"loss", "cls_loss", "reg_loss"}
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in losses.values())
    assert losses["reg_loss"] > 0
    losses["loss"].backward()
    missing = [
        name for name, p in head.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
    ]
    assert not missing


def test_loss_under_bf16_autocast():
    head = _head().train()
    batch = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = head.loss(head(batch["features"], batch), batch)
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    losses["loss"].backward()


def test_loss_normalizer_is_an_ema_of_positives_in_training_only():
    head = _head(init_loss_norm=100.0)
    batch = _batch()
    head.eval()
    head.loss(head(batch["features"], batch), batch)
    assert head.loss_normalizer.item() == 100.0
    head.train()
    out = head(batch["features"], batch)
    cls_targets, _ = head.targets(out, batch)
    positives = ((cls_targets.sum(-1) > 0) & torch.cat(out["masks"], 1)).sum().item()
    assert positives > 0
    head.loss(out, batch)
    assert head.loss_normalizer.item() == pytest.approx(0.9 * 100 + 0.1 * positives)


def test_clip_without_moments_has_no_regression_loss():
    head = _head().train()
    batch = _batch()
    for target in batch["targets"]:
        target["segments"], target["labels"] = torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)
    losses = head.loss(head(batch["features"], batch), batch)
    assert losses["reg_loss"] == 0 and torch.isfinite(losses["cls_loss"])
    losses["loss"].backward()


def test_padding_does_not_change_real_steps():
    head = _head().eval()
    batch = _batch(lengths=(64, 37))
    out = head(batch["features"], batch)
    garbage = batch["features"].clone()
    garbage[1, 37:] = 50 * torch.randn(T - 37, IN_DIM)
    out2 = head(garbage, batch)
    # and the clip alone, padded only to 40 steps internally
    alone = {**batch, "mask": batch["mask"][1:, :37]}
    out3 = head(batch["features"][1:, :37], alone)
    for key in ("cls_logits", "offsets"):
        levels = zip(out[key], out2[key], out3[key], out["masks"], strict=True)
        for level, (a, b, c, m) in enumerate(levels):
            real = m[1]
            assert torch.allclose(a[1][real], b[1][real], atol=1e-5), (key, level)
            assert torch.allclose(a[1][real], c[0][: int(real.sum())], atol=1e-5), (key, level)
            assert torch.equal(a[0], b[0])


def test_assign_points_center_sampling_ranges_and_shortest_moment():
    # levels: stride 1 at steps 0..15 and stride 2 at 0, 2, .., 14
    points = torch.cat([torch.arange(16.0), torch.arange(0.0, 16.0, 2)])
    strides = torch.cat([torch.ones(16), torch.full((8,), 2.0)])
    ranges = torch.tensor([[0.0, 4.0]] * 16 + [[4.0, 10000.0]] * 8)
    # A: [4, 10] class 0 (centre 7); B: [5, 9] class 1, shorter, same centre
    segments = torch.tensor([[4.0, 10.0], [5.0, 9.0]])
    labels = torch.tensor([0, 1])
    cls, reg = assign_points(points, strides, ranges, segments, labels, num_classes=2, center_radius=1.5)
    positive = cls.sum(1) > 0
    level0, level1 = positive[:16].nonzero().squeeze(1), positive[16:].nonzero().squeeze(1)
    # level 0: centre region 7 +- 1.5 -> steps 6, 7, 8 (step 5 is inside A but not near its centre);
    # both moments qualify there, the shorter B wins
    assert level0.tolist() == [6, 7, 8]
    assert cls[6].tolist() == [0.0, 1.0]
    assert reg[6].tolist() == [1.0, 3.0]
    # level 1: centre region 7 +- 3 clipped to the moment; B's distances (max 3) are below the
    # range [4, 10000], A's (max 4) are in it: steps 6 and 8 regress A, divided by the stride 2
    assert level1.tolist() == [3, 4]
    assert cls[16 + 3].tolist() == [1.0, 0.0]
    assert reg[16 + 3].tolist() == [1.0, 2.0]
    assert reg[16 + 4].tolist() == [2.0, 1.0]
    # without center sampling (and unlimited ranges) every step strictly inside A qualifies
    wide = torch.tensor([[0.0, 100.0]] * 24)
    cls, _ = assign_points(points, strides, wide, segments, labels, num_classes=2, center_radius=None)
    assert (cls[:16].sum(1) > 0).nonzero().squeeze(1).tolist() == [5, 6, 7, 8, 9]
    assert cls[5].tolist() == [1.0, 0.0]  # B starts at 5: not strictly inside it


def test_assign_points_equal_moments_share_the_point():
    points, strides, ranges = torch.arange(8.0), torch.ones(8), torch.tensor([[0.0, 100.0]] * 8)
    segments = torch.tensor([[1.0, 6.0], [1.0, 6.0]])
    cls, _ = assign_points(points, strides, ranges, segments, torch.tensor([0, 2]), num_classes=3)
    assert cls[3].tolist() == [1.0, 0.0, 1.0]


def test_diou_loss_worked_examples():
    pred = torch.tensor([[2.0, 3.0], [0.0, 1.0], [1.0, 1.0], [1.0, 3.0]])
    target = torch.tensor([[2.0, 3.0], [1.0, 0.0], [2.0, 2.0], [2.0, 2.0]])
    loss = diou_loss_1d(pred, target)
    # identical: 0; disjoint [c, c+1] vs [c-1, c]: IoU 0, centres 1 apart, enclosing 2 -> 1 + 1/4;
    # nested with a shared centre: 1 - 1/2; [c-1, c+3] vs [c-2, c+2]: 1 - 3/5 + (1/5)**2
    assert torch.allclose(loss, torch.tensor([0.0, 1.25, 0.5, 0.44]))


def test_predict_returns_sorted_seconds_within_duration():
    head = _head().eval()
    batch = _batch(lengths=(64, 40))
    with torch.no_grad():
        preds = head.predict(head(batch["features"], batch), batch)
    assert [p["video_id"] for p in preds] == batch["video_ids"]
    for pred, duration in zip(preds, batch["duration"].tolist(), strict=True):
        assert set(pred) == {"video_id", "segments", "labels", "scores"}
        k = pred["scores"].shape[0]
        assert 0 < k <= head.max_segments
        assert pred["segments"].shape == (k, 2) and pred["segments"].dtype == torch.float32
        assert pred["labels"].shape == (k,) and pred["labels"].dtype == torch.int64
        assert ((pred["labels"] >= 0) & (pred["labels"] < NUM_CLASSES)).all()
        assert (pred["segments"] >= 0).all() and (pred["segments"] <= duration).all()
        assert (pred["segments"][:, 1] >= pred["segments"][:, 0]).all()
        assert (pred["scores"][:-1] >= pred["scores"][1:]).all()


def _two_candidates(head):
    """Hand-made outputs of a 1-level head: steps 10 and 11 predict [5, 15] and [5.2, 15.2] steps."""
    t = 16
    logits = torch.full((1, t, NUM_CLASSES), -20.0)
    logits[0, 10, 0], logits[0, 11, 2] = torch.logit(torch.tensor(0.9)), torch.logit(torch.tensor(0.5))
    offsets = torch.zeros(1, t, 2)
    offsets[0, 10], offsets[0, 11] = torch.tensor([5.0, 5.0]), torch.tensor([5.8, 4.2])
    outputs = {"cls_logits": [logits], "offsets": [offsets], "masks": [torch.ones(1, t, dtype=torch.bool)]}
    batch = {"video_ids": ["c"], "duration": torch.tensor([100.0]), "step_sec": torch.tensor([0.5])}
    return outputs, {**batch, "offset_sec": torch.tensor([0.25])}


def test_class_agnostic_nms_votes_on_boundaries():
    head = _head(levels=1, multiclass_nms=False, voting_thresh=0.95).eval()
    pred = head.predict(*_two_candidates(head))[0]
    # IoU([5, 15], [5.2, 15.2]) = 9.8 / 10.2 >= 0.95: the kept [5, 15] moves towards its neighbour,
    # weighted by score * IoU; the neighbour (decayed, kept too) keeps its class
    iou = 9.8 / 10.2
    weights = torch.tensor([0.9, 0.5 * iou])
    start = float((weights * torch.tensor([5.0, 5.2])).sum() / weights.sum())
    assert pred["segments"][0].tolist() == pytest.approx([start * 0.5 + 0.25, (start + 10) * 0.5 + 0.25])
    assert pred["labels"].tolist() == [0, 2]
    assert pred["scores"].tolist() == pytest.approx([0.9, 0.5 * math.exp(-(iou**2) / 0.9)], rel=1e-5)
    # per-class NMS (the Ego4D default) never votes, as ActionFormer's batched_nms
    pred = _head(levels=1, voting_thresh=0.95).eval().predict(*_two_candidates(head))[0]
    assert pred["segments"][0].tolist() == pytest.approx([5.0 * 0.5 + 0.25, 15.0 * 0.5 + 0.25])
    assert pred["scores"].tolist() == pytest.approx([0.9, 0.5])


def test_predict_without_candidates_returns_empty_tensors():
    head = _head(pre_nms_thresh=1.0).eval()
    batch = _batch()
    with torch.no_grad():
        pred = head.predict(head(batch["features"], batch), batch)[0]
    assert pred["segments"].shape == (0, 2) and pred["scores"].shape == (0,)
    assert pred["labels"].shape == (0,) and pred["labels"].dtype == torch.int64


def test_overfits_four_clips_and_recovers_the_moments():
    torch.manual_seed(0)
    step, offset, num_classes = 0.5, 0.25, 2
    prototypes = 2 * torch.randn(num_classes, IN_DIM)
    moments = [
        ([[4.0, 12.0]], [0]),
        ([[10.0, 24.0], [26.0, 31.0]], [1, 0]),
        ([[2.0, 20.0]], [1]),
        ([[8.0, 16.0], [20.0, 28.0]], [0, 1]),
    ]
    lengths = [64, 64, 56, 60]
    features = 0.3 * torch.randn(4, T, IN_DIM)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    centres = offset + torch.arange(T) * step
    targets = []
    for i, (segments, labels) in enumerate(moments):
        for (start, end), label in zip(segments, labels, strict=True):
            features[i, (centres >= start) & (centres <= end)] += prototypes[label]
        targets.append(
            {"video_id": f"v{i}", "segments": torch.tensor(segments), "labels": torch.tensor(labels)}
        )
    features[~mask] = 0
    batch = {
        "features": features, "mask": mask, "video_ids": [f"v{i}" for i in range(4)],
        "duration": torch.tensor(lengths) * step, "step_sec": torch.full((4,), step),
        "offset_sec": torch.full((4,), offset), "targets": targets,
    }  # fmt: skip
    head = ActionFormerHead(IN_DIM, num_classes, **TINY, dropout=0.0, drop_path=0.0)
    optimizer = torch.optim.Adam(head.parameters(), lr=2e-3)
    head.train()
    history = []
    for _ in range(100):
        losses = head.loss(head(features, batch), batch)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(losses["loss"].item())
    assert history[-1] < 0.25 * history[0]
    head.eval()
    with torch.no_grad():
        preds = head.predict(head(features, batch), batch)
    for pred, target in zip(preds, targets, strict=True):
        best = segment_iou(pred["segments"][:1], target["segments"])[0]
        assert best.max() > 0.5
        assert pred["labels"][0] == target["labels"][best.argmax()]


def test_rejects_bad_config():
    with pytest.raises(ValueError, match="window"):
        ActionFormerHead(8, 2, window=4)
    with pytest.raises(ValueError, match="regression_range"):
        ActionFormerHead(8, 2, levels=3, regression_range=[[0, 4], [4, 10000]])
    with pytest.raises(ValueError, match="divisible"):
        ActionFormerHead(8, 2, embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="voting_thresh"):
        ActionFormerHead(8, 2, voting_thresh=1.5)
    with pytest.raises(ValueError, match=r"features \[b, t, d\] with d=8"):
        ActionFormerHead(8, 2, **{**TINY, "embed_dim": 16})(torch.randn(1, 16, 5), {})


def test_metrics_is_the_temporal_map_collection():
    head = _head().eval()
    metrics = head.metrics()
    assert isinstance(metrics, MetricCollection)
    assert "map" in metrics
    batch = _batch()
    with torch.no_grad():
        metrics.update(head.predict(head(batch["features"], batch), batch), batch["targets"])
    results = metrics.compute()
    assert any("mAP" in key for key in results)
    assert all(0.0 <= float(v) <= 1.0 for v in results.values())


def test_cpu_forward_runs_on_one_thread_and_restores_the_setting(monkeypatch):
    head = _head().eval()
    batch = _batch()
    seen = []
    pyramid_forward = head.pyramid.forward

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return pyramid_forward(*args, **kwargs)

    monkeypatch.setattr(head.pyramid, "forward", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            two = head(batch["features"], batch)
        assert torch.get_num_threads() == 2 and seen == [1]
    finally:
        torch.set_num_threads(before)
    with torch.no_grad():
        one = head._forward(batch["features"], batch)  # the unbounded forward: the same outputs
    for key in ("cls_logits", "offsets", "masks"):
        assert all(torch.equal(x, y) for x, y in zip(two[key], one[key], strict=True))
