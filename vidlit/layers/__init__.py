"""Reusable blocks: attention, tubelet embedding, position embeddings, the temporal pyramid,
the audio-visual pyramid, contrastive losses and set matching."""

from vidlit.layers.av_pyramid import MMPyramid, PyramidUnit
from vidlit.layers.contrastive import all_gather_with_grad, contrastive_loss
from vidlit.layers.matching import HungarianMatcher
from vidlit.layers.tubelet import token_grid

__all__ = [
    "HungarianMatcher",
    "MMPyramid",
    "PyramidUnit",
    "all_gather_with_grad",
    "contrastive_loss",
    "token_grid",
]
