"""Position embeddings for space-time token grids: VideoMAE's sin-cos table, learned tables, and
resampling either to another frame count or resolution.

Tokens are laid out ``(t h w)``, time-major, as :class:`vidlit.layers.tubelet.TubeletEmbed`
emits them, so a table ``[1, t*h*w, d]`` can be viewed as a ``t x h x w`` grid of vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

Grid = tuple[int, int, int]


def sincos_table(num_positions: int, dim: int) -> Tensor:
    """The fixed sinusoid table of VideoMAE (Tong et al., 2022), bit-for-bit.

    VideoMAE (and transformers' ``VideoMAEModel``) number the ``t*h*w`` tokens of a clip
    ``0 .. N-1`` in ``(t h w)`` order and give token ``p`` the 1-D Transformer encoding
    (Vaswani et al., 2017) with interleaved channels: channel ``2i`` is
    ``sin(p / 10000^(2i/d))`` and channel ``2i+1`` the matching cosine. The table is computed in
    float64, as VideoMAE's numpy code does, and returned in float32 so that checkpoints trained
    with it see the same numbers.

    Args:
        num_positions: number of tokens ``N`` (``t*h*w`` of the configured grid).
        dim: embedding width ``d``.

    Returns:
        ``[1, N, d]`` float32 table.
    """
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]
    channel = torch.arange(dim, dtype=torch.float64)
    # VideoMAE's exponent uses 2 * (j // 2) / d: sin and cos of one frequency sit side by side.
    angle = position / torch.pow(10000.0, 2.0 * torch.div(channel, 2, rounding_mode="floor") / dim)
    table = torch.where(channel.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()[None]


def learned_table(num_positions: int, dim: int, std: float = 0.02) -> nn.Parameter:
    """A learned position table, initialized as VideoMAE's and timm's ViTs do (truncated normal).

    Args:
        num_positions: number of tokens ``N``.
        dim: embedding width ``d``.
        std: standard deviation of the truncated-normal initialization.

    Returns:
        ``[1, N, d]`` parameter.
    """
    table = nn.Parameter(torch.empty(1, num_positions, dim))
    nn.init.trunc_normal_(table, std=std, a=-2 * std, b=2 * std)
    return table


def interpolate_pos_embed(
    pos_embed: Tensor,
    src_grid: Grid,
    dst_grid: Grid,
    spatial_mode: str = "bicubic",
    temporal_mode: str = "linear",
) -> Tensor:
    """Resample a ``(t h w)`` position table to another grid.

    Space and time are resampled separately, as VideoMAE's and InternVideo's fine-tuning code
    resample checkpoints: bicubic over ``(h, w)`` per time step, then linear over ``t`` per
    spatial position (``align_corners=False`` for both). A table whose grid already matches is
    returned unchanged (the same tensor), so calling this on every forward pass costs nothing
    at the configured size.

    Args:
        pos_embed: ``[1, t*h*w, d]`` table laid out on ``src_grid``.
        src_grid: ``(t, h, w)`` the table was built for.
        dst_grid: ``(t, h, w)`` wanted.
        spatial_mode: ``F.interpolate`` mode over ``(h, w)``.
        temporal_mode: ``F.interpolate`` mode over ``t``.

    Returns:
        ``[1, t'*h'*w', d]`` table in ``pos_embed``'s dtype.

    Raises:
        ValueError: if the table's length does not match ``src_grid``.
    """
    src_grid, dst_grid = tuple(src_grid), tuple(dst_grid)
    t, h, w = src_grid
    if pos_embed.ndim != 3 or pos_embed.shape[1] != t * h * w:
        raise ValueError(
            f"position table of shape {tuple(pos_embed.shape)} does not hold a {t}x{h}x{w} grid "
            f"(expected [1, {t * h * w}, dim])"
        )
    if src_grid == dst_grid:
        return pos_embed
    t2, h2, w2 = dst_grid
    # bicubic has no bf16/fp16 kernel on every device; resample in float32.
    table = pos_embed.float()
    if (h, w) != (h2, w2):
        table = rearrange(table, "b (t h w) d -> (b t) d h w", t=t, h=h, w=w)
        table = F.interpolate(table, size=(h2, w2), mode=spatial_mode, align_corners=False)
        table = rearrange(table, "(b t) d h w -> b (t h w) d", t=t)
    if t != t2:
        table = rearrange(table, "b (t h w) d -> (b h w) d t", t=t, h=h2, w=w2)
        table = F.interpolate(table, size=t2, mode=temporal_mode, align_corners=False)
        table = rearrange(table, "(b h w) d t -> b (t h w) d", h=h2, w=w2)
    return table.to(pos_embed.dtype)


def infer_grid(num_positions: int, like: Grid) -> Grid:
    """Guess the ``(t, h, w)`` grid of a checkpoint's position table from its length.

    Checkpoints store a flat ``[1, N, d]`` table without its grid. Tried in order: the same
    spatial grid as ``like`` with another frame count, then the same frame count with another
    square spatial grid (VideoMAE's fine-tuning rule).

    Args:
        num_positions: length ``N`` of the stored table.
        like: the grid of the model the table is loaded into.

    Returns:
        the inferred grid.

    Raises:
        ValueError: if neither rule fits ``N``.
    """
    t, h, w = like
    if num_positions % (h * w) == 0:
        return num_positions // (h * w), h, w
    if num_positions % t == 0:
        side = round((num_positions // t) ** 0.5)
        if side * side * t == num_positions:
            return t, side, side
    raise ValueError(
        f"cannot infer the grid of a {num_positions}-token position table for a model with a "
        f"{t}x{h}x{w} grid; pass the checkpoint's frame count and image size explicitly"
    )
