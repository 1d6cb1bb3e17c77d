"""VSLNetHead: shapes, loss, highlighting targets and top-k span decoding."""

import pytest
import torch

from vidlit.heads.ego4d_nlq import VSLNetHead

IN_DIM = 12


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    return VSLNetHead(
        IN_DIM, dim=16, num_heads=2, max_pos_len=32, conv_layers=1, text_encoder="text_test", dropout=0.0
    )


def _batch(lengths=(20, 13)):
    b, t = len(lengths), max(lengths)
    mask = torch.arange(t)[None] < torch.tensor(lengths)[:, None]
    return {
        "features": torch.randn(b, t, IN_DIM) * mask[..., None],
        "mask": mask,
        "queries": ["Where did I put the scissors?", "When did I last see the phone?"][:b],
        "video_ids": [f"q{i}" for i in range(b)],
        "duration": torch.tensor([10.0, 6.5])[:b],
        "start_index": torch.tensor([3, 0])[:b],
        "end_index": torch.tensor([7, 12])[:b],
    }


def test_forward_loss_backward(head):
    batch = _batch()
    out = head(batch["features"], batch)
    assert out["start_logits"].shape == out["end_logits"].shape == out["highlight_logits"].shape == (2, 20)
    # padded steps of the short clip can never be a boundary
    assert (out["start_logits"][1, 13:] < -1e30).all() and (out["end_logits"][1, 13:] < -1e30).all()
    losses = head.loss(out, batch)
    assert set(losses) == {"loss", "span_loss", "highlight_loss"}
    assert torch.allclose(losses["loss"], losses["span_loss"] + 5.0 * losses["highlight_loss"])
    losses["loss"].backward()
    assert head.video_proj[1].weight.grad is not None
    # the frozen text tower gets no gradient
    assert all(p.grad is None for p in head.text.parameters())


def test_highlight_targets_extend_ten_percent(head):
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 15:] = False
    # span 2..11 (10 steps): round(0.1 * 10) = 1 step each side -> 1..12
    # span 10..14 (5 steps): round(0.5) = 0 (half to even, as numpy's round) -> 10..14, clipped to the clip
    target = head.highlight_targets(torch.tensor([2, 10]), torch.tensor([11, 14]), mask)
    assert target[0].nonzero().flatten().tolist() == list(range(1, 13))
    assert target[1].nonzero().flatten().tolist() == list(range(10, 15))


def test_decode_top_spans_worked_example(head):
    # P(start) peaks at 2, P(end) at 4 (and 1, below the start, so (2, 1) is never chosen)
    start = torch.full((1, 6), -10.0)
    end = torch.full((1, 6), -10.0)
    start[0, 2], start[0, 3] = 5.0, 4.0
    end[0, 4], end[0, 1] = 5.0, 4.9
    outputs = {"start_logits": start, "end_logits": end, "mask": torch.ones(1, 6, dtype=torch.bool)}
    s, e, scores = head.decode(outputs)
    assert (s[0, 0].item(), e[0, 0].item()) == (2, 4)
    assert (s[0, 1].item(), e[0, 1].item()) == (3, 4)
    assert (s <= e).all() and (scores[0, :-1] >= scores[0, 1:]).all()
    preds = head.predict(outputs, {"video_ids": ["q"], "duration": torch.tensor([12.0])})
    # 6 units over 12 s: span (2, 4) is [4 s, 10 s]
    assert preds[0]["windows"][0].tolist() == [4.0, 10.0]
    assert preds[0]["windows"].shape == (5, 2)


def test_predict_on_short_clip_returns_only_valid_spans(head):
    batch = _batch(lengths=(2,))
    preds = head.predict(head(batch["features"], batch), batch)
    # 2 units: only 3 spans with start <= end exist
    assert preds[0]["windows"].shape == (3, 2)
    assert (preds[0]["windows"] >= 0).all() and (preds[0]["windows"] <= 10.0).all()


def test_bad_inputs(head):
    batch = _batch()
    with pytest.raises(ValueError, match=r"expects features \[b, t, d\] with d=12"):
        head(torch.randn(2, 20, 5), batch)
    long = {**batch, "features": torch.randn(2, 40, IN_DIM), "mask": torch.ones(2, 40, dtype=torch.bool)}
    with pytest.raises(ValueError, match="longer than max_pos_len=32"):
        head(long["features"], long)
    with pytest.raises(ValueError, match="queries"):
        head(batch["features"], {**batch, "queries": []})


def _tower_calls(head):
    calls = []
    head.text.model.register_forward_hook(
        lambda module, args, kwargs, output: calls.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    return calls


def test_frozen_text_tower_encodes_each_query_once():
    kwargs = dict(dim=16, num_heads=2, max_pos_len=32, conv_layers=1, text_encoder="text_test", dropout=0.0)
    torch.manual_seed(0)
    cached = VSLNetHead(IN_DIM, **kwargs).eval()
    uncached = VSLNetHead(IN_DIM, **kwargs, text_cache_size=0).eval()
    assert cached.state_dict().keys() == uncached.state_dict().keys()  # checkpoints are unchanged
    uncached.load_state_dict(cached.state_dict())
    cached_calls, uncached_calls = _tower_calls(cached), _tower_calls(uncached)
    batch = _batch()
    swapped = {**batch, "queries": batch["queries"][::-1]}  # other lengths per row: other padding
    other = {**batch, "queries": [batch["queries"][0], "Who did I talk to in the kitchen today?"]}
    for b in (batch, swapped, batch, other):
        out, ref = cached(b["features"], b), uncached(b["features"], b)
        for key in ("start_logits", "end_logits", "highlight_logits"):
            assert torch.allclose(out[key], ref[key], atol=1e-5), key
    assert len(uncached_calls) == 4
    # the first batch encodes both strings, the last only the new one
    assert cached_calls == [2, 1]
    cached.load_state_dict(uncached.state_dict())  # new weights: encoded afresh
    cached(batch["features"], batch)
    assert len(cached_calls) == 3


def test_text_cache_is_bounded_and_off_for_a_trainable_tower():
    kwargs = dict(dim=16, num_heads=2, max_pos_len=32, conv_layers=1, text_encoder="text_test")
    head = VSLNetHead(IN_DIM, **kwargs, text_cache_size=2).eval()
    batch = _batch()
    head(batch["features"], batch)
    head(batch["features"], {**batch, "queries": ["a new query", batch["queries"][1]]})
    assert list(head._text_cache) == ["a new query", batch["queries"][1]]
    assert batch["queries"][0] not in head._text_cache  # the least recently used went
    trainable = VSLNetHead(IN_DIM, **kwargs, freeze_text=False)
    calls = _tower_calls(trainable)
    for _ in range(2):
        trainable.loss(trainable(batch["features"], batch), batch)["loss"].backward()
    assert len(calls) == 2 and not trainable._text_cache
    assert any(p.grad is not None for p in trainable.text.parameters())


def test_unfreezing_the_tower_drops_the_cache():
    kwargs = dict(dim=16, num_heads=2, max_pos_len=32, conv_layers=1, text_encoder="text_test")
    head = VSLNetHead(IN_DIM, **kwargs).eval()
    calls = _tower_calls(head)
    batch = _batch()
    head(batch["features"], batch)
    assert head._text_cache and calls == [2]
    head.text.requires_grad_(True)  # fine-tune the tower for a while: its encodings change
    head(batch["features"], batch)
    assert not head._text_cache
    head.text.requires_grad_(False)  # frozen again: encoded afresh, not served from before
    head(batch["features"], batch)
    assert calls == [2, 2, 2]
