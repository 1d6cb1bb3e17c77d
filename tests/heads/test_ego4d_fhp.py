"""HandForecastHead: shapes, masked SmoothL1 and predictions in the metric's format."""

import pytest
import torch
import torch.nn.functional as F

from vidlit.heads.ego4d_fhp import HandForecastHead, token_centres

pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_token_centres_follow_the_token_grid():
    centres = token_centres((2, 2, 4))
    assert centres.shape == (16, 2)
    # (t h w) order: token n sits at column n % 4, row (n // 4) % 2, whatever its time step
    for n in range(16):
        x, y = (n % 4 + 0.5) / 4, ((n // 4) % 2 + 0.5) / 2
        assert centres[n].tolist() == pytest.approx([x, y])


def test_soft_argmax_reads_where_the_queries_attend(batch):
    torch.manual_seed(0)
    head = HandForecastHead(16, hidden=32, coord_scale=(64.0, 48.0), readout="soft_argmax", patch_size=8)
    batch = {**batch, "video": torch.zeros(2, 3, 4, 32, 32)}  # 2 x 4 x 4 tokens of 8 px
    # identical tokens get uniform attention: the mean token centre, the frame centre in pixels
    same = head(torch.randn(1, 1, 16).expand(2, 32, 16), batch)
    assert torch.allclose(same, torch.tensor([32.0, 24.0]).expand_as(same), atol=1e-4)
    # distinct tokens: the mix of the heads' attended positions (the output layer starts at zero)
    tokens = torch.randn(2, 32, 16)
    x = head.proj(head.norm(tokens))
    _, weights = head.attention(head.queries.expand(2, -1, -1), x, x, average_attn_weights=False)  # b a q n
    expected = torch.einsum("baqn,nc,qa->bqc", weights, token_centres((2, 4, 4)), head.mix) * head.scale
    assert torch.allclose(head(tokens, batch).reshape(2, 10, 2), expected, atol=1e-4)
    # one pooled token sits at the frame centre; stored tokens without a clip cannot be laid out
    assert torch.allclose(head(torch.randn(2, 16), {}), torch.tensor([32.0, 24.0]).expand(2, 5, 2, 2))
    with pytest.raises(ValueError, match=r"batch\['video'\].*readout='query'"):
        head(tokens, {})


def test_soft_argmax_learns_to_point_at_a_token():
    """100 steps take the readout from the frame centre (24 px off on average) to < 4 px off the hot token."""
    torch.manual_seed(0)
    head = HandForecastHead(16, hidden=32, coord_scale=64.0, readout="soft_argmax", patch_size=8)
    video = torch.zeros(32, 3, 2, 32, 32)  # 1 x 4 x 4 tokens
    hot = torch.randn(16) * 3
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)

    def draw() -> tuple[torch.Tensor, dict]:
        where = torch.randint(0, 16, (32,))
        tokens = torch.randn(32, 16, 16) * 0.1
        tokens[torch.arange(32), where] += hot
        target = token_centres((1, 4, 4))[where] * 64  # b xy
        hands = target[:, None, None].expand(-1, 5, 2, -1)
        return tokens, {"video": video, "hands": hands, "valid": torch.ones(32, 5, 2, dtype=torch.bool)}

    for _ in range(100):
        tokens, batch = draw()
        loss = head.loss(head(tokens, batch), batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tokens, batch = draw()
    with torch.no_grad():
        error = (head(tokens, batch) - batch["hands"]).norm(dim=-1).mean()
    assert error < 4.0


def test_init_checks_and_old_checkpoints():
    with pytest.raises(ValueError, match="readout must be one of"):
        HandForecastHead(16, readout="argmax")
    with pytest.raises(ValueError, match="coord_scale must be > 0"):
        HandForecastHead(16, coord_scale=(64.0, 0.0))
    # the default readout keeps the parameters (and checkpoints) of earlier versions
    old_keys = {"norm.weight", "norm.bias", "proj.weight", "proj.bias", "queries", "out.weight", "out.bias"}
    assert old_keys <= set(HandForecastHead(16, hidden=32).state_dict())
    assert "mix" not in HandForecastHead(16, hidden=32).state_dict()
    assert "mix" in HandForecastHead(16, hidden=32, readout="soft_argmax").state_dict()


def test_soft_argmax_bf16_autocast(batch):
    head = HandForecastHead(16, hidden=32, coord_scale=64.0, readout="soft_argmax")
    batch = {**batch, "video": torch.zeros(2, 3, 4, 16, 16)}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = head(torch.randn(2, 8, 16), batch)  # patch 8 derived from the token count
    assert outputs.dtype == torch.float32 and torch.isfinite(outputs).all()
