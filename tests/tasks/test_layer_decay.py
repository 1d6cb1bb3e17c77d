"""Layer-wise learning-rate decay (VideoMAE fine-tuning) in vidlit's optimizer setup."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from vidlit.backbones import create_backbone
from vidlit.heads import AttentiveProbeHead, LinearProbeHead
from vidlit.tasks import TaskModule
from vidlit.tasks.optim import default_scheduler, layer_decay_groups, layer_id


def _module(layer_decay: float | None = 0.75, depth: int = 3, **kwargs) -> TaskModule:
    backbone = create_backbone("vit_test", depth=depth, pos_embed_type="learned", use_mean_pooling=True)
    return TaskModule(
        LinearProbeHead(64, 5), backbone=backbone, layer_decay=layer_decay, optimizer=_adamw, **kwargs
    )


def _adamw(params):
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)


def _names(module, group):
    ids = {id(p) for p in group["params"]}
    return {name for name, p in module.named_parameters() if id(p) in ids}


def test_lr_per_group_follows_the_decay_formula():
    """lr of layer l == base * decay ** (depth + 1 - l); patch/pos 0, block i -> i + 1, head depth + 1."""
    depth, decay, base = 3, 0.75, 1e-3
    module = _module(decay, depth)
    optimizer = module.configure_optimizers()
    seen = set()
    for group in optimizer.param_groups:
        layer = group["layer_id"]
        assert group["lr"] == pytest.approx(base * decay ** (depth + 1 - layer), rel=1e-12)
        for name in _names(module, group):
            seen.add(name)
            if name.startswith(("backbone.patch_embed.", "backbone.pos_embed")):
                assert layer == 0, name
            elif name.startswith("backbone.blocks."):
                assert layer == int(name.split(".")[2]) + 1, name
            else:  # backbone.fc_norm, head.*
                assert layer == depth + 1, name
    assert seen == {n for n, _ in module.named_parameters()}  # every parameter in exactly one group
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(seen)
    assert {g["layer_id"] for g in optimizer.param_groups} == set(range(depth + 2))
    assert min(g["lr"] for g in optimizer.param_groups) == pytest.approx(base * decay ** (depth + 1))


def test_no_weight_decay_on_norms_biases_and_position_tables():
    module = _module()
    optimizer = module.configure_optimizers()
    for group in optimizer.param_groups:
        for name in _names(module, group):
            param = module.get_parameter(name)
            plain = param.ndim <= 1 or name.endswith(".bias") or name == "backbone.pos_embed"
            assert group["weight_decay"] == (0.0 if plain else 0.05), name
    no_decay = {n for g in optimizer.param_groups if g["weight_decay"] == 0 for n in _names(module, g)}
    assert {
        "backbone.pos_embed",
        "backbone.blocks.0.norm1.weight",
        "backbone.blocks.0.attn.q_bias",
    } <= no_decay
    assert "backbone.fc_norm.weight" in no_decay and "head.fc.bias" in no_decay
    assert "head.fc.weight" not in no_decay and "backbone.blocks.2.attn.qkv.weight" not in no_decay


def test_scheduler_wraps_the_scaled_rates():
    """The warmup-cosine schedule's base rates are the decayed ones, so every layer keeps its ratio."""
    module = _module(0.5, depth=2, scheduler=default_scheduler)
    module.trainer = L.Trainer(max_steps=20, logger=False, enable_progress_bar=False)
    config = module.configure_optimizers()
    schedule = config["lr_scheduler"]["scheduler"]
    expected = [1e-3 * 0.5 ** (3 - g["layer_id"]) for g in config["optimizer"].param_groups]
    assert schedule.base_lrs == pytest.approx(expected)
    for _ in range(5):
        config["optimizer"].step()
        schedule.step()
    lrs = schedule.get_last_lr()
    assert [lr / lrs[-1] for lr in lrs] == pytest.approx([e / expected[-1] for e in expected])


def test_frozen_parameters_and_other_heads():
    """Frozen parameters stay out; a token head's learned query sits at the top layer."""
    backbone = create_backbone("vit_test", depth=2)
    backbone.patch_embed.requires_grad_(False)
    module = TaskModule(AttentiveProbeHead(64, 4, num_heads=4), backbone=backbone, layer_decay=0.8)
    groups = layer_decay_groups(module, 0.8)
    assert 0 not in {g["layer_id"] for g in groups}  # patch embed frozen, sin-cos table a buffer
    query = [g for g in groups if any(p is module.head.query for p in g["params"])]
    assert query[0]["layer_id"] == 3 and query[0]["lr_scale"] == 1.0


def test_layer_id_matches_videomae():
    """VideoMAE's optim_factory.get_num_layer_for_vit on the ViT's own names."""
    assert layer_id("cls_token", "", 12) == 0
    assert layer_id("mask_token", "", 12) == 0
    assert layer_id("pos_embed", "", 12) == 0
    assert layer_id("patch_embed.proj.weight", "", 12) == 0
    assert layer_id("blocks.0.norm1.weight", "", 12) == 1
    assert layer_id("blocks.11.mlp.fc2.bias", "", 12) == 12
    assert layer_id("fc_norm.weight", "", 12) == 13
    assert layer_id("head.weight", "", 12) == 13


def test_bad_layer_decay():
    with pytest.raises(ValueError, match=r"layer_decay must lie in \(0, 1\], got 1.5"):
        _module(1.5)
    with pytest.raises(ValueError, match="needs a VideoViT-like backbone"):
        TaskModule(LinearProbeHead(8, 3), layer_decay=0.75).configure_optimizers()


def test_layer_decay_one_is_a_plain_rate():
    module = _module(1.0)
    assert {g["lr"] for g in module.configure_optimizers().param_groups} == {1e-3}
