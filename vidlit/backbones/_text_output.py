"""What every text tower shares: its output type and freezing (its own module so each tower imports it
without the others)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

__all__ = ["TextOutput", "TextTower"]


@dataclass
class TextOutput:
    """What a text tower returns for a batch of strings."""

    tokens: Tensor  # [B, L, C] last hidden states
    mask: Tensor  # [B, L] bool, True on real (non-padding) tokens
    pooled: Tensor  # [B, C] the sentence feature, unnormalized: MiniLM's token mean, CLIP's end-of-text token


class TextTower(nn.Module):
    """Base of the text towers: a wrapped ``model`` that ``freeze`` keeps fixed, and :meth:`encode`.

    A subclass sets ``self.model`` and ``self.freeze``, calls :meth:`_apply_freeze` once the model is
    built, and defines ``tokenize(texts) -> dict`` and ``forward(**tokens) -> TextOutput`` (which
    records no gradients through a frozen model).
    """

    model: nn.Module
    freeze: bool

    def _apply_freeze(self) -> None:
        # frozen: no gradients, and eval mode so dropout stays off
        if self.freeze:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> TextTower:
        super().train(mode)
        if self.freeze:  # a frozen model stays in eval mode whatever its parent's mode
            self.model.eval()
        return self

    def encode(self, texts: list[str] | tuple[str, ...]) -> TextOutput:
        """Tokenize and encode a batch of strings."""
        return self(**self.tokenize(texts))
