"""Position tables: VideoMAE's sin-cos table, learned tables, resampling between grids."""

from __future__ import annotations

import pytest
import torch

from vidlit.layers.pos_embed import infer_grid, interpolate_pos_embed, learned_table, sincos_table


@pytest.mark.parametrize(("num_positions", "dim"), [(64, 64), (392, 48), (10, 6)])
def test_sincos_table_is_videomae_table_bit_for_bit(num_positions, dim):
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table

    assert torch.equal(sincos_table(num_positions, dim), get_sinusoid_encoding_table(num_positions, dim))


def test_sincos_table_interleaves_sin_and_cos():
    table = sincos_table(5, 8)[0]
    position = torch.arange(5.0)
    assert torch.allclose(table[:, 0], torch.sin(position))  # frequency 1 at channels 0/1
    assert torch.allclose(table[:, 1], torch.cos(position))
    assert torch.allclose(table[:, 2], torch.sin(position / 10000 ** (2 / 8)))


def test_sincos_table_builds_on_meta_device():
    with torch.device("meta"):
        table = sincos_table(1568, 768)
    assert table.is_meta and table.shape == (1, 1568, 768)


def test_learned_table_is_small_truncated_normal():
    torch.manual_seed(0)
    table = learned_table(64, 32)
    assert table.requires_grad and table.shape == (1, 64, 32)
    assert table.abs().max() <= 0.04 and 0.01 < table.std() < 0.03


def test_interpolation_to_the_same_grid_is_identity():
    table = sincos_table(4 * 4 * 4, 64)
    out = interpolate_pos_embed(table, (4, 4, 4), (4, 4, 4))
    assert out is table
    assert torch.equal(out, sincos_table(4 * 4 * 4, 64))


def test_temporal_interpolation_keeps_space_and_lies_between_neighbours():
    t, h, w, d = 4, 2, 3, 8
    table = torch.randn(1, t * h * w, d)
    out = interpolate_pos_embed(table, (t, h, w), (2 * t, h, w))
    assert out.shape == (1, 2 * t * h * w, d)
    grid_in, grid_out = table.reshape(t, h, w, d), out.reshape(2 * t, h, w, d)
    # Linear, align_corners=False, 2x: output step 2k+1 is 0.75 * in[k] + 0.25 * in[k+1].
    assert torch.allclose(grid_out[1], 0.75 * grid_in[0] + 0.25 * grid_in[1], atol=1e-6)
    assert torch.allclose(grid_out[0], grid_in[0], atol=1e-6)  # clamped at the border


def test_spatial_interpolation_resamples_each_time_step_alike():
    t, h, w, d = 2, 4, 4, 8
    frame = torch.randn(1, h * w, d)
    table = frame.repeat(1, t, 1)  # the same spatial table at every time step
    out = interpolate_pos_embed(table, (t, h, w), (t, 7, 5))
    assert out.shape == (1, t * 7 * 5, d)
    grid = out.reshape(t, 7 * 5, d)
    assert torch.allclose(grid[0], grid[1])


def test_interpolation_keeps_dtype_and_gradient():
    table = torch.randn(1, 2 * 2 * 2, 4, dtype=torch.bfloat16, requires_grad=True)
    out = interpolate_pos_embed(table, (2, 2, 2), (4, 3, 3))
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert table.grad is not None and torch.isfinite(table.grad.float()).all()


def test_interpolation_rejects_table_of_wrong_length():
    with pytest.raises(ValueError, match="4x4x4"):
        interpolate_pos_embed(torch.zeros(1, 60, 8), (4, 4, 4), (8, 4, 4))


def test_infer_grid_prefers_same_space_then_same_time():
    assert infer_grid(64, like=(8, 4, 4)) == (4, 4, 4)
    assert infer_grid(8 * 14 * 14, like=(8, 16, 16)) == (8, 14, 14)
    with pytest.raises(ValueError, match="cannot infer"):
        infer_grid(7 * 11, like=(8, 4, 4))
