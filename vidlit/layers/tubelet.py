"""Tubelet embedding: cut a clip into ``tubelet x patch x patch`` cubes and project each to a token."""

from __future__ import annotations

import math
from collections.abc import Sequence

from einops import rearrange
from torch import Tensor, nn

from vidlit.layers.pos_embed import Grid


def to_pair(x: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``(x, x)`` for an int, the pair itself otherwise."""
    if isinstance(x, int):
        return x, x
    if len(x) != 2:
        raise ValueError(f"expected an int or a (height, width) pair, got {x!r}")
    return int(x[0]), int(x[1])


def tile_grid(frames: int, height: int, width: int, tubelet_size: int, patch_h: int, patch_w: int) -> Grid:
    """Token grid ``(t', h', w')`` of a clip cut into ``tubelet_size x patch_h x patch_w`` cubes.

    Raises:
        ValueError: naming each size that is not a multiple of its tubelet or patch side.
    """
    wrong = [
        f"{size} {what} not a multiple of the {unit} ({name} must be a multiple of {side})"
        for size, side, name, what, unit in (
            (frames, tubelet_size, "frames", "frames are", "tubelet"),
            (height, patch_h, "height", "px of height are", "patch"),
            (width, patch_w, "width", "px of width are", "patch"),
        )
        if side < 1 or size % side
    ]
    if wrong:
        # the failing sizes only: token_grid checks the time axis before it knows the patch
        raise ValueError(f"clip of {frames} frames at {height}x{width} px does not tile: " + "; ".join(wrong))
    return frames // tubelet_size, height // patch_h, width // patch_w


def token_grid(
    num_tokens: int,
    video_shape: Sequence[int],
    tubelet_size: int = 2,
    patch_size: int | tuple[int, int] | None = None,
) -> tuple[int, int, int]:
    """The ``(t, h, w)`` token grid of a clip ``[b, c, T, H, W]`` a VideoViT encoded into ``num_tokens``.

    The backbone's tubelet embedding (:meth:`vidlit.layers.tubelet.TubeletEmbed.grid_size`) cuts
    the clip into ``tubelet_size x patch x patch`` cubes: ``t = T / tubelet_size``,
    ``h = H / patch_h``, ``w = W / patch_w``, every size a multiple. With ``patch_size`` None the
    patch is derived from the token count, square as in every registered VideoViT:
    ``patch = sqrt(H * W * t / num_tokens)``, which must be a whole number dividing ``H`` and
    ``W``; given a tubelet size, only one square patch fits.

    Args:
        num_tokens: tokens per clip (``features.shape[1]``).
        video_shape: shape of the clip the backbone encoded, ``[..., T, H, W]``.
        tubelet_size: the backbone's frames per token.
        patch_size: the backbone's spatial patch side or ``(height, width)``; None derives it.

    Raises:
        ValueError: when the sizes do not tile the clip or the tokens do not fill the grid, naming
            the clip, the token count and both sizes.
    """
    frames, height, width = (int(v) for v in video_shape[-3:])

    def mismatch(reason: str) -> ValueError:
        return ValueError(
            f"{num_tokens} tokens do not lay out on a clip of {frames} x {height} x {width} with "
            f"tubelet_size={tubelet_size}, patch_size={patch_size}: {reason}; set the head's "
            "tubelet_size and patch_size to the backbone's"
        )

    def tile(patch_h: int, patch_w: int) -> Grid:
        try:
            return tile_grid(frames, height, width, tubelet_size, patch_h, patch_w)
        except ValueError as err:
            raise mismatch(str(err)) from None

    if patch_size is None:
        t = tile(1, 1)[0]  # the time axis alone (a 1 px patch tiles any frame): the patch needs t
        if num_tokens % t:
            raise mismatch(f"{num_tokens} tokens are not a multiple of the {t} time steps")
        side = math.isqrt(height * width // (num_tokens // t)) if num_tokens else 0
        if side < 1 or side * side * num_tokens != height * width * t:
            raise mismatch("no square patch gives that many tokens")
        patch = (side, side)
    else:
        patch = to_pair(patch_size)
    grid = tile(*patch)
    if grid[0] * grid[1] * grid[2] != num_tokens:
        raise mismatch(f"the grid {grid} holds {grid[0] * grid[1] * grid[2]} tokens")
    return grid


class TubeletEmbed(nn.Module):
    """Non-overlapping 3-D patch embedding (VideoMAE, Tong et al., 2022, Sec. 3.3).

    A ``Conv3d`` whose kernel equals its stride, so each ``tubelet x patch x patch`` cube becomes
    one token. The parameter names (``proj.weight``, ``proj.bias``) are VideoMAE's.

    Shape legend: ``b`` batch, ``c`` channels, ``t`` frames, ``h``/``w`` pixels; ``n`` tokens
    ``= (t / tubelet) * (h / patch) * (w / patch)``, ``d`` embedding width.

    Args:
        patch_size: spatial patch side, or ``(height, width)``.
        tubelet_size: frames per tubelet.
        in_chans: input channels.
        embed_dim: token width.
        bias: learn a bias (VideoMAE does; CLIP and ViCLIP's ``conv1`` does not).
    """

    def __init__(
        self,
        patch_size: int | tuple[int, int] = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        bias: bool = True,
    ):
        super().__init__()
        self.patch_size = to_pair(patch_size)
        self.tubelet_size = int(tubelet_size)
        self.in_chans = in_chans
        kernel = (self.tubelet_size, *self.patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel, bias=bias)

    def grid_size(self, frames: int, height: int, width: int) -> Grid:
        """Token grid ``(t', h', w')`` for a clip of the given size.

        Raises:
            ValueError: naming each size that is not a multiple of the tubelet or patch size.
        """
        return tile_grid(frames, height, width, self.tubelet_size, *self.patch_size)

    def forward(self, video: Tensor) -> Tensor:
        """Embed a clip.

        Args:
            video: ``[b, c, t, h, w]`` clip.

        Returns:
            ``[b, n, d]`` tokens in ``(t h w)`` order.
        """
        if video.ndim != 5 or video.shape[1] != self.in_chans:
            raise ValueError(
                f"expected a video [batch, {self.in_chans}, frames, height, width], "
                f"got shape {tuple(video.shape)}"
            )
        self.grid_size(*video.shape[2:])
        return rearrange(self.proj(video), "b d t h w -> b (t h w) d")
