"""VideoViT: outputs, training paths, registry, named sizes."""

from __future__ import annotations

import pytest
import torch

from vidlit.backbones import VideoViT, _registry, create_backbone, list_backbones, register_backbone
from vidlit.backbones.vit import Block
from vidlit.layers.pos_embed import interpolate_pos_embed


def clip(batch: int = 2, frames: int = 8, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, 3, frames, size, size)


@pytest.fixture
def model() -> VideoViT:
    torch.manual_seed(0)
    return create_backbone("vit_test").eval()


@pytest.mark.parametrize(
    ("output", "shape"), [("tokens", (2, 64, 64)), ("pooled", (2, 64)), ("temporal", (2, 4, 64))]
)
@pytest.mark.parametrize("use_mean_pooling", [False, True])
def test_output_shapes(output, shape, use_mean_pooling):
    model = create_backbone("vit_test", use_mean_pooling=use_mean_pooling)
    out = model(clip(), output=output)
    assert out.shape == shape and torch.isfinite(out).all()


def test_pooled_and_temporal_are_means_of_tokens(model):
    video = clip()
    with torch.no_grad():
        tokens = model(video)
        assert torch.allclose(model(video, output="pooled"), tokens.mean(1), atol=1e-6)
        temporal = model(video, output="temporal")
    # tokens are (t h w)-ordered: time step 1 is tokens 16..31 of the 4x4x4 grid
    assert torch.allclose(temporal[:, 1], tokens[:, 16:32].mean(1), atol=1e-6)


def test_mean_pooling_applies_fc_norm_not_final_norm():
    model = create_backbone("vit_test", use_mean_pooling=True).eval()
    assert isinstance(model.norm, torch.nn.Identity) and isinstance(model.fc_norm, torch.nn.LayerNorm)
    video = clip()
    with torch.no_grad():
        tokens = model(video)
        assert torch.allclose(model(video, output="pooled"), model.fc_norm(tokens.mean(1)), atol=1e-6)


def test_backward_reaches_every_parameter():
    model = create_backbone("vit_test", pos_embed_type="learned", use_mean_pooling=True)
    model(clip(), output="pooled").square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_bf16_autocast_on_cpu():
    model = create_backbone("vit_test")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(clip(), output="temporal")
    assert out.shape == (2, 4, 64) and torch.isfinite(out.float()).all()
    out.float().mean().backward()
    assert model.patch_embed.proj.weight.grad is not None


def test_state_dict_round_trip(model):
    state = model.state_dict()
    assert "pos_embed" not in state  # fixed sin-cos table, as in VideoMAE and transformers
    assert "blocks.0.attn.q_bias" in state and "blocks.0.attn.k_bias" not in state
    torch.manual_seed(1)
    other = create_backbone("vit_test").eval()
    other.load_state_dict(state)
    video = clip()
    with torch.no_grad():
        assert torch.equal(model(video), other(video))


def test_learned_pos_embed_round_trips_and_is_saved():
    model = create_backbone("vit_test", pos_embed_type="learned").eval()
    other = create_backbone("vit_test", pos_embed_type="learned").eval()
    other.load_state_dict(model.state_dict())
    video = clip()
    with torch.no_grad():
        assert torch.equal(model(video), other(video))


def test_visible_idx_matches_manual_gather(model):
    video = clip()
    visible_idx = torch.stack([torch.randperm(64)[:16].sort().values for _ in range(2)])
    with torch.no_grad():
        out = model.forward_features(video, visible_idx=visible_idx)
        x = model.patch_embed(video) + model.pos_embed
        x = torch.stack([x[i, visible_idx[i]] for i in range(2)])
        for block in model.blocks:
            x = block(x)
        expected = model.norm(x)
        pooled = model(video, output="pooled", visible_idx=visible_idx)
    assert out.shape == (2, 16, 64)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(pooled, expected.mean(1), atol=1e-5)


def test_visible_idx_rejected_with_temporal_and_checked(model):
    with pytest.raises(ValueError, match="temporal"):
        model(clip(), output="temporal", visible_idx=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="int64"):
        model.forward_features(clip(), visible_idx=torch.zeros(2, 4, dtype=torch.int32))


def test_other_frame_count_and_resolution_resample_the_table(model):
    video = clip(frames=16, size=48)
    with torch.no_grad():
        out = model(video, output="temporal")
    assert out.shape == (2, 8, 64) and torch.isfinite(out).all()
    table = model.pos_embed_for((8, 6, 6))
    assert torch.allclose(table, interpolate_pos_embed(model.pos_embed, (4, 4, 4), (8, 6, 6)))


def test_learned_table_resampled_at_runtime_equals_model_built_for_that_size():
    torch.manual_seed(0)
    short = create_backbone("vit_test", pos_embed_type="learned").eval()
    long = create_backbone("vit_test", pos_embed_type="learned", num_frames=16).eval()
    state = short.state_dict()
    state["pos_embed"] = interpolate_pos_embed(state["pos_embed"], (4, 4, 4), (8, 4, 4))
    long.load_state_dict(state)
    video = clip(frames=16)
    with torch.no_grad():
        assert torch.allclose(short(video), long(video), atol=1e-6)


def test_bad_inputs_raise_value_errors(model):
    with pytest.raises(ValueError, match="frames must be a multiple of 2"):
        model(clip(frames=7))
    with pytest.raises(ValueError, match="expected a video"):
        model(torch.randn(2, 8, 3, 32, 32))
    with pytest.raises(ValueError, match="output must be one of"):
        model(clip(), output="cls")


def test_grad_checkpointing_gives_same_loss_and_grads():
    torch.manual_seed(0)
    plain = create_backbone("vit_test")
    ckpt = create_backbone("vit_test", grad_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    video = clip()
    for m in (plain, ckpt):
        m(video, output="pooled").square().sum().backward()
    assert torch.allclose(
        plain.blocks[0].attn.qkv.weight.grad, ckpt.blocks[0].attn.qkv.weight.grad, atol=1e-6
    )
    ckpt.set_grad_checkpointing(False)
    assert not ckpt.grad_checkpointing


def test_residual_stream_is_contiguous(model):
    """A strided stream would make every residual add and LayerNorm copy; see forward_features."""
    seen = []
    for block in model.blocks:
        block.register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous()))
    with torch.no_grad():
        model(clip())
    assert seen == [True, True]


def test_attributes_for_data_heads_and_fsdp(model):
    assert model.embed_dim == 64 and model.num_frames == 8 and model.tubelet_size == 2
    assert model.img_size == (32, 32) and model.patch_size == (8, 8)
    assert model.grid_size == (4, 4, 4) and model.num_patches == 64
    assert model.block_class is Block and all(isinstance(b, model.block_class) for b in model.blocks)


def test_registry_lists_every_size():
    assert list_backbones() == sorted(list_backbones())
    assert {
        "vit_test",
        "vit_small_patch16_16x224",
        "vit_base_patch16_16x224",
        "vit_large_patch16_16x224",
        "vit_huge_patch16_16x224",
    } <= set(list_backbones())
    assert list_backbones("vit_*_patch16_16x224") == [
        "vit_base_patch16_16x224",
        "vit_huge_patch16_16x224",
        "vit_large_patch16_16x224",
        "vit_small_patch16_16x224",
    ]


def test_overrides_replace_the_named_size():
    model = create_backbone("vit_test", drop_path_rate=0.1, num_frames=16, depth=3)
    assert len(model.blocks) == 3 and model.num_frames == 16 and model.grid_size == (8, 4, 4)
    assert isinstance(model.blocks[0].drop_path1, torch.nn.Identity)
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    assert model.blocks[1].drop_path2.drop_prob == pytest.approx(0.05)


def test_unknown_name_lists_close_names():
    with pytest.raises(ValueError, match="vit_base_patch16_16x224"):
        create_backbone("vit_base_patch16_224")


def test_register_backbone_adds_a_name_and_rejects_clashes(monkeypatch):
    monkeypatch.setattr(_registry, "_BACKBONES", dict(_registry._BACKBONES))  # leave no probe behind

    def vit_test_registry_probe(**kwargs):
        return VideoViT(
            **{"embed_dim": 32, "depth": 1, "num_heads": 2, "num_frames": 2, "img_size": 16, **kwargs}
        )

    register_backbone(vit_test_registry_probe)
    assert create_backbone("vit_test_registry_probe", patch_size=8).num_patches == 4

    def vit_test():  # same name as the registered tiny model, from another module
        return None

    vit_test.__module__ = "somewhere.else"
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(vit_test)


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("vit_small_patch16_16x224", 21.5e6, 22.5e6),
        ("vit_base_patch16_16x224", 86.0e6, 86.5e6),
        ("vit_large_patch16_16x224", 303e6, 305e6),
        ("vit_huge_patch16_16x224", 630e6, 633e6),
    ],
)
def test_named_sizes_on_meta_device(name, low, high):
    with torch.device("meta"):
        model = create_backbone(name)
    assert model.pos_embed.is_meta
    assert low < sum(p.numel() for p in model.parameters()) < high
    assert model.grid_size == (8, 14, 14)


def test_reset_parameters_rebuilds_the_sincos_table_after_meta_init():
    with torch.device("meta"):
        model = create_backbone("vit_test")
    model.to_empty(device="cpu")
    model.reset_parameters()
    reference = create_backbone("vit_test")
    assert torch.equal(model.pos_embed, reference.pos_embed)


# -- Lightning checkpoints of vidlit's task modules ------------------------------------------------


def _lightning_checkpoint(module, path):
    """``path`` written by ``trainer.save_checkpoint``, as ``last.ckpt`` is."""
    import lightning as L

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


def _task(kind):
    from vidlit.heads import LinearProbeHead
    from vidlit.tasks import MVMPretrain, TaskModule, VideoTextPretrain

    torch.manual_seed(0)
    backbone = create_backbone("vit_test", depth=1, drop_path_rate=0.1)
    decoder = dict(decoder_dim=32, decoder_depth=1, decoder_heads=4)
    if kind == "mvm":
        return MVMPretrain(backbone, **decoder)
    if kind == "video_text":  # the video tower is model.video, next to model.text and a decoder
        return VideoTextPretrain(backbone, text="text_test", proj_dim=16, mvm_weight=0.5, **decoder)
    return TaskModule(LinearProbeHead(64, 3), backbone=backbone)


@pytest.mark.parametrize("kind", ["mvm", "video_text", "finetune"])
def test_lightning_checkpoints_of_task_modules_load_as_backbones(kind, tmp_path):
    task = _task(kind)
    path = _lightning_checkpoint(task, tmp_path / "last.ckpt")
    expected = task.backbone.state_dict()
    loaded = create_backbone("vit_test", depth=1, checkpoint_path=path)
    sized = VideoViT.from_pretrained(
        path, num_frames=8, img_size=32, num_heads=4
    )  # the rest from the weights
    for model in (loaded, sized):
        assert model.state_dict().keys() == expected.keys()
        assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())


def test_lightning_checkpoint_without_a_backbone_names_its_prefixes(tmp_path):
    from vidlit.heads import LinearProbeHead
    from vidlit.tasks import TaskModule

    path = _lightning_checkpoint(TaskModule(LinearProbeHead(64, 3)), tmp_path / "head_only.ckpt")
    with pytest.raises(
        ValueError,
        match=r"head_only.ckpt: .*without video backbone.*'backbone\.' or 'model\.video\.'.*'head\.",
    ):
        create_backbone("vit_test", checkpoint_path=path)
