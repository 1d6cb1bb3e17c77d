"""Masked video modeling: tube masks, pixel targets, the VideoMAE decoder, parity with transformers."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from vidlit.backbones import MaskedVideoModel, MVMDecoder, create_backbone, patchify, pixel_targets, tube_mask
from vidlit.backbones.mvm import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    bool_masked_pos,
    remap_decoder_keys,
    unpatchify,
)
from vidlit.layers.pos_embed import sincos_table


def clip(batch: int = 2, frames: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("grid", "ratio"), [((4, 4, 4), 0.75), ((8, 14, 14), 0.9), ((2, 3, 5), 0.5)])
def test_tube_mask_is_one_spatial_mask_repeated_over_time(grid, ratio):
    t, h, w = grid
    space = h * w
    visible, masked = tube_mask(3, grid, ratio, generator=torch.Generator().manual_seed(0))
    per_frame = round(ratio * space)
    assert masked.shape == (3, t * per_frame) and visible.shape == (3, t * (space - per_frame))
    assert masked.dtype == visible.dtype == torch.long
    for b in range(3):
        both = torch.cat((visible[b], masked[b]))
        assert torch.equal(both.sort().values, torch.arange(t * space))  # disjoint, covering
        assert torch.equal(masked[b], masked[b].sort().values)
        # token (i, s) is i * space + s: the same spatial positions at every time step
        steps = rearrange(masked[b], "(t m) -> t m", t=t)
        assert torch.equal(steps % space, (steps[:1] % space).expand(t, -1))
        assert torch.equal(steps // space, torch.arange(t)[:, None].expand(-1, per_frame))
    assert not torch.equal(masked[0], masked[1]) or not torch.equal(masked[1], masked[2])  # one mask per clip


def test_tube_mask_generator_and_device_and_bool_form():
    a = tube_mask(2, (4, 4, 4), 0.9, generator=torch.Generator().manual_seed(3), device="cpu")
    b = tube_mask(2, (4, 4, 4), 0.9, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    mask = bool_masked_pos(a[1], 64)
    assert mask.sum(1).tolist() == [4 * 14, 4 * 14] and not mask.gather(1, a[0]).any()


@pytest.mark.parametrize("ratio", [0.0, 0.01, 0.99, 1.0])
def test_tube_mask_rejects_ratios_leaving_nothing(ratio):
    with pytest.raises(ValueError, match="at least one must stay visible"):
        tube_mask(1, (2, 4, 4), ratio)


def test_patchify_round_trip_and_matches_the_tubelet_embedding_order():
    video = clip()
    patches = patchify(video, 2, 8)
    assert patches.shape == (2, 64, 2 * 8 * 8 * 3)
    assert torch.equal(unpatchify(patches, (4, 4, 4), 2, 8, channels=3), video)
    # VideoViT's Conv3d is a linear map of each tubelet: with its weight laid out (p0 p1 p2 c),
    # patchify's tokens and pixel order must reproduce its output token for token.
    backbone = create_backbone("vit_test")
    proj = backbone.patch_embed.proj
    weight = rearrange(proj.weight, "d c p0 p1 p2 -> d (p0 p1 p2 c)")
    with torch.no_grad():
        assert torch.allclose(backbone.patch_embed(video), patches @ weight.T + proj.bias, atol=1e-5)


def test_patchify_rejects_untileable_clips():
    with pytest.raises(ValueError, match="does not tile"):
        patchify(torch.zeros(1, 3, 7, 32, 32), 2, 8)


def test_normalized_targets_match_a_hand_computation():
    video = clip(batch=1)
    mean, std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    targets = pixel_targets(video, 2, 8, norm_pix=True, pixel_mean=mean, pixel_std=std)
    assert targets.shape == (1, 64, 384) and targets.dtype == torch.float32
    # token 37 of the 4x4x4 grid: time step 2, row 1, column 1
    ti, yi, xi = 37 // 16, (37 % 16) // 4, 37 % 4
    expected = []
    for c in range(3):
        cube = video[0, c, 2 * ti : 2 * ti + 2, 8 * yi : 8 * yi + 8, 8 * xi : 8 * xi + 8] * std[c] + mean[c]
        expected.append((cube - cube.mean()) / (cube.std(unbiased=True) + 1e-6))  # [2, 8, 8]
    expected = torch.stack(expected, dim=-1).flatten()  # (p0 p1 p2 c)
    assert torch.allclose(targets[0, 37], expected, atol=1e-5)
    # un-normalizing is an affine map per channel: with norm_pix it cancels out exactly
    assert torch.allclose(pixel_targets(video, 2, 8, pixel_mean=None, pixel_std=None), targets, atol=1e-4)
    raw = pixel_targets(video, 2, 8, norm_pix=False, pixel_mean=mean, pixel_std=std)
    assert torch.allclose(
        raw,
        patchify(
            video * torch.tensor(std)[:, None, None, None] + torch.tensor(mean)[:, None, None, None], 2, 8
        ),
        atol=1e-6,
    )


def test_pixel_targets_reject_mismatched_normalization():
    with pytest.raises(ValueError, match="given together"):
        pixel_targets(clip(), 2, 8, pixel_mean=(0.5, 0.5, 0.5), pixel_std=None)
    with pytest.raises(ValueError, match="3-channel"):
        pixel_targets(clip(), 2, 8, pixel_mean=(0.5,), pixel_std=(0.5,))


def test_decoder_shapes_and_position_table():
    decoder = MVMDecoder(embed_dim=64, patch_dim=384, num_patches=64, decoder_dim=32, depth=2, num_heads=4)
    visible, masked = tube_mask(2, (4, 4, 4), 0.75)
    out = decoder(torch.randn(2, visible.shape[1], 64), visible, masked)
    assert out.shape == (2, masked.shape[1], 384)
    # the fixed table is VideoMAE's 1-D table: a prefix for shorter clips, computed for longer ones
    assert torch.equal(decoder.pos_table(64), sincos_table(64, 32))
    assert torch.equal(decoder.pos_table(100)[:, :64], decoder.pos_embed)
    assert not any("pos_embed" in k for k in decoder.state_dict())  # fixed, never saved
    with pytest.raises(ValueError, match="do not match"):
        decoder(torch.randn(2, 5, 64), visible, masked)


def test_decoder_output_depends_on_which_tokens_are_masked():
    torch.manual_seed(0)
    decoder = MVMDecoder(embed_dim=64, patch_dim=384, num_patches=64, decoder_dim=32, depth=1, num_heads=4)
    tokens = torch.randn(1, 16, 64)
    vis_a, mask_a = tube_mask(1, (4, 4, 4), 0.75, generator=torch.Generator().manual_seed(0))
    vis_b, mask_b = tube_mask(1, (4, 4, 4), 0.75, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(decoder(tokens, vis_a, mask_a), decoder(tokens, vis_b, mask_b))


def test_masked_video_model_overfits_one_clip():
    torch.manual_seed(0)
    model = MaskedVideoModel(create_backbone("vit_test"), decoder_dim=32, decoder_depth=1, decoder_heads=4)
    video = clip(batch=1)
    visible, masked = tube_mask(1, (4, 4, 4), 0.75, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = model(video, visible, masked)
        losses.append(out.loss.item())
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert out.pred.shape == out.target.shape == (1, 48, 384)
    assert losses[-1] < 0.75 * losses[0], losses


def test_masked_video_model_bf16_autocast():
    model = MaskedVideoModel(create_backbone("vit_test"), decoder_dim=32, decoder_depth=1, decoder_heads=4)
    visible, masked = tube_mask(2, (4, 4, 4), 0.9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(clip(), visible, masked)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()


# -- parity with transformers' VideoMAEForPreTraining --------------------------------------------


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_loss_equals_transformers_videomae_for_pretraining(norm_pix_loss):
    transformers = pytest.importorskip("transformers")
    config = transformers.VideoMAEConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        image_size=32,
        patch_size=8,
        num_frames=8,
        tubelet_size=2,
        qkv_bias=True,
        use_mean_pooling=False,  # VideoMAE's pretraining encoder ends in a LayerNorm
        layer_norm_eps=1e-6,
        decoder_hidden_size=32,
        decoder_num_hidden_layers=2,
        decoder_num_attention_heads=4,
        decoder_intermediate_size=128,
        norm_pix_loss=norm_pix_loss,
    )
    hf = transformers.VideoMAEForPreTraining(config).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # off the initialization, so zero biases and unit norms hide nothing
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    hf.decoder.norm.eps = 1e-6  # transformers builds it with PyTorch's 1e-5; VideoMAE uses 1e-6
    state = hf.state_dict()
    backbone = create_backbone("vit_test")
    backbone.load_state_dict_filtered(state)  # drops the decoder keys, strips "videomae."
    model = MaskedVideoModel(
        backbone, decoder_dim=32, decoder_depth=2, decoder_heads=4, norm_pix_loss=norm_pix_loss
    ).eval()
    model.decoder.load_state_dict(remap_decoder_keys(state), strict=True)
    video = clip()
    visible, masked = tube_mask(2, backbone.grid_size, 0.75, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(video, visible, masked)
        ref = hf(video.transpose(1, 2), bool_masked_pos=bool_masked_pos(masked, 64))
    assert (ours.pred - ref.logits).abs().max() < 1e-5
    assert ours.loss.item() == pytest.approx(ref.loss.item(), rel=1e-5)


def test_original_videomae_decoder_layout_loads():
    """``run_mae_pretraining.py`` checkpoints: ``decoder.blocks.N`` with a fused qkv, under ``model``."""
    source = MVMDecoder(embed_dim=64, patch_dim=384, num_patches=64, decoder_dim=32, depth=2, num_heads=4)
    checkpoint = {"model": {f"decoder.{k}": v for k, v in source.state_dict().items()}}
    for key in ("encoder_to_decoder.weight", "mask_token"):
        checkpoint["model"][key] = checkpoint["model"].pop(f"decoder.{key}")
    checkpoint["model"]["encoder.blocks.0.norm1.weight"] = torch.ones(64)  # the encoder's: not the decoder's
    target = MVMDecoder(embed_dim=64, patch_dim=384, num_patches=64, decoder_dim=32, depth=2, num_heads=4)
    target.load_state_dict(remap_decoder_keys(checkpoint), strict=True)
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in source.state_dict().items())


def test_masked_reconstruction_is_the_pretraining_tasks_step():
    """MVMPretrain and VideoTextPretrain's MVM loss: fresh tube masks, then the same reconstruction."""
    from vidlit.backbones.mvm import decoder_for, masked_reconstruction, reconstruct
    from vidlit.tasks import MVMPretrain

    torch.manual_seed(0)
    model = MaskedVideoModel(
        create_backbone("vit_test", depth=1), decoder_dim=32, decoder_depth=1, decoder_heads=4
    )
    video = clip()
    out = masked_reconstruction(model, video, 0.75, torch.Generator().manual_seed(5))
    masks = tube_mask(2, model.backbone.grid_size, 0.75, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out.loss, reconstruct(model, video, *masks).loss)
    task = MVMPretrain(model.backbone, mask_ratio=0.75, decoder_dim=32, decoder_depth=1, decoder_heads=4)
    task.decoder.load_state_dict(model.decoder.state_dict())
    assert torch.equal(task(video, generator=torch.Generator().manual_seed(5)).loss, out.loss)
    # one check of the encoder and the ratio, wherever a decoder is built
    with pytest.raises(ValueError, match="has no 'embed_dim', 'tubelet_size'.*VideoViT-like"):
        decoder_for(torch.nn.Linear(2, 2), 32, 1, 4)
    with pytest.raises(ValueError, match="at least one must stay visible"):
        decoder_for(model.backbone, 32, 1, 4, mask_ratio=0.99)
