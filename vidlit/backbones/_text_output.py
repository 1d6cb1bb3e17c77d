"""The output type every text tower returns (its own module so each tower imports it without the others)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["TextOutput"]


@dataclass
class TextOutput:
    """What a text tower returns for a batch of strings."""

    tokens: Tensor  # [B, L, C] last hidden states
    mask: Tensor  # [B, L] bool, True on real (non-padding) tokens
    pooled: Tensor  # [B, C] the sentence feature, unnormalized: MiniLM's token mean, CLIP's end-of-text token
