"""CLIP text tower: parity with open_clip's text tower on the same weights and tokens, tokenizer, freezing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vidlit.backbones.clip_text import (
    CLIP_CONTEXT_LENGTH,
    CLIP_VOCAB_SIZE,
    CLIPTextEncoder,
    clip_text_size_for_width,
    clip_tokenizer,
)
from vidlit.backbones.text import create_text_encoder

open_clip = pytest.importorskip("open_clip")

# fp32 on CPU; the two sides run the same operations, in another order only where slicing differs
MAX_ABS_DIFF = 1e-5
WIDTH, LAYERS, HEADS, PROJ = 32, 2, 2, 16  # "clip_test"
CAPTIONS = [
    "a red square moving left",
    "A Blue circle,   moving UP!",
    "x",
    "the man " * 40,  # 80+ tokens: truncated, the end token kept last
]


def official_text_state(
    context: int = CLIP_CONTEXT_LENGTH,
    width: int = WIDTH,
    layers: int = LAYERS,
    proj: int = PROJ,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random weights in the key layout of OpenAI CLIP / open_clip / ViCLIP's ``text_encoder.*``.

    Every tensor is random (LayerNorm weights around 1, biases around 0), so a weight that does not
    land, or lands in the wrong place, changes the output.
    """
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, std: float = 0.05, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std + mean

    state = {
        "token_embedding.weight": rand(CLIP_VOCAB_SIZE, width, std=0.02),
        "positional_embedding": rand(context, width, std=0.01),
        "ln_final.weight": rand(width, std=0.1, mean=1.0),
        "ln_final.bias": rand(width),
        "text_projection": rand(width, proj, std=width**-0.5),
    }
    for i in range(layers):
        block = f"transformer.resblocks.{i}."
        state |= {
            block + "ln_1.weight": rand(width, std=0.1, mean=1.0),
            block + "ln_1.bias": rand(width),
            block + "attn.in_proj_weight": rand(3 * width, width, std=width**-0.5),
            block + "attn.in_proj_bias": rand(3 * width),
            block + "attn.out_proj.weight": rand(width, width, std=width**-0.5),
            block + "attn.out_proj.bias": rand(width),
            block + "ln_2.weight": rand(width, std=0.1, mean=1.0),
            block + "ln_2.bias": rand(width),
            block + "mlp.c_fc.weight": rand(4 * width, width, std=width**-0.5),
            block + "mlp.c_fc.bias": rand(4 * width),
            block + "mlp.c_proj.weight": rand(width, 4 * width, std=(4 * width) ** -0.5),
            block + "mlp.c_proj.bias": rand(width),
        }
    return state


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> torch.nn.Module:
    """open_clip's CLIP built from a tiny config (QuickGELU, context 77), with the official text weights."""
    config = {
        "embed_dim": PROJ,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": CLIP_CONTEXT_LENGTH, "vocab_size": CLIP_VOCAB_SIZE, "width": WIDTH,
                     "heads": HEADS, "layers": LAYERS},
    }  # fmt: skip
    path = tmp_path_factory.mktemp("open_clip") / "vidlit-test-clip.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    model = open_clip.create_model("vidlit-test-clip", pretrained=None)
    missing, unexpected = model.load_state_dict(official_text_state(), strict=False)
    assert not unexpected and all(k.startswith("visual.") or k == "logit_scale" for k in missing)
    return model.eval()


def vidlit_text(max_length: int = CLIP_CONTEXT_LENGTH) -> tuple[CLIPTextEncoder, torch.Tensor]:
    encoder = CLIPTextEncoder("clip_test", max_length=max_length).eval()
    projection = encoder.load_clip_state_dict(official_text_state(), "official")
    return encoder, projection


def test_tokens_are_open_clips_padded_to_the_longest_caption():
    encoder = CLIPTextEncoder("clip_test")
    ours = encoder.tokenize(CAPTIONS)
    theirs = open_clip.tokenize(CAPTIONS)  # [4, 77], what open_clip's encode_text reads
    length = ours["input_ids"].shape[1]
    assert length == CLIP_CONTEXT_LENGTH  # the long caption fills the context
    torch.testing.assert_close(ours["input_ids"], theirs.long(), rtol=0, atol=0)
    short = encoder.tokenize(CAPTIONS[:3])
    assert short["input_ids"].shape[1] == int((theirs[:3] != 0).sum(1).max())  # cut to the longest
    assert torch.equal(short["input_ids"], theirs[:3, : short["input_ids"].shape[1]].long())
    assert short["attention_mask"].sum(1).tolist() == (theirs[:3] != 0).sum(1).tolist()
    assert ours["input_ids"][3, -1] == ours["input_ids"].max()  # truncated: <|endoftext|> kept last


@torch.no_grad()
def test_text_embeddings_equal_open_clips_text_tower(reference):
    encoder, projection = vidlit_text()
    ours = encoder.encode(CAPTIONS).pooled @ projection
    theirs = reference.encode_text(open_clip.tokenize(CAPTIONS))
    assert ours.shape == theirs.shape == (len(CAPTIONS), PROJ)
    diff = (ours - theirs).abs().max().item()
    assert diff <= MAX_ABS_DIFF, f"max abs diff {diff:.2e} > {MAX_ABS_DIFF:.0e}"
    assert theirs.abs().mean() > 0.1  # not a comparison of zeros


@torch.no_grad()
def test_viclip_context_32_equals_clip_on_the_same_truncated_tokens(reference):
    # ViCLIP keeps the first 32 positional rows and tokenizes to 32 tokens
    encoder, projection = vidlit_text(max_length=32)
    assert encoder.model.positional_embedding.shape == (32, WIDTH)
    ours = encoder.encode(CAPTIONS).pooled @ projection
    tokens = clip_tokenizer()(CAPTIONS, context_length=32)
    theirs = reference.encode_text(torch.nn.functional.pad(tokens, (0, CLIP_CONTEXT_LENGTH - 32)))
    assert (ours - theirs).abs().max().item() <= MAX_ABS_DIFF


@torch.no_grad()
def test_padding_to_the_longest_changes_nothing():
    encoder, _ = vidlit_text()
    batched = encoder.encode(CAPTIONS)
    for i, caption in enumerate(CAPTIONS):
        alone = encoder.encode([caption])
        torch.testing.assert_close(alone.pooled[0], batched.pooled[i], atol=1e-6, rtol=0)
        assert batched.mask[i].sum() == alone.mask.shape[1]  # True exactly up to the end token


def test_sizes_and_config_rebuild():
    assert clip_text_size_for_width(512) == "clip_b16" and clip_text_size_for_width(768) == "clip_l14"
    with pytest.raises(ValueError, match="no CLIP text size of width 100"):
        clip_text_size_for_width(100)
    with torch.device("meta"):
        b16, l14 = create_text_encoder("clip_b16"), create_text_encoder("clip_l14")
    assert (
        b16.embed_dim,
        len(b16.model.transformer.resblocks),
        b16.model.transformer.resblocks[0].attn.num_heads,
    ) == (512, 12, 8)
    assert (
        l14.embed_dim,
        len(l14.model.transformer.resblocks),
        l14.model.transformer.resblocks[0].attn.num_heads,
    ) == (768, 12, 12)
    encoder = create_text_encoder("clip_test", max_length=20, seed=3)
    rebuilt = create_text_encoder(**json.loads(json.dumps(encoder.pretrained_config())))
    assert isinstance(rebuilt, CLIPTextEncoder) and rebuilt.pretrained_config() == encoder.pretrained_config()
    for (k, a), b in zip(encoder.state_dict().items(), rebuilt.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_frozen_tower_has_no_gradient_and_stays_in_eval():
    encoder = create_text_encoder("clip_test", freeze=True).train()
    assert not encoder.model.training
    out = encoder.encode(CAPTIONS[:2])
    assert not out.pooled.requires_grad
    trained = create_text_encoder("clip_test").train()
    trained.encode(CAPTIONS[:2]).pooled.sum().backward()
    assert trained.model.token_embedding.weight.grad is not None


def test_bad_input_and_checkpoints_are_named(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown CLIP text size 'clip_h14'"):
        CLIPTextEncoder("clip_h14")
    encoder = CLIPTextEncoder("clip_test", max_length=8)
    with pytest.raises(TypeError, match="list of strings"):
        encoder.tokenize("one string")
    with pytest.raises(ValueError, match="9 tokens, but the context length"):
        encoder(torch.ones(1, 9, dtype=torch.long))
    state = official_text_state(context=4)
    with pytest.raises(ValueError, match=r"key 'text_encoder.positional_embedding': 4 positions, fewer than"):
        encoder.load_clip_state_dict(state, "f.pth", prefix="text_encoder.")
    state = official_text_state()
    state["transformer.resblocks.9.extra"] = state.pop("transformer.resblocks.1.ln_2.bias")
    with pytest.raises(ValueError) as err:
        encoder.load_clip_state_dict(state, "f.pth", prefix="text_encoder.")
    assert "\n" not in str(err.value)
    assert (
        "f.pth: missing keys ['text_encoder.transformer.resblocks.1.ln_2.bias'], "
        "unexpected keys ['text_encoder.transformer.resblocks.9.extra']" in str(err.value)
    )
    wide = official_text_state(width=64)
    with pytest.raises(
        ValueError, match=r"key 'text_encoder.text_projection': shape \(64, 16\), expected \[32"
    ):
        encoder.load_clip_state_dict(wide, "f.pth", prefix="text_encoder.")
    del wide["text_projection"]
    with pytest.raises(ValueError, match=r"text_encoder.ln_final.weight: file \(64,\) vs model \(32,\)"):
        encoder.load_clip_state_dict(wide, "f.pth", prefix="text_encoder.")


def test_missing_key_warning_points_at_the_callers_line():
    encoder = CLIPTextEncoder("clip_test", max_length=8)
    state = official_text_state()
    del state["ln_final.bias"]
    with pytest.warns(UserWarning, match=r"missing keys \['text_encoder\.ln_final\.bias'\]") as caught:
        encoder.load_clip_state_dict(state, "f.pth", prefix="text_encoder.", strict=False)
    assert [w.filename for w in caught] == [__file__]
