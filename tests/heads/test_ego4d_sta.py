"""ShortTermAnticipationHead: RoI pooling on the token grid, target assignment, loss, predictions."""

import pytest
import torch

from vidlit.backbones import create_backbone
from vidlit.heads.ego4d_sta import ShortTermAnticipationHead, token_grid
from vidlit.metrics.sta_map import STA_MAP_NAMES


def make_batch():
    """Two frames of 64 x 64 px: two boxes (one on the object, one elsewhere), then none."""
    target = {"video_id": "a", "boxes": torch.tensor([[8.0, 8.0, 24.0, 24.0]]), "nouns": torch.tensor([2]),
              "verbs": torch.tensor([1]), "ttcs": torch.tensor([0.5])}  # fmt: skip
    empty = {"video_id": "b", "boxes": torch.zeros(0, 4), "nouns": torch.zeros(0, dtype=torch.long),
             "verbs": torch.zeros(0, dtype=torch.long), "ttcs": torch.zeros(0)}  # fmt: skip
    orig = [torch.tensor([[8.0, 8.0, 24.0, 24.0], [40.0, 40.0, 60.0, 60.0]]), torch.zeros(0, 4)]
    return {
        "video": torch.randn(2, 3, 8, 32, 32),
        "boxes": [b / 64 for b in orig],
        "orig_boxes": orig,
        "box_scores": [torch.tensor([0.8, 0.5]), torch.zeros(0)],
        "video_ids": ["a", "b"],
        "targets": [target, empty],
    }


@pytest.fixture
def head():
    torch.manual_seed(0)
    return ShortTermAnticipationHead(in_dim=64, num_classes=3, num_verbs=4, hidden_dim=32, nouns_per_box=2)


def test_token_grid():
    assert token_grid(4 * 4 * 4, (2, 3, 8, 32, 32), 2) == (4, 4, 4)
    assert token_grid(8 * 3 * 6, (1, 3, 16, 48, 96), 2) == (8, 3, 6)
    assert token_grid(6 * 6 * 8, (1, 3, 12, 48, 64), 2, patch_size=8) == (6, 6, 8)
    assert token_grid(2 * 2 * 4, (1, 3, 8, 32, 64), 4, patch_size=(16, 16)) == (2, 2, 4)
    with pytest.raises(ValueError, match="tubelet_size"):
        token_grid(63, (1, 3, 8, 32, 32), 2)
    # 12 tokens per step fit a 3 x 4 grid, but no square patch cuts a 32 x 32 frame into it (the
    # former aspect-ratio guess returned (4, 3, 4) here)
    with pytest.raises(ValueError, match="no square patch"):
        token_grid(4 * 12, (1, 3, 8, 32, 32), 2)
    with pytest.raises(ValueError, match="not a multiple of the tubelet"):
        token_grid(64, (1, 3, 7, 32, 32), 2)
    with pytest.raises(ValueError, match=r"patch_size=8: the grid \(4, 4, 4\) holds 64 tokens"):
        token_grid(32, (1, 3, 8, 32, 32), 2, patch_size=8)


@pytest.mark.parametrize(("frames", "height", "width"), [(8, 32, 32), (12, 48, 64)])
def test_grid_follows_the_backbone_geometry_at_other_clip_sizes(head, frames, height, width):
    backbone = create_backbone("vit_test")  # 2 x 8 x 8 tubelets, configured for 8 x 32 x 32
    batch = make_batch()
    batch["video"] = torch.randn(2, 3, frames, height, width)
    tokens = backbone(batch["video"], output="tokens")
    grid = backbone.patch_embed.grid_size(frames, height, width)
    assert token_grid(tokens.shape[1], batch["video"].shape, head.tubelet_size) == grid
    out = head(tokens, batch)
    assert out["noun_logits"].shape == (2, 3)


def test_forward_loss_backward_on_backbone_tokens(head):
    batch = make_batch()
    backbone = create_backbone("vit_test")
    out = head(backbone(batch["video"], output="tokens"), batch)
    assert out["noun_logits"].shape == (2, 3) and out["verb_logits"].shape == (2, 4)
    assert out["ttc"].shape == (2,) and (out["ttc"] >= 0).all() and out["counts"] == [2, 0]
    losses = head.loss(out, batch)
    assert set(losses) == {"loss", "noun_loss", "verb_loss", "ttc_loss"}
    expected = losses["noun_loss"] + losses["verb_loss"] + 15.0 * losses["ttc_loss"]
    assert losses["loss"].item() == pytest.approx(expected.item())
    losses["loss"].backward()
    assert backbone.patch_embed.proj.weight.grad.abs().sum() > 0


def test_assignment_ignores_boxes_off_the_objects(head):
    nouns, verbs, ttcs = head.assign(make_batch(), torch.device("cpu"))
    assert nouns.tolist() == [2, -100] and verbs.tolist() == [1, -100]
    assert ttcs[0].item() == 0.5 and torch.isnan(ttcs[1])


def test_loss_trains_the_box_labels(head, one_thread):
    batch = make_batch()
    features = torch.randn(2, 64, 64)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(40):
        optimizer.zero_grad()
        head.loss(head(features, batch), batch)["loss"].backward()
        optimizer.step()
    out = head(features, batch)
    assert out["noun_logits"][0].argmax().item() == 2 and out["verb_logits"][0].argmax().item() == 1
    assert out["ttc"][0].item() == pytest.approx(0.5, abs=0.1)


def test_predict_scores_box_score_times_noun_probability(head):
    batch = make_batch()
    out = head(torch.randn(2, 64, 64), batch)
    preds = head.predict(out, batch)
    assert [p["video_id"] for p in preds] == ["a", "b"] and len(preds[1]["scores"]) == 0
    first = preds[0]
    assert first["boxes"].shape == (4, 4)  # 2 boxes x 2 nouns each, in pixels
    assert (first["scores"][:-1] >= first["scores"][1:]).all()
    probs = out["noun_logits"].softmax(-1)
    expected = sorted(
        (torch.tensor([[0.8], [0.5]]) * probs.topk(2, -1).values).flatten().tolist(), reverse=True
    )
    assert first["scores"].tolist() == pytest.approx(expected)
    metric = head.metrics()
    metric.update(preds, batch["targets"])
    assert set(metric.compute()) == set(STA_MAP_NAMES)


def test_bad_inputs(head):
    with pytest.raises(ValueError, match=r"features \[b, n, d\] with d=64"):
        head(torch.randn(2, 64, 32), make_batch())
    with pytest.raises(ValueError, match="temporal_pool"):
        ShortTermAnticipationHead(64, 3, 4, temporal_pool="max")
    batch = make_batch()
    batch["targets"][0]["verbs"] = torch.tensor([7])
    with pytest.raises(ValueError, match="exceeds the head's 3 nouns / 4 verbs"):
        head.loss(head(torch.randn(2, 64, 64), batch), batch)
