"""What is particular to LorisHead: deterministic eval noise and sampling, guidance, shape errors."""

import pytest
import torch

from vidlit.heads.loris import LorisHead


def _head(**kwargs):
    torch.manual_seed(0)
    options = dict(patch=8, channels=(8, 16), factors=(4,), attn_levels=(1,), cond_dim=16, num_heads=2)
    return LorisHead(16, num_classes=3, progress=False, **{**options, **kwargs})


def _batch(b=2, n=512, rate=512):
    return {
        "audio": torch.randn(b, 1, n) * 0.2,
        "beats": (torch.rand(b, 16) > 0.7).float(),
        "visual": torch.randn(b, 2, 16),
        "genre": torch.tensor([0, -1]),
        "sample_rate": rate,
        "video_ids": ["a", "b"],
    }


def test_eval_loss_and_sampling_are_deterministic():
    head, batch = _head().eval(), _batch()
    with torch.no_grad():
        first = head.loss(head(batch["audio"], batch), batch)["loss"]
        again = head.loss(head(batch["audio"], batch), batch)["loss"]
    assert first == again
    a = head.sample(batch, steps=3, guidance_scale=2.0)
    b = head.sample(batch, steps=3, guidance_scale=2.0)
    assert a.shape == (2, 512) and torch.equal(a, b)
    assert not torch.equal(a, head.sample(batch, steps=3, guidance_scale=2.0, seed=1))


def test_guidance_one_is_the_conditional_model_and_other_scales_differ():
    head, batch = _head().eval(), _batch()
    plain = head.sample(batch, steps=2, guidance_scale=1.0)
    guided = head.sample(batch, steps=2, guidance_scale=3.0)
    assert torch.isfinite(plain).all() and not torch.allclose(plain, guided)


def test_training_drops_conditions_to_their_null_embeddings():
    head, batch = _head(cond_dropout=0.5), _batch(b=2)
    drop = {name: torch.tensor([True, False]) for name in head.condition_names}
    kept, dropped = head.encode_conditions(batch), head.encode_conditions(batch, drop)
    for (k, _), (d, _), name in zip(kept, dropped, head.condition_names):
        assert torch.equal(d[0], head.null[name].expand_as(d[0])) and torch.equal(d[1], k[1])


def test_bad_audio_shape_is_one_clear_error():
    head, batch = _head(), _batch(n=500)
    with pytest.raises(ValueError, match="multiple of 32"):
        head(batch["audio"], batch)
    with pytest.raises(ValueError, match="cond_dim must be even"):
        LorisHead(16, cond_dim=15)
