"""Checkpoint interop: transformers VideoMAE folders and original VideoMAE / InternVideo ``.pth`` files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vidlit.backbones import VideoViT, checkpoint_filter_fn, create_backbone
from vidlit.layers.pos_embed import interpolate_pos_embed, sincos_table

transformers = pytest.importorskip("transformers")

TINY = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    image_size=32,
    patch_size=8,
    num_frames=8,
    tubelet_size=2,
    qkv_bias=True,
)


def perturb_(module: torch.nn.Module) -> None:
    """Move every parameter off its initialization, so zero biases and unit norms cannot hide a bug."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)


def clip(frames: int = 8, size: int = 32) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, frames, size, size)


def hf_tokens(model, video: torch.Tensor) -> torch.Tensor:
    # transformers takes [b, t, c, h, w]; VideoViT takes [b, c, t, h, w].
    with torch.no_grad():
        return model(pixel_values=video.transpose(1, 2)).last_hidden_state


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    """A random transformers VideoMAEModel (final layernorm on) saved with save_pretrained."""
    config = transformers.VideoMAEConfig(**TINY, use_mean_pooling=False)
    model = transformers.VideoMAEModel(config).eval()
    perturb_(model)
    folder = tmp_path_factory.mktemp("hf_videomae")
    model.save_pretrained(folder)
    return model, folder


def test_transformers_parity(hf_model):
    hf, folder = hf_model
    model = VideoViT.from_pretrained(folder).eval()
    assert model.embed_dim == 64 and len(model.blocks) == 2 and model.grid_size == (4, 4, 4)
    assert not model.use_mean_pooling and model.norm.eps == pytest.approx(1e-12)
    video = clip()
    with torch.no_grad():
        ours = model(video)
    assert (ours - hf_tokens(hf, video)).abs().max() < 1e-4
    # The fixed table is transformers' table, not a parameter: nothing extra in the state dict.
    assert torch.equal(model.pos_embed, hf.embeddings.position_embeddings)


def test_transformers_classification_parity_with_mean_pooling(tmp_path):
    config = transformers.VideoMAEConfig(**TINY, use_mean_pooling=True, num_labels=5)
    hf = transformers.VideoMAEForVideoClassification(config).eval()
    perturb_(hf)
    hf.save_pretrained(tmp_path)
    model = VideoViT.from_pretrained(tmp_path).eval()
    assert model.use_mean_pooling and isinstance(model.norm, torch.nn.Identity)
    video = clip()
    with torch.no_grad():
        tokens = hf_tokens(hf.videomae, video)
        pooled = hf.fc_norm(tokens.mean(1))
        assert (model(video) - tokens).abs().max() < 1e-4
        assert (model(video, output="pooled") - pooled).abs().max() < 1e-4


def test_transformers_bool_masked_pos_equals_visible_idx(hf_model):
    hf, folder = hf_model
    model = VideoViT.from_pretrained(folder).eval()
    video = clip()
    torch.manual_seed(2)
    visible_idx = torch.stack([torch.randperm(64)[:16].sort().values for _ in range(2)])
    masked = torch.ones(2, 64, dtype=torch.bool).scatter_(1, visible_idx, False)
    with torch.no_grad():
        ref = hf(pixel_values=video.transpose(1, 2), bool_masked_pos=masked).last_hidden_state
        ours = model.forward_features(video, visible_idx=visible_idx)
    assert (ours - ref).abs().max() < 1e-4


def test_transformers_4x_layout_and_sharded_bin(hf_model, tmp_path):
    """Older transformers wrote ``qkv_bias`` in config.json; other tools write ``query.bias``."""
    hf, folder = hf_model
    state = {
        k.replace("q_bias", "query.bias").replace("v_bias", "value.bias"): v
        for k, v in load_file(folder / "model.safetensors").items()
    }
    keys = sorted(state)
    shards = {
        "pytorch_model-00001.bin": keys[: len(keys) // 2],
        "pytorch_model-00002.bin": keys[len(keys) // 2 :],
    }
    for name, shard_keys in shards.items():
        torch.save({k: state[k] for k in shard_keys}, tmp_path / name)
    weight_map = {k: name for name, shard_keys in shards.items() for k in shard_keys}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    config = json.loads((folder / "config.json").read_text())
    config["qkv_bias"] = config.pop("qv_bias")
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = VideoViT.from_pretrained(tmp_path).eval()
    video = clip()
    with torch.no_grad():
        assert (model(video) - hf_tokens(hf, video)).abs().max() < 1e-4


def to_original_layout(hf_state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """VideoMAE's own key layout, written out by hand from transformers' (independent of vidlit's remap)."""
    out = {
        "patch_embed.proj.weight": hf_state["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": hf_state["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": hf_state["layernorm.weight"],
        "norm.bias": hf_state["layernorm.bias"],
    }
    for i in range(depth):
        hf = f"encoder.layer.{i}."
        att = hf + "attention.attention."
        out[f"blocks.{i}.attn.qkv.weight"] = torch.cat(
            [hf_state[att + "query.weight"], hf_state[att + "key.weight"], hf_state[att + "value.weight"]]
        )
        out[f"blocks.{i}.attn.q_bias"] = hf_state[att + "q_bias"]
        out[f"blocks.{i}.attn.v_bias"] = hf_state[att + "v_bias"]
        for ours, theirs in [
            ("attn.proj", "attention.output.dense"),
            ("mlp.fc1", "intermediate.dense"),
            ("mlp.fc2", "output.dense"),
            ("norm1", "layernorm_before"),
            ("norm2", "layernorm_after"),
        ]:
            out[f"blocks.{i}.{ours}.weight"] = hf_state[f"{hf}{theirs}.weight"]
            out[f"blocks.{i}.{ours}.bias"] = hf_state[f"{hf}{theirs}.bias"]
    return out


def test_original_videomae_pretraining_pth(hf_model, tmp_path):
    """A VideoMAE pretraining checkpoint: {"model": {"encoder.…", "decoder.…", …}, "args": Namespace}."""
    hf, folder = hf_model
    encoder = to_original_layout(load_file(folder / "model.safetensors"), depth=2)
    model_state = {f"encoder.{k}": v for k, v in encoder.items()}
    model_state.update(
        {
            "decoder.blocks.0.attn.qkv.weight": torch.randn(96, 32),
            "decoder.norm.weight": torch.ones(32),
            "encoder_to_decoder.weight": torch.randn(32, 64),
            "mask_token": torch.zeros(1, 1, 32),
        }
    )
    path = tmp_path / "checkpoint-799.pth"
    torch.save(
        {"model": model_state, "epoch": 799, "args": argparse.Namespace(model="pretrain_videomae")}, path
    )
    # Frame count, image size and head count are not in the weights; eps is transformers' here.
    model = VideoViT.from_pretrained(path, num_frames=8, img_size=32, num_heads=4, norm_eps=1e-12).eval()
    video = clip()
    with torch.no_grad():
        assert (model(video) - hf_tokens(hf, video)).abs().max() < 1e-4


def test_original_finetuned_pth_with_fc_norm_layerscale_and_module_prefix(tmp_path):
    torch.manual_seed(0)
    source = create_backbone("vit_test", use_mean_pooling=True, init_values=0.1)
    perturb_(source)
    state = {}
    for k, v in source.state_dict().items():  # back to VideoMAE's names
        state["module." + k.replace("ls1.gamma", "gamma_1").replace("ls2.gamma", "gamma_2")] = v
    state["module.head.weight"], state["module.head.bias"] = torch.randn(400, 64), torch.zeros(400)
    torch.save({"module": state}, tmp_path / "finetuned.pth")
    model = VideoViT.from_pretrained(tmp_path / "finetuned.pth", num_frames=8, img_size=32, num_heads=4)
    assert model.use_mean_pooling and model.blocks[0].ls1.gamma.shape == (64,)
    video = clip()
    with torch.no_grad():
        assert torch.equal(model.eval()(video, output="pooled"), source.eval()(video, output="pooled"))


def test_timm_style_qkv_bias_loads_exactly_because_softmax_cancels_the_key_bias():
    source = create_backbone("vit_test").eval()
    perturb_(source)
    state = source.state_dict()
    for i in range(2):
        q_bias, v_bias = state.pop(f"blocks.{i}.attn.q_bias"), state.pop(f"blocks.{i}.attn.v_bias")
        state[f"blocks.{i}.attn.qkv.bias"] = torch.cat([q_bias, torch.randn(64), v_bias])
    model = create_backbone("vit_test").eval()
    model.load_state_dict_filtered(state)
    video = clip()
    with torch.no_grad():
        assert (model(video) - source(video)).abs().max() < 1e-5


def test_learned_pos_embed_checkpoint_interpolated_to_more_frames(tmp_path):
    """An 8-frame checkpoint with a learned table, loaded into a 16-frame model."""
    source = create_backbone("vit_test", pos_embed_type="learned")
    perturb_(source)
    torch.save({"model": source.state_dict()}, tmp_path / "internvideo_like.pth")
    model = VideoViT.from_pretrained(
        tmp_path / "internvideo_like.pth", num_frames=16, img_size=32, num_heads=4
    )
    assert model.pos_embed_type == "learned" and model.pos_embed.shape == (1, 128, 64)
    expected = interpolate_pos_embed(source.pos_embed.detach(), (4, 4, 4), (8, 4, 4))
    assert torch.allclose(model.pos_embed, expected)
    with torch.no_grad():
        out = model.eval()(clip(frames=16), output="temporal")
    assert out.shape == (2, 8, 64) and torch.isfinite(out).all()
    # The filter fn alone, at the same size, leaves the table untouched.
    same = checkpoint_filter_fn({"model": source.state_dict()}, source)
    assert torch.equal(same["pos_embed"], source.pos_embed)


def test_transformers_8_frame_checkpoint_in_16_frame_model(hf_model):
    _, folder = hf_model
    model = VideoViT.from_pretrained(folder, num_frames=16).eval()
    assert model.grid_size == (8, 4, 4)
    assert torch.equal(model.pos_embed, sincos_table(128, 64))  # VideoMAE builds the table for the model
    with torch.no_grad():
        out = model(clip(frames=16), output="pooled")
    assert out.shape == (2, 64) and torch.isfinite(out).all()


def test_create_backbone_with_checkpoint_path(hf_model):
    hf, folder = hf_model
    model = create_backbone("vit_test", checkpoint_path=folder, mlp_ratio=2.0, norm_eps=1e-12).eval()
    video = clip()
    with torch.no_grad():
        assert (model(video) - hf_tokens(hf, video)).abs().max() < 1e-4


def test_load_pretrained_checks_config_json_against_the_model(hf_model):
    _, folder = hf_model
    with pytest.raises(ValueError, match="num_attention_heads=4, the model 2"):
        create_backbone("vit_test", num_heads=2, mlp_ratio=2.0).load_pretrained(folder)
    with pytest.warns(UserWarning, match="layer_norm_eps=1e-12, the model uses 1e-06"):
        create_backbone("vit_test", mlp_ratio=2.0).load_pretrained(folder)


def test_pretraining_norm_into_mean_pooling_model_warns(hf_model):
    _, folder = hf_model
    with pytest.warns(
        UserWarning, match=r"ignored \[.*'norm.weight'.*\], left \['fc_norm.weight', 'fc_norm.bias'\]"
    ):
        model = VideoViT.from_pretrained(folder, use_mean_pooling=True)
    assert model.use_mean_pooling


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = create_backbone("vit_test").state_dict()
    del state["blocks.1.mlp.fc2.weight"]
    state["cls_token"] = torch.zeros(1, 1, 64)
    model = create_backbone("vit_test")
    with pytest.raises(ValueError, match=r"missing keys \['blocks.1.mlp.fc2.weight'\].*\['cls_token'\]"):
        model.load_state_dict_filtered(state, source="ckpt.pth")
    with pytest.warns(UserWarning, match="cls_token"):
        model.load_state_dict_filtered(state, strict=False)


def test_shape_mismatch_is_named():
    state = create_backbone("vit_test", depth=2, embed_dim=64).state_dict()
    model = create_backbone("vit_test", mlp_ratio=2.0)
    with pytest.raises(
        ValueError, match=r"blocks.0.mlp.fc1.weight: checkpoint \(256, 64\) vs model \(128, 64\)"
    ):
        model.load_state_dict_filtered(state)


def test_missing_files_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        VideoViT.from_pretrained(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="config.json"):
        VideoViT.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "videomae"}))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        VideoViT.from_pretrained(tmp_path)


def test_safetensors_file_in_original_layout(tmp_path):
    source = create_backbone("vit_test")
    perturb_(source)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "w.safetensors")
    model = VideoViT.from_pretrained(Path(tmp_path / "w.safetensors"), num_frames=8, img_size=32, num_heads=4)
    video = clip()
    with torch.no_grad():
        assert torch.equal(model.eval()(video), source.eval()(video))
