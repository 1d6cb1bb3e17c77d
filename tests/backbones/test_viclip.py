"""Official ViCLIP .pth -> VideoTextModel: every tensor lands; similarities equal a raw-tensor reference.

The reference below is written from the released code's description (ViCLIP's ``VisionTransformer``
and ``CLIP_TEXT`` forward passes) in plain tensor operations; the official code cannot be imported.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from vidlit.backbones import VideoTextModel, create_backbone
from vidlit.backbones.clip_text import CLIP_VOCAB_SIZE, CLIPTextEncoder
from vidlit.backbones.clip_video import CLIPVideoViT
from vidlit.backbones.viclip import VICLIP_RELEASES, load_clip_weights, load_viclip_checkpoint

pytest.importorskip("open_clip")

MAX_ABS_DIFF = 1e-5  # fp32
# viclip_test (width 64, 2 blocks, 4 heads, 8 px patches, 8 frames at 32 px) + clip_test (32, 2, 2)
V_WIDTH, V_LAYERS, V_HEADS, PATCH, FRAMES, SIZE = 64, 2, 4, 8, 8, 32
T_WIDTH, T_LAYERS, T_HEADS, CONTEXT = 32, 2, 2, 32
PROJ, TEMP = 16, 0.0125
CAPTIONS = ["a red square moving left", "a blue circle moving up", "x " * 50]


def _blocks(width: int, layers: int) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for i in range(layers):
        b = f"transformer.resblocks.{i}."
        shapes |= {
            b + "ln_1.weight": (width,), b + "ln_1.bias": (width,),
            b + "attn.in_proj_weight": (3 * width, width), b + "attn.in_proj_bias": (3 * width,),
            b + "attn.out_proj.weight": (width, width), b + "attn.out_proj.bias": (width,),
            b + "ln_2.weight": (width,), b + "ln_2.bias": (width,),
            b + "mlp.c_fc.weight": (4 * width, width), b + "mlp.c_fc.bias": (4 * width,),
            b + "mlp.c_proj.weight": (width, 4 * width), b + "mlp.c_proj.bias": (width,),
        }  # fmt: skip
    return shapes


def official_viclip_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the layout of a released ViCLIP checkpoint (``ViCLIP.state_dict()``).

    Every tensor random, none zero (the temporal table included), so a tensor that does not land
    changes the similarities.
    """
    grid = (SIZE // PATCH) ** 2
    vision = {
        "conv1.weight": (V_WIDTH, 3, 1, PATCH, PATCH),
        "class_embedding": (V_WIDTH,),
        "positional_embedding": (1 + grid, V_WIDTH),
        "temporal_positional_embedding": (1, FRAMES, V_WIDTH),
        "ln_pre.weight": (V_WIDTH,), "ln_pre.bias": (V_WIDTH,),
        **_blocks(V_WIDTH, V_LAYERS),
        "ln_post.weight": (V_WIDTH,), "ln_post.bias": (V_WIDTH,),
        "proj": (V_WIDTH, PROJ),
    }  # fmt: skip
    text = {
        "token_embedding.weight": (CLIP_VOCAB_SIZE, T_WIDTH),
        "positional_embedding": (CONTEXT, T_WIDTH),
        **_blocks(T_WIDTH, T_LAYERS),
        "ln_final.weight": (T_WIDTH,), "ln_final.bias": (T_WIDTH,),
        "text_projection": (T_WIDTH, PROJ),
    }  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    state = {}
    for prefix, shapes in (("vision_encoder.", vision), ("text_encoder.", text)):
        for key, shape in shapes.items():
            fan_in = shape[-1] if len(shape) == 2 and "embedding" not in key else 0
            if key.endswith(
                ("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight", "ln_final.weight")
            ):
                value = 1 + 0.1 * torch.randn(shape, generator=g)
            elif key == "conv1.weight":
                value = torch.randn(shape, generator=g) * (3 * PATCH * PATCH) ** -0.5
            elif fan_in:
                value = torch.randn(shape, generator=g) * fan_in**-0.5
            else:
                value = torch.randn(shape, generator=g) * 0.05
            state[prefix + key] = value
    state["temp"] = torch.tensor(TEMP)
    return state


# -- the reference: ViCLIP's forward passes on the raw tensors -----------------------------------


def _layer_norm(x: torch.Tensor, p: dict, name: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], p[name + ".weight"], p[name + ".bias"], eps=1e-5)


def _resblock(x: torch.Tensor, p: dict, i: int, heads: int, mask: torch.Tensor | None) -> torch.Tensor:
    """CLIP's residual block on [b, n, d]: MultiheadAttention (joint q/k/v projection), QuickGELU MLP."""
    b_ = f"transformer.resblocks.{i}."
    h = _layer_norm(x, p, b_ + "ln_1")
    q, k, v = (h @ p[b_ + "attn.in_proj_weight"].T + p[b_ + "attn.in_proj_bias"]).chunk(3, dim=-1)
    q, k, v = (rearrange(t, "b n (h e) -> b h n e", h=heads) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask
    attn = rearrange(scores.softmax(-1) @ v, "b h n e -> b n (h e)")
    x = x + attn @ p[b_ + "attn.out_proj.weight"].T + p[b_ + "attn.out_proj.bias"]
    h = _layer_norm(x, p, b_ + "ln_2") @ p[b_ + "mlp.c_fc.weight"].T + p[b_ + "mlp.c_fc.bias"]
    h = h * torch.sigmoid(1.702 * h)  # QuickGELU
    return x + h @ p[b_ + "mlp.c_proj.weight"].T + p[b_ + "mlp.c_proj.bias"]


def reference_video(state: dict, video: torch.Tensor) -> torch.Tensor:
    """ViCLIP's vision forward: [b, c, t, h, w] -> class token after ln_post @ proj, [b, proj]."""
    p = {k.removeprefix("vision_encoder."): v for k, v in state.items() if k.startswith("vision_encoder.")}
    b, t = video.shape[0], video.shape[2]
    x = F.conv3d(video, p["conv1.weight"], stride=(1, PATCH, PATCH))  # [b, d, t, h, w]
    x = rearrange(x, "b d t h w -> (b t) (h w) d")
    cls = p["class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat((cls, x), dim=1) + p["positional_embedding"]  # spatial table on every frame
    cls_tokens = x[:b, :1]  # every frame's class token is the same vector
    x = rearrange(x[:, 1:], "(b t) n d -> (b n) t d", b=b, t=t)
    temporal = p["temporal_positional_embedding"]
    x = x + (temporal.mean(1) if t == 1 else temporal)
    x = rearrange(x, "(b n) t d -> b (n t) d", b=b)
    x = _layer_norm(torch.cat((cls_tokens, x), dim=1), p, "ln_pre")
    for i in range(V_LAYERS):
        x = _resblock(x, p, i, V_HEADS, None)
    return _layer_norm(x, p, "ln_post")[:, 0] @ p["proj"]


def reference_text(state: dict, tokens: torch.Tensor) -> torch.Tensor:
    """CLIP_TEXT's forward: [b, 32] ids -> ln_final at the end token @ text_projection, [b, proj]."""
    p = {k.removeprefix("text_encoder."): v for k, v in state.items() if k.startswith("text_encoder.")}
    x = p["token_embedding.weight"][tokens] + p["positional_embedding"]
    mask = torch.full((CONTEXT, CONTEXT), float("-inf")).triu(1)
    for i in range(T_LAYERS):
        x = _resblock(x, p, i, T_HEADS, mask)
    x = _layer_norm(x, p, "ln_final")
    return x[torch.arange(len(x)), tokens.argmax(-1)] @ p["text_projection"]


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A file in the released layout: ``torch.save({"model": state_dict})``."""
    state = official_viclip_state()
    path = tmp_path_factory.mktemp("viclip") / "ViClip-tiny.pth"
    torch.save({"model": state}, path)
    return path, state


def load_tiny(path: Path, **kwargs) -> VideoTextModel:
    return load_viclip_checkpoint(
        path, video="viclip_test", text="clip_test", num_frames=FRAMES, img_size=SIZE, **kwargs
    )


def test_every_tensor_lands(released):
    path, state = released
    model = load_tiny(path)
    assert isinstance(model.video, CLIPVideoViT) and isinstance(model.text, CLIPTextEncoder)
    assert model.proj_dim == PROJ and model.text.max_length == CONTEXT and not model.training
    # vision: clip_video's exporter writes the tower back in the official layout
    exported = model.video.clip_state_dict(proj=model.video_proj.weight.T)
    vision = {k: v for k, v in state.items() if k.startswith("vision_encoder.")}
    assert set(exported) == set(vision)
    for key, value in vision.items():
        if key.endswith("in_proj_bias"):  # the key bias is dropped (softmax is invariant to it)
            q, _, v = value.chunk(3)
            eq, _, ev = exported[key].chunk(3)
            assert torch.equal(q, eq) and torch.equal(v, ev), key
        else:
            assert torch.equal(exported[key], value), key
    # text: the tower's own state dict (no prefix) and the projection, transposed
    text = {k.removeprefix("text_encoder."): v for k, v in state.items() if k.startswith("text_encoder.")}
    own = model.text.model.state_dict()
    assert set(own) | {"text_projection"} == set(text)
    for key in set(text) - {"text_projection"}:
        assert torch.equal(own[key], text[key]), key
    assert torch.equal(model.text_proj.weight.T, text["text_projection"])
    assert model.scale().item() == pytest.approx(1 / TEMP)


@torch.no_grad()
def test_similarities_equal_the_reference_on_raw_tensors(released):
    path, state = released
    model = load_tiny(path)
    video = torch.randn(2, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    ours = model.similarity(model.encode_video(video), model.encode_text(CAPTIONS))
    tokens = model.text.tokenize(CAPTIONS)["input_ids"]
    tokens = F.pad(tokens, (0, CONTEXT - tokens.shape[1]))  # the official tokenizer pads to 32
    expected = (
        F.normalize(reference_video(state, video), dim=-1)
        @ F.normalize(reference_text(state, tokens), dim=-1).T
    )
    diff = (ours - expected).abs().max().item()
    assert diff <= MAX_ABS_DIFF, f"max abs diff {diff:.2e} > {MAX_ABS_DIFF:.0e}"
    assert expected.std() > 0.05  # the similarities differ: not a comparison of constants


def test_sizes_inferred_and_frames_resolution_adapted(tmp_path, released):
    path, state = released
    # video sized from the weights (the head count is not in them: given for this non-standard width)
    model = load_viclip_checkpoint(
        path,
        text="clip_test",
        num_frames=4,
        img_size=48,
        video_overrides={"num_heads": V_HEADS},
        drop_ratio=0.5,
    )
    assert len(model.video.blocks) == V_LAYERS and model.video.embed_dim == V_WIDTH
    assert model.video.num_frames == 4 and model.video.temporal_embed.shape == (1, 4, V_WIDTH)
    assert model.video.pos_embed.shape == (1, 1 + 6 * 6, V_WIDTH)  # 48 px / 8 px patches
    assert model.drop_ratio == 0.5
    padded = load_viclip_checkpoint(path, video="viclip_test", text="clip_test", num_frames=12, img_size=SIZE,
                                    temporal_adapt="zero_pad")  # fmt: skip
    temporal = state["vision_encoder.temporal_positional_embedding"]
    assert torch.equal(padded.video.temporal_embed[:, :FRAMES], temporal)
    assert not padded.video.temporal_embed[:, FRAMES:].any()
    # a bare state dict (no {"model": ...}) loads the same
    torch.save(state, tmp_path / "bare.pth")
    bare = load_tiny(tmp_path / "bare.pth")
    assert torch.equal(bare.text_proj.weight, load_tiny(path).text_proj.weight)


def test_bad_checkpoints_are_named_in_one_line(tmp_path, released):
    _, state = released

    def save(edit) -> Path:
        edited = dict(state)
        edit(edited)
        torch.save({"model": edited}, tmp_path / "edited.pth")
        return tmp_path / "edited.pth"

    cases = {
        "missing keys ['temp'], unexpected keys ['vision_proj.weight']": lambda s: (
            s.pop("temp"),
            s.update({"vision_proj.weight": torch.zeros(1)}),
        ),
        "missing keys ['text_encoder.transformer.resblocks.1.mlp.c_fc.bias']": lambda s: s.pop(
            "text_encoder.transformer.resblocks.1.mlp.c_fc.bias"
        ),
        "vision_encoder.transformer.resblocks.1.ln_2.bias": lambda s: s.pop(
            "vision_encoder.transformer.resblocks.1.ln_2.bias"
        ),
        "key 'temp': the temperature must be positive": lambda s: s.update(temp=torch.tensor(0.0)),
    }
    for expected, edit in cases.items():
        with pytest.raises(ValueError) as err:
            load_tiny(save(edit))
        assert expected in str(err.value) and "\n" not in str(err.value)
        assert str(tmp_path / "edited.pth") in str(err.value)
    with pytest.raises(ValueError, match="not a ViCLIP checkpoint"):
        load_tiny(save(lambda s: [s.pop(k) for k in list(s) if k.startswith("text_encoder.")]))
    with pytest.warns(UserWarning, match="unexpected keys \\['extra'\\]"):
        load_tiny(save(lambda s: s.update(extra=torch.zeros(1))), strict=False)
    # a vision key is reported once, in the file's names (not again by the tower, unprefixed)
    gone = "vision_encoder.transformer.resblocks.1.ln_2.bias"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_tiny(save(lambda s: s.pop(gone)), strict=False)
    reports = [str(w.message) for w in caught if "missing keys" in str(w.message)]
    assert len(reports) == 1 and f"'{gone}'" in reports[0], reports
    # a missing proj is not the tower's: one line for the shared space, not lenient (nothing to load)
    projections = f"{tmp_path / 'edited.pth'}: missing keys ['vision_encoder.proj']: the projections into"
    for strict in (True, False):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ValueError) as err:
                load_tiny(save(lambda s: s.pop("vision_encoder.proj")), strict=strict)
        assert str(err.value).startswith(projections) and "\n" not in str(err.value)
        assert not [w for w in caught if "missing keys" in str(w.message)], strict
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_tiny(tmp_path / "none.pth")


def open_clip_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The release as an image CLIP (open_clip layout: visual.*, top-level text keys, logit_scale)."""
    clip = {}
    for key, value in state.items():
        if key.startswith("vision_encoder."):
            key = "visual." + key.removeprefix("vision_encoder.")
            if key == "visual.conv1.weight":
                value = value[:, :, 0]  # Conv2d
            if key == "visual.temporal_positional_embedding":
                continue
        elif key.startswith("text_encoder."):
            key = key.removeprefix("text_encoder.")
            if key == "positional_embedding":
                value = torch.cat((value, torch.randn(77 - CONTEXT, T_WIDTH)))  # CLIP's 77 positions
        else:
            continue
        clip[key] = value
    clip["logit_scale"] = torch.tensor(math.log(50.0))
    return clip


def test_open_clip_checkpoint_initializes_both_towers(tmp_path, released):
    """An image CLIP as ViCLIP's start."""
    clip = open_clip_state(released[1])
    torch.save(clip, tmp_path / "open_clip_pytorch_model.bin")
    model = VideoTextModel(
        create_backbone("viclip_test"), text="clip_test", proj_dim=PROJ, text_max_length=CONTEXT
    )
    load_clip_weights(model, tmp_path / "open_clip_pytorch_model.bin")
    assert torch.equal(model.video.patch_embed.proj.weight[:, :, 0], clip["visual.conv1.weight"])  # inflated
    assert not model.video.temporal_embed.any()  # an image model starts frame-wise
    assert torch.equal(model.text.model.positional_embedding, clip["positional_embedding"][:CONTEXT])
    assert torch.equal(model.text_proj.weight.T, clip["text_projection"])
    assert torch.equal(model.video_proj.weight.T, clip["visual.proj"])
    assert model.scale().item() == pytest.approx(50.0)
    # a VideoViT video tower: the text side only
    other = VideoTextModel(
        create_backbone("vit_test"), text="clip_test", proj_dim=PROJ, text_max_length=CONTEXT
    )
    with pytest.raises(ValueError, match="not a CLIPVideoViT; pass video=False"):
        load_clip_weights(other, tmp_path / "open_clip_pytorch_model.bin")
    load_clip_weights(other, tmp_path / "open_clip_pytorch_model.bin", video=False)
    assert torch.equal(other.text_proj.weight.T, clip["text_projection"])


def test_a_text_side_error_loads_neither_tower(tmp_path, released):
    """Both sides are checked before either loads: a strict text error leaves the video tower as it was."""
    clip = open_clip_state(released[1])
    clip["ln_final.extra"] = torch.zeros(1)  # an unexpected text key
    torch.save(clip, tmp_path / "open_clip_pytorch_model.bin")
    model = VideoTextModel(
        create_backbone("viclip_test"), text="clip_test", proj_dim=PROJ, text_max_length=CONTEXT
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="unexpected keys \\['ln_final.extra'\\]"):
        load_clip_weights(model, tmp_path / "open_clip_pytorch_model.bin")
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_a_video_side_error_names_the_visual_key_and_loads_neither_tower(tmp_path, released):
    """The video tower reports an open_clip file's keys as the file names them (``visual.*``), once."""
    clip = open_clip_state(released[1])
    del clip["visual.ln_post.bias"]
    torch.save(clip, tmp_path / "open_clip_pytorch_model.bin")
    model = VideoTextModel(
        create_backbone("viclip_test"), text="clip_test", proj_dim=PROJ, text_max_length=CONTEXT
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"missing keys \['visual\.ln_post\.bias'\], unexpected keys \[\]$"):
        load_clip_weights(model, tmp_path / "open_clip_pytorch_model.bin")
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    with pytest.warns(UserWarning, match="missing keys") as caught:
        load_clip_weights(model, tmp_path / "open_clip_pytorch_model.bin", strict=False)
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 'open_clip_pytorch_model.bin'}: openclip vision tower: missing keys "
        "['visual.ln_post.bias'], unexpected keys []"
    ]
    assert torch.equal(model.text_proj.weight.T, clip["text_projection"])  # the rest loaded


def test_layout_errors_name_keys_as_the_file_does(tmp_path, released):
    """Shape errors of the video side name ``vision_encoder.*`` / ``visual.*`` keys, as the file does."""
    _, state = released
    grid = dict(state)
    grid["vision_encoder.positional_embedding"] = grid["vision_encoder.positional_embedding"][:16]
    torch.save({"model": grid}, tmp_path / "grid.pth")
    not_square = "key 'vision_encoder.positional_embedding': 15 patch positions are not a square grid"
    for video in (None, "viclip_test"):  # sized from the weights, or a named tower
        with pytest.raises(ValueError) as err:
            load_viclip_checkpoint(tmp_path / "grid.pth", video=video, text="clip_test",
                                   video_overrides={"num_heads": V_HEADS})  # fmt: skip
        assert str(err.value) == f"{tmp_path / 'grid.pth'}: {not_square}", video
    kernel = dict(state)
    kernel["vision_encoder.conv1.weight"] = torch.zeros(V_WIDTH, 3, 2, PATCH, PATCH)
    torch.save({"model": kernel}, tmp_path / "kernel.pth")
    with pytest.raises(ValueError, match=r": key 'vision_encoder\.conv1\.weight': shape \(64, 3, 2, 8, 8\);"):
        load_tiny(tmp_path / "kernel.pth")
    # open_clip: visual.proj of another width than the model's projection
    clip = open_clip_state(state)
    clip["visual.proj"] = torch.zeros(V_WIDTH, PROJ + 1)
    torch.save(clip, tmp_path / "open_clip_pytorch_model.bin")
    model = VideoTextModel(
        create_backbone("viclip_test"), text="clip_test", proj_dim=PROJ, text_max_length=CONTEXT
    )
    with pytest.raises(ValueError) as err:
        load_clip_weights(model, tmp_path / "open_clip_pytorch_model.bin")
    assert str(err.value) == (
        f"{tmp_path / 'open_clip_pytorch_model.bin'}: key 'visual.proj': shape (64, 17), expected (64, 16)"
    )


def test_missing_key_warnings_point_at_the_callers_line(tmp_path, released):
    """Every ``strict=False`` warning, from whichever tower or depth, names this file."""
    _, state = released
    edits = {
        "extra": lambda s: s.update(extra=torch.zeros(1)),  # load_viclip_checkpoint's own check
        "vision_encoder.ln_post.bias": lambda s: s.pop("vision_encoder.ln_post.bias"),  # the video tower's
        "text_encoder.ln_final.bias": lambda s: s.pop("text_encoder.ln_final.bias"),  # the text tower's
    }
    for key, edit in edits.items():
        edited = dict(state)
        edit(edited)
        torch.save({"model": edited}, tmp_path / "edited.pth")
        with pytest.warns(UserWarning, match=rf"'{key}'") as caught:
            load_tiny(tmp_path / "edited.pth", strict=False)
        assert [w.filename for w in caught] == [__file__], key
    for key in ("visual.ln_post.bias", "ln_final.bias"):
        clip = open_clip_state(state)
        del clip[key]
        torch.save(clip, tmp_path / "open_clip_pytorch_model.bin")
        model = VideoTextModel(
            create_backbone("viclip_test"), text="clip_test", proj_dim=PROJ, text_max_length=CONTEXT
        )
        with pytest.warns(UserWarning, match=rf"'{key}'") as caught:
            load_clip_weights(model, tmp_path / "open_clip_pytorch_model.bin", strict=False)
        assert [w.filename for w in caught] == [__file__], key


@torch.no_grad()
def test_loaded_release_saves_and_reloads_with_identical_outputs(tmp_path, released):
    path, _ = released
    model = load_tiny(path)
    folder = model.save_pretrained(tmp_path / "viclip")
    reloaded = VideoTextModel.from_pretrained(folder).eval()
    video = torch.randn(2, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    assert torch.equal(reloaded.encode_video(video), model.encode_video(video))
    assert torch.equal(reloaded.encode_text(CAPTIONS), model.encode_text(CAPTIONS))
    assert torch.equal(reloaded.scale(), model.scale())


@pytest.mark.parametrize("release", ["ViClip-InternVid-10M-FLT.pth", "ViCLIP-B_InternVid-FLT-10M.pth"])
def test_named_sizes_have_the_released_shapes(release):
    """The real sizes, on the meta device, against the shapes ViCLIP's code gives its modules."""
    sizes = VICLIP_RELEASES[release]
    large = sizes["video"] == "viclip_large_patch14"
    v_width, v_layers, patch, t_width = (1024, 24, 14, 768) if large else (768, 12, 16, 512)
    proj_dim = 768 if large else 512  # ViCLIP's embed_dim
    with torch.device("meta"):
        model = VideoTextModel(create_backbone(sizes["video"]), text=sizes["text"], proj_dim=proj_dim)
        vision = model.video.clip_state_dict(proj=model.video_proj.weight.T)
    assert vision["vision_encoder.conv1.weight"].shape == (v_width, 3, 1, patch, patch)
    assert vision["vision_encoder.positional_embedding"].shape == ((224 // patch) ** 2 + 1, v_width)
    assert vision["vision_encoder.temporal_positional_embedding"].shape == (1, 8, v_width)
    assert vision["vision_encoder.proj"].shape == (v_width, proj_dim)
    assert sum(k.endswith("attn.in_proj_weight") for k in vision) == v_layers
    assert model.video.blocks[0].attn.num_heads == v_width // 64
    text = model.text.model
    assert text.positional_embedding.shape == (32, t_width)  # ViCLIP's max_txt_l
    assert text.token_embedding.weight.shape == (CLIP_VOCAB_SIZE, t_width)
    assert len(text.transformer.resblocks) == 12 and model.text_proj.weight.shape == (
        proj_dim,
        t_width,
    )
