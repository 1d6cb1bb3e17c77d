"""VideoTextModel: token dropping, normalized embeddings, temperature, frozen text tower."""

from __future__ import annotations

import math

import pytest
import torch

from vidlit.backbones import create_backbone
from vidlit.backbones.video_text import VideoTextModel, random_keep_indices

CAPTIONS = ["a red square moving left", "a blue circle moving up"]


@pytest.fixture(scope="module")
def model() -> VideoTextModel:
    torch.manual_seed(0)
    return VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=16, drop_ratio=0.75)


def test_keep_indices_are_random_sorted_and_sized():
    g = torch.Generator().manual_seed(0)
    idx = random_keep_indices(3, 64, 0.9, generator=g)
    assert idx.shape == (3, 6) and idx.dtype == torch.long  # round(0.1 * 64) = 6 kept
    assert (idx.diff(dim=1) > 0).all() and idx.max() < 64
    assert not torch.equal(idx[0], idx[1])  # each clip keeps its own subset
    assert random_keep_indices(1, 4, 0.99).shape == (1, 1)  # at least one token
    with pytest.raises(ValueError, match="drop_ratio"):
        random_keep_indices(1, 4, 1.0)


def test_training_drops_tokens_and_eval_keeps_all(model):
    video = torch.randn(2, 3, 8, 32, 32)
    model.train()
    assert model.keep_indices(video).shape == (2, 16)  # 64 tokens, 75% dropped
    model.eval()
    assert model.keep_indices(video) is None
    with torch.no_grad():
        full = model.video(video, output="pooled")
        torch.testing.assert_close(model.video_features(video), full)
        # the dropped-token path encodes exactly the kept tokens
        idx = torch.arange(0, 64, 4).expand(2, -1)
        kept = model.video(video, output="pooled", visible_idx=idx)
    assert not torch.allclose(kept, full)


def test_embeddings_are_unit_norm_and_similarity_is_cosine(model):
    model.eval()
    with torch.no_grad():
        v = model.encode_video(torch.randn(2, 3, 8, 32, 32))
        t = model.encode_text(CAPTIONS)
    assert v.shape == t.shape == (2, 16) and v.dtype == t.dtype == torch.float32
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(model.similarity(v, t), v @ t.T)
    torch.testing.assert_close(model.similarity(3 * v, t), v @ t.T)  # scale-free
    with pytest.raises(TypeError, match="list of strings"):
        model.encode_text("one string")


def test_temperature_starts_at_clip_init_and_is_clamped(model):
    assert model.scale().item() == pytest.approx(1 / 0.07)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == pytest.approx(100.0)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1 / 0.07))


def test_forward_backward_reaches_both_towers(model):
    model.train()
    out = model(torch.randn(2, 3, 8, 32, 32), CAPTIONS)
    (out.video * out.text).sum().mul(out.logit_scale).backward()
    assert model.video.patch_embed.proj.weight.grad is not None
    assert model.text.model.embeddings.word_embeddings.weight.grad is not None
    assert model.logit_scale.grad is not None
    model.zero_grad()
    with pytest.raises(ValueError, match="2 clips but 1 captions"):
        model(torch.randn(2, 3, 8, 32, 32), CAPTIONS[:1])


def test_frozen_text_tower_gets_no_gradient_but_its_projection_does():
    torch.manual_seed(0)
    model = VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=8, freeze_text=True)
    model.train()
    assert not model.text.model.training  # dropout stays off in a frozen tower
    out = model(torch.randn(2, 3, 8, 32, 32), CAPTIONS)
    (out.video * out.text).sum().backward()
    assert all(p.grad is None for p in model.text.parameters())
    assert model.text_proj.weight.grad is not None


def test_bad_arguments_are_named():
    backbone = create_backbone("vit_test")
    with pytest.raises(ValueError, match="drop_ratio"):
        VideoTextModel(backbone, text="text_test", drop_ratio=1.0)
    with pytest.raises(ValueError, match="init_temperature"):
        VideoTextModel(backbone, text="text_test", init_temperature=0.001)
    with pytest.raises(ValueError, match="embed_dim"):
        VideoTextModel(torch.nn.Linear(2, 2), text="text_test")


def test_bf16_autocast_gives_fp32_unit_embeddings(model):
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        v = model.encode_video(torch.randn(2, 3, 8, 32, 32))
        t = model.encode_text(CAPTIONS)
    assert v.dtype == t.dtype == torch.float32
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(2))


@pytest.fixture(scope="module")
def clip_pair() -> VideoTextModel:
    """ViCLIP's towers: the CLIP-style video tower and CLIP's text transformer (tiny sizes)."""
    torch.manual_seed(0)
    return VideoTextModel(create_backbone("viclip_test"), text="clip_test", proj_dim=16, drop_ratio=0.75)


def test_clip_towers_train_drop_tokens_and_embed(clip_pair):
    clip_pair.train()
    video = torch.randn(2, 3, 8, 32, 32)
    assert clip_pair.keep_indices(video).shape == (2, 32)  # 8 x 4 x 4 patch tokens, 75% dropped
    out = clip_pair(video, CAPTIONS)
    (out.video * out.text).sum().mul(out.logit_scale).backward()
    assert clip_pair.video.patch_embed.proj.weight.grad is not None
    assert clip_pair.text.model.token_embedding.weight.grad is not None
    clip_pair.zero_grad()
    clip_pair.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        v, t = clip_pair.encode_video(video), clip_pair.encode_text(CAPTIONS)
    assert v.dtype == t.dtype == torch.float32 and v.shape == t.shape == (2, 16)
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(2))


def test_frozen_clip_text_tower_gets_no_gradient():
    model = VideoTextModel(create_backbone("viclip_test"), text="clip_test", proj_dim=8, freeze_text=True)
    model.train()
    assert not model.text.model.training and model.text.max_length == 32  # text_max_length: the context
    out = model(torch.randn(2, 3, 8, 32, 32), CAPTIONS)
    (out.video * out.text).sum().backward()
    assert all(p.grad is None for p in model.text.parameters())
    assert model.text_proj.weight.grad is not None
