import pytest
import torch

from vidlit.backbones import create_backbone
from vidlit.heads import AttentiveProbeHead, LinearProbeHead
from vidlit.tasks import TaskModule

HEADS = {
    "linear": lambda: LinearProbeHead(in_dim=64, num_classes=5, dropout=0.1, label_smoothing=0.1),
    "attentive": lambda: AttentiveProbeHead(in_dim=64, num_classes=5, num_heads=4),
}


def _batch(b=6):
    labels = (torch.arange(b) // 2) % 5
    video_ids = [f"v{i // 2}" for i in range(b)]  # two views per video
    return {
        "labels": labels,
        "video_ids": video_ids,
        "targets": [{"video_id": v, "label": int(y)} for v, y in zip(video_ids, labels)],
    }


def _features(head, b=6):
    shape = (b, 64) if head.feature_layout == "pooled" else (b, 10, 64)
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", HEADS)
def test_forward_loss_backward_predict(name):
    head, batch = HEADS[name](), _batch()
    assert head.input == "video"
    features = _features(head).requires_grad_()
    logits = head(features, batch)
    assert logits.shape == (6, 5)
    losses = head.loss(logits, batch)
    assert set(losses) == {"loss"} and losses["loss"].ndim == 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert features.grad is not None and all(p.grad is not None for p in head.parameters())
    predictions = head.predict(logits, batch)
    assert len(predictions) == 6 and set(predictions[0]) == {"video_id", "label", "scores"}
    assert predictions[1]["video_id"] == "v0" and isinstance(predictions[1]["label"], int)
    scores = torch.stack([p["scores"] for p in predictions])
    assert scores.shape == (6, 5) and torch.allclose(scores.sum(-1), torch.ones(6))
    assert [p["label"] for p in predictions] == scores.argmax(-1).tolist()
    metrics = head.metrics()
    metrics.update(predictions, batch["targets"])
    assert set(metrics.compute()) == {"top1"}  # top5 of 5 classes is always 1.0: not reported


@pytest.mark.parametrize("name", HEADS)
def test_empty_and_single_sample_batches(name):
    head = HEADS[name]().train()
    empty = _batch(0)
    logits = head(_features(head, 0), empty)
    assert logits.shape == (0, 5)
    loss = head.loss(logits, empty)["loss"]
    assert loss.item() == 0.0 and loss.requires_grad  # a no-op step, not NaN
    assert head(_features(head, 1), _batch(1)).shape == (1, 5)  # BatchNorm cannot use 1 sample


def test_linear_probe_is_batchnorm_without_affine_then_linear():
    head = LinearProbeHead(in_dim=64, num_classes=5)
    assert not head.norm.affine and head.norm.eps == 1e-6
    head.eval()
    features = _features(head)
    expected = head.fc((features - head.norm.running_mean) / torch.sqrt(head.norm.running_var + 1e-6))
    torch.testing.assert_close(head(features, _batch()), expected)


def test_linear_head_without_batchnorm_is_videomaes_fine_tuning_head():
    torch.manual_seed(0)
    head = LinearProbeHead(in_dim=64, num_classes=5, batch_norm=False, init_std=2e-5)
    assert head.norm is None
    assert 1e-5 < float(head.fc.weight.std()) < 3e-5 and not head.fc.bias.any()  # 0.02 x init_scale 0.001
    features = _features(head)
    torch.testing.assert_close(head(features, _batch()), head.fc(features))  # training: no batch statistics
    torch.testing.assert_close(head(features[:1], _batch(1)), head.fc(features[:1]))
    with pytest.raises(ValueError, match="init_std"):
        LinearProbeHead(in_dim=64, num_classes=5, init_std=0.0)


def test_attentive_probe_is_permutation_invariant_over_tokens():
    head = AttentiveProbeHead(in_dim=64, num_classes=5, num_heads=4).eval()
    tokens = _features(head)
    shuffled = tokens[:, torch.randperm(tokens.shape[1])]
    torch.testing.assert_close(head(tokens, _batch()), head(shuffled, _batch()), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("make", "features", "message"),
    [
        (
            lambda: LinearProbeHead(64, 5),
            torch.zeros(2, 10, 64),
            r"expects features \[b, d\] with d=64",
        ),
        (lambda: AttentiveProbeHead(64, 5, num_heads=4), torch.zeros(2, 32), r"expects features \[b, n, d\]"),
    ],
)
def test_wrong_feature_layout_is_a_clear_error(make, features, message):
    with pytest.raises(ValueError, match=message):
        make()(features, _batch(2))


def test_bad_arguments():
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        AttentiveProbeHead(in_dim=64, num_classes=5, num_heads=5)
    with pytest.raises(ValueError, match="label_smoothing"):
        LinearProbeHead(in_dim=64, num_classes=5, label_smoothing=1.0)


@pytest.mark.parametrize("name", HEADS)
def test_on_a_backbone_in_task_module(name):
    module = TaskModule(HEADS[name](), backbone=create_backbone("vit_test", depth=1))
    batch = {**_batch(2), "video": torch.randn(2, 3, 8, 32, 32)}
    module.head.loss(module(batch), batch)["loss"].backward()
    assert module.backbone.patch_embed.proj.weight.grad is not None
    state = module.head.state_dict()
    fresh = HEADS[name]()
    fresh.load_state_dict(state)
    module.eval()
    fresh.eval()
    features = module.backbone(batch["video"], output=fresh.feature_layout)
    torch.testing.assert_close(fresh(features, batch), module.head(features, batch))
