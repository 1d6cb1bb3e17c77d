"""Tubelet embedding: cut a clip into ``tubelet x patch x patch`` cubes and project each to a token."""

from __future__ import annotations

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
    """

    def __init__(
        self,
        patch_size: int | tuple[int, int] = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
    ):
        super().__init__()
        self.patch_size = to_pair(patch_size)
        self.tubelet_size = int(tubelet_size)
        self.in_chans = in_chans
        kernel = (self.tubelet_size, *self.patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def grid_size(self, frames: int, height: int, width: int) -> Grid:
        """Token grid ``(t', h', w')`` for a clip of the given size.

        Raises:
            ValueError: if a size is not a multiple of the tubelet or patch size.
        """
        ph, pw = self.patch_size
        if frames % self.tubelet_size or height % ph or width % pw:
            raise ValueError(
                f"clip of {frames} frames at {height}x{width} px does not tile into "
                f"{self.tubelet_size}x{ph}x{pw} tubelets: frames must be a multiple of "
                f"{self.tubelet_size}, height of {ph} and width of {pw}"
            )
        return frames // self.tubelet_size, height // ph, width // pw

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
