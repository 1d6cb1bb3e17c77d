"""TubeletEmbed.grid_size and token_grid share one tiling check (vidlit.layers.tubelet.tile_grid)."""

import pytest
import torch

from vidlit.layers.tubelet import TubeletEmbed, token_grid


@pytest.mark.parametrize(
    ("patch", "tubelet", "clip"),
    [(8, 2, (8, 32, 32)), ((8, 16), 2, (12, 48, 64)), (16, 4, (16, 32, 48))],
)
def test_token_grid_agrees_with_the_embedding(patch, tubelet, clip):
    embed = TubeletEmbed(patch, tubelet, embed_dim=4)
    tokens = embed(torch.zeros(1, 3, *clip))
    grid = embed.grid_size(*clip)
    assert tokens.shape[1] == grid[0] * grid[1] * grid[2]
    assert token_grid(tokens.shape[1], (1, 3, *clip), tubelet, patch) == grid
    if isinstance(patch, int):  # a square patch is derived from the token count
        assert token_grid(tokens.shape[1], (1, 3, *clip), tubelet) == grid


@pytest.mark.parametrize(
    ("clip", "reasons"),
    [
        ((7, 32, 32), ["7 frames are not a multiple of the tubelet (frames must be a multiple of 2)"]),
        ((8, 30, 32), ["30 px of height are not a multiple of the patch (height must be a multiple of 8)"]),
        (
            (7, 32, 36),
            [
                "7 frames are not a multiple of the tubelet (frames must be a multiple of 2)",
                "36 px of width are not a multiple of the patch (width must be a multiple of 8)",
            ],
        ),
    ],
)
def test_both_paths_name_every_size_that_does_not_tile(clip, reasons):
    expected = f"clip of {clip[0]} frames at {clip[1]}x{clip[2]} px does not tile: " + "; ".join(reasons)
    with pytest.raises(ValueError) as from_embed:
        TubeletEmbed(8, 2, embed_dim=4).grid_size(*clip)
    assert str(from_embed.value) == expected
    with pytest.raises(ValueError) as from_tokens:
        token_grid(64, (2, 3, *clip), 2, patch_size=8)
    # the same reason, inside token_grid's context (token count and the head's sizes)
    assert str(from_tokens.value) == (
        f"64 tokens do not lay out on a clip of {clip[0]} x {clip[1]} x {clip[2]} with tubelet_size=2, "
        f"patch_size=8: {expected}; set the head's tubelet_size and patch_size to the backbone's"
    )


def test_sizes_below_one_are_value_errors():
    with pytest.raises(ValueError, match=r"frames must be a multiple of 0"):
        token_grid(64, (1, 3, 8, 32, 32), 0)
    with pytest.raises(ValueError, match=r"height must be a multiple of 0"):
        token_grid(64, (1, 3, 8, 32, 32), 2, patch_size=(0, 8))
