"""CLIP's text tower (Radford et al., 2021), as ViCLIP uses it (Wang et al., 2023, "InternVid", Sec. 4).

A causal transformer over CLIP's byte-pair tokens: token + positional embedding, pre-LN residual
blocks (``nn.MultiheadAttention`` with a causal mask, QuickGELU MLPs), ``ln_final``, and the
sentence feature taken at the end-of-text token (the highest token id, CLIP's "EOT pooling").
The module is open_clip's ``TextTransformer`` without its projection, so the weights use the key
layout that OpenAI CLIP, open_clip and ViCLIP's ``text_encoder.*`` share::

    token_embedding.weight  positional_embedding  transformer.resblocks.{i}.{ln_1, attn, ln_2, mlp}
    ln_final.{weight, bias}  text_projection

``text_projection`` is not part of the tower: :class:`~vidlit.backbones.VideoTextModel` holds it
as ``text_proj`` (``text_proj.weight = text_projection.T``), as it does for every text tower.

>>> text = create_text_encoder("clip_test")
>>> out = text.encode(["a red square moves left"])
>>> out.tokens.shape, out.mask.shape, out.pooled.shape   # [B, L, C], [B, L], [B, C]

Names (sizes as data, :data:`CLIP_TEXT_SIZES`): ``"clip_b16"`` is the text tower of CLIP ViT-B/16
(width 512, 12 layers, 8 heads), ``"clip_l14"`` that of CLIP ViT-L/14 (768, 12, 12; ViCLIP-L's),
``"clip_test"`` a tiny one for tests. All use CLIP's tokenizer (open_clip's ``SimpleTokenizer``,
vocabulary 49408). ``max_length`` is the context length, i.e. the rows of
``positional_embedding``: CLIP's is 77, ViCLIP's 32 (it keeps the first 32 rows of CLIP's).
Captions are padded to the longest in the batch, not to the context: the causal mask makes the
features of a token independent of what follows it, so the result is the same and shorter.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from vidlit.backbones._pretrained import check_state_dict
from vidlit.backbones._text_output import TextOutput, TextTower

__all__ = [
    "CLIP_CONTEXT_LENGTH",
    "CLIP_TEXT_SIZES",
    "CLIP_VOCAB_SIZE",
    "CLIPTextEncoder",
    "clip_text_size_for_width",
    "clip_tokenizer",
]

CLIP_VOCAB_SIZE = 49408
CLIP_CONTEXT_LENGTH = 77

# width / layers / heads of each named size (open_clip's model configs, text_cfg)
CLIP_TEXT_SIZES: dict[str, dict[str, int]] = {
    "clip_b16": {"width": 512, "layers": 12, "heads": 8},
    "clip_l14": {"width": 768, "layers": 12, "heads": 12},
    "clip_test": {"width": 32, "layers": 2, "heads": 2},
}


@functools.lru_cache(maxsize=1)
def clip_tokenizer() -> Any:
    """CLIP's byte-pair tokenizer (open_clip's ``SimpleTokenizer``; built once per process).

    Lower-cases and cleans the text, adds ``<|startoftext|>`` / ``<|endoftext|>``, pads with 0 and
    truncates as OpenAI CLIP and ViCLIP do (the last kept token becomes ``<|endoftext|>``).
    """
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def clip_text_size_for_width(width: int) -> str:
    """The named size with this width (what a checkpoint's ``ln_final.weight`` length tells).

    Raises:
        ValueError: for a width no named size has.
    """
    for name, size in CLIP_TEXT_SIZES.items():
        if size["width"] == width:
            return name
    known = ", ".join(f"{n} ({s['width']})" for n, s in CLIP_TEXT_SIZES.items())
    raise ValueError(f"no CLIP text size of width {width}; known: {known}")


class CLIPTextEncoder(TextTower):
    """CLIP's causal text transformer with its tokenizer; the text tower of ViCLIP.

    Satisfies the interface :class:`~vidlit.backbones.text.TextEncoder` has (``encode``,
    ``tokenize``, ``embed_dim``, ``freeze``, ``max_length``, ``pretrained_config``), so
    :class:`~vidlit.backbones.VideoTextModel` and the heads that read language take either.

    Args:
        name: a size from :data:`CLIP_TEXT_SIZES` (``"clip_b16"``, ``"clip_l14"``, ``"clip_test"``).
        max_length: context length: rows of the positional embedding; longer captions are truncated
            to it (CLIP: 77, ViCLIP: 32).
        freeze: keep the weights fixed (no gradients, always in eval mode).
        seed: seed of the random initialization (open_clip's), so two builds are equal.
        width: overrides the size's width.
        layers: overrides the size's depth.
        heads: overrides the size's head count.
        mlp_ratio: MLP hidden width over ``width`` (CLIP: 4).
        quick_gelu: QuickGELU MLPs (OpenAI CLIP, and ViCLIP's code for every size); ``False``
            for ``nn.GELU``, what open_clip's LAION-trained checkpoints use.

    Attributes:
        model: the open_clip ``TextTransformer`` (no projection).
        embed_dim: width of the token features and of ``pooled``.
    """

    def __init__(
        self,
        name: str = "clip_b16",
        max_length: int = CLIP_CONTEXT_LENGTH,
        freeze: bool = False,
        seed: int = 0,
        width: int | None = None,
        layers: int | None = None,
        heads: int | None = None,
        mlp_ratio: float = 4.0,
        quick_gelu: bool = True,
    ) -> None:
        super().__init__()
        from open_clip.transformer import QuickGELU, TextTransformer

        if name not in CLIP_TEXT_SIZES:
            raise ValueError(f"unknown CLIP text size {name!r}; known: {', '.join(CLIP_TEXT_SIZES)}")
        if max_length < 2:
            raise ValueError(f"max_length must hold at least the start and end tokens, got {max_length}")
        overrides = {"width": width, "layers": layers, "heads": heads}
        size = {**CLIP_TEXT_SIZES[name], **{k: v for k, v in overrides.items() if v is not None}}
        self.name = name
        self.max_length = max_length
        self.freeze = freeze
        self.seed = seed
        self.mlp_ratio = mlp_ratio
        self.quick_gelu = quick_gelu
        self.size = size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = TextTransformer(
                context_length=max_length,
                vocab_size=CLIP_VOCAB_SIZE,
                width=size["width"],
                heads=size["heads"],
                layers=size["layers"],
                mlp_ratio=mlp_ratio,
                output_dim=None,  # the projection lives in VideoTextModel.text_proj
                proj_type="none",
                act_layer=QuickGELU if quick_gelu else nn.GELU,
            )
        self.embed_dim: int = size["width"]
        self._apply_freeze()

    def pretrained_config(self) -> dict[str, Any]:
        """The constructor arguments (JSON), as :class:`~vidlit.backbones.VideoTextModel` saves them."""
        return {
            "name": self.name,
            "max_length": self.max_length,
            "freeze": self.freeze,
            "seed": self.seed,
            **self.size,
            "mlp_ratio": self.mlp_ratio,
            "quick_gelu": self.quick_gelu,
        }

    def tokenize(self, texts: list[str] | tuple[str, ...]) -> dict[str, Tensor]:
        """``input_ids`` and ``attention_mask`` ([B, L], padded to the longest caption) on its device."""
        if isinstance(texts, str):
            raise TypeError("tokenize takes a list of strings, not one string")
        ids = clip_tokenizer()(list(texts), context_length=self.max_length)  # [B, max_length], 0-padded
        mask = torch.arange(ids.shape[1]) <= ids.argmax(dim=1, keepdim=True)
        length = int(mask.sum(dim=1).max()) if len(ids) else 1
        device = self.model.token_embedding.weight.device
        return {"input_ids": ids[:, :length].to(device), "attention_mask": mask[:, :length].long().to(device)}

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> TextOutput:
        """Encode token ids.

        Args:
            input_ids: ``[b, l]`` CLIP token ids, ``l <= max_length``, each row with its
                ``<|endoftext|>`` (the row's highest id).
            attention_mask: ignored (accepted for the call convention of the text towers): the
                causal mask already keeps padding after the end token out of every real token.

        Returns:
            ``tokens`` after ``ln_final`` ``[b, l, c]``, ``mask`` (True up to the end token) and
            ``pooled``, the end token's features ``[b, c]`` (before CLIP's ``text_projection``).
        """
        length = input_ids.shape[1]
        if length > self.max_length:
            raise ValueError(f"{length} tokens, but the context length (max_length) is {self.max_length}")
        model = self.model
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            x = model.token_embedding(input_ids) + model.positional_embedding[:length]
            x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
            tokens = model.ln_final(x)
        end = input_ids.argmax(dim=1)  # <|endoftext|> is the highest id (CLIP)
        pooled = tokens[torch.arange(len(tokens), device=tokens.device), end]
        mask = torch.arange(length, device=input_ids.device) <= end.unsqueeze(1)
        return TextOutput(tokens=tokens, mask=mask, pooled=pooled)

    def load_clip_state_dict(
        self, state: Mapping[str, Tensor], source: str, prefix: str = "", strict: bool = True
    ) -> Tensor | None:
        """Load CLIP-layout text weights (OpenAI CLIP, open_clip, ViCLIP's ``text_encoder.*``).

        A longer ``positional_embedding`` is cut to ``max_length`` rows, as ViCLIP builds its
        32-token tower from CLIP's 77 (the first rows are the same positions).

        Args:
            state: the tower's tensors, keys without ``prefix``.
            source: the file, for messages.
            prefix: how the keys are named in the file (``"text_encoder."``), for messages.
            strict: missing or unexpected keys raise; otherwise they warn and the rest loads.

        Returns:
            ``text_projection`` (``[width, proj_dim]``), or ``None`` if the file has none.

        Raises:
            ValueError: one line naming missing and unexpected keys (with ``prefix``), a vocabulary
                or width that differs, or a positional embedding shorter than ``max_length``.
        """
        state, projection = self.check_clip_state_dict(state, source, prefix, strict)
        self.load_checked(state)
        return projection

    def check_clip_state_dict(
        self, state: Mapping[str, Tensor], source: str, prefix: str = "", strict: bool = True
    ) -> tuple[dict[str, Tensor], Tensor | None]:
        """Run :meth:`load_clip_state_dict`'s checks and load nothing.

        Returns:
            the tensors that method loads (:meth:`load_checked` loads them), and ``text_projection``
            (or ``None``).

        Raises:
            ValueError: as :meth:`load_clip_state_dict`.
        """
        state = dict(state)
        projection = state.pop("text_projection", None)
        positions = state.get("positional_embedding")
        if positions is not None and positions.ndim == 2:
            if positions.shape[0] < self.max_length:
                raise ValueError(
                    f"{source}: key '{prefix}positional_embedding': {positions.shape[0]} positions, "
                    f"fewer than the model's max_length {self.max_length}; build the tower with max_length="
                    f"{positions.shape[0]}"
                )
            state["positional_embedding"] = positions[: self.max_length]
        if projection is not None and (projection.ndim != 2 or projection.shape[0] != self.embed_dim):
            raise ValueError(
                f"{source}: key '{prefix}text_projection': shape {tuple(projection.shape)}, expected "
                f"[{self.embed_dim}, proj_dim]"
            )
        return check_state_dict(self.model, state, source, strict, prefix), projection

    def load_checked(self, loadable: Mapping[str, Tensor]) -> None:
        """Load the tensors :meth:`check_clip_state_dict` returned; its checks are not run again.

        What a caller runs once every check it needs has passed (so that an error loads nothing).
        """
        self.model.load_state_dict(loadable, strict=False)  # the missing keys were reported by the check
