"""VideoTextModel: a video tower and a text tower projected into one space (ViCLIP / InternVideo).

The dual encoder of CLIP (Radford et al., 2021) applied to video as ViCLIP (Wang et al., 2023,
"InternVid: A Large-scale Video-Text Dataset for Multimodal Understanding and Generation",
Sec. 4) and InternVideo's contrastive branch (Wang et al., 2022) train it:

- the video tower is a :class:`~vidlit.backbones.VideoViT` (mean-pooled tokens are the clip
  feature) or ViCLIP's CLIP-style tower (``create_backbone("viclip_base_patch16")``: the class
  token after ``ln_post``); during training each clip keeps a random subset of its tokens
  (ViCLIP drops 90%, FLIP-style, Li et al., 2023), which makes a step several times cheaper;
  evaluation encodes every token;
- the text tower is a Hugging Face ``AutoModel`` (:mod:`vidlit.backbones.text`; by default the
  offline all-MiniLM-L6-v2, mean-pooled over real tokens) or CLIP's causal text transformer
  (``"clip_b16"``, ``"clip_l14"``: :mod:`vidlit.backbones.clip_text`, the end-token feature),
  optionally frozen;
- linear projections (no bias, as CLIP) map both into a shared ``proj_dim`` space where the
  embeddings are L2-normalized; a learned inverse temperature, initialized at ``1 / 0.07`` and
  clipped at 100, scales the cosine similarities in the loss
  (:func:`~vidlit.layers.contrastive.contrastive_loss`).

The two projections hold CLIP's ``proj`` / ``text_projection`` (``video_proj.weight = proj.T``), so
the released ViCLIP weights load as a whole: :func:`vidlit.backbones.load_viclip_checkpoint`
(:mod:`vidlit.backbones.viclip`).

>>> model = VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=32)
>>> v = model.encode_video(torch.randn(2, 3, 8, 32, 32))        # [2, 32], unit norm
>>> t = model.encode_text(["a red square moving left", "a blue circle moving up"])
>>> model.similarity(v, t).shape                                  # cosine, [2, 2]
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidlit.backbones._pretrained import PretrainedMixin, architecture_of
from vidlit.backbones.text import create_text_encoder
from vidlit.layers.contrastive import MAX_LOGIT_SCALE, clip_logit_scale

__all__ = ["VideoTextModel", "VideoTextOutput", "random_keep_indices"]


class VideoTextOutput(NamedTuple):
    """What :meth:`VideoTextModel.forward` returns.

    Attributes:
        video: ``[b, proj_dim]`` L2-normalized video embeddings.
        text: ``[b, proj_dim]`` L2-normalized text embeddings.
        logit_scale: scalar inverse temperature (exponentiated, clamped, float32).
    """

    video: Tensor
    text: Tensor
    logit_scale: Tensor


def random_keep_indices(
    batch_size: int,
    num_tokens: int,
    drop_ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Indices of the tokens each clip keeps under random token dropping.

    Every clip keeps its own uniformly random ``max(1, round((1 - drop_ratio) * n))`` tokens,
    sorted ascending (ViCLIP / FLIP's random masking, unlike VideoMAE's tube mask: contrastive
    learning has no reconstruction target that a neighbouring frame could leak).

    Returns:
        ``[b, n_keep]`` int64 indices for ``VideoViT(video, visible_idx=...)``.
    """
    if not 0 <= drop_ratio < 1:
        raise ValueError(f"drop_ratio must be in [0, 1), got {drop_ratio}")
    keep = max(1, round((1 - drop_ratio) * num_tokens))
    source = generator.device if generator is not None else device
    order = torch.rand(batch_size, num_tokens, generator=generator, device=source).argsort(dim=1)
    return order[:, :keep].sort(dim=1).values.to(device)


class VideoTextModel(nn.Module, PretrainedMixin):
    """Dual video-text encoder with a shared embedding space (ViCLIP).

    Plain PyTorch; :class:`vidlit.tasks.video_text.VideoTextPretrain` trains it with Lightning.

    Args:
        video: the video tower, a :class:`~vidlit.backbones.VideoViT` or ViCLIP's CLIP-style tower
            (or any module called as ``video(clip, output="pooled", visible_idx=...)`` with
            ``embed_dim``, ``patch_embed``); in YAML ``class_path: vidlit.backbones.create_backbone``.
        text: a text tower name for :func:`~vidlit.backbones.text.create_text_encoder`
            (``"minilm"``, ``"text_test"``, ``"clip_b16"``, ``"clip_l14"``, ``"clip_test"`` or a local
            Hugging Face folder), or a built :class:`~vidlit.backbones.text.TextEncoder` /
            :class:`~vidlit.backbones.clip_text.CLIPTextEncoder`.
        proj_dim: width of the shared embedding space (ViCLIP-B/16: 512, ViCLIP-L/14: 768).
        drop_ratio: fraction of video tokens dropped per clip in training mode (ViCLIP: 0.9);
            evaluation mode always encodes every token.
        freeze_text: keep the text tower's weights fixed (its projection still learns).
        text_max_length: captions are truncated to this many tokens (a CLIP tower's context length:
            ViCLIP's is 32).
        init_temperature: initial softmax temperature (CLIP: 0.07, i.e. a logit scale of 14.3).
        max_logit_scale: the learned logit scale is clipped to this (CLIP: 100).
        learn_temperature: learn the temperature (CLIP) or keep it fixed.

    Attributes:
        video: the video tower (what :class:`~vidlit.tasks.ExportBackbone` exports).
        text: the text tower (``TextEncoder`` or ``CLIPTextEncoder``).
        video_proj: ``Linear(video.embed_dim, proj_dim, bias=False)``.
        text_proj: ``Linear(text.embed_dim, proj_dim, bias=False)``.
        logit_scale: log of the inverse temperature (a 0-d parameter, excluded from weight decay).
    """

    def __init__(
        self,
        video: nn.Module,
        text: str | nn.Module = "minilm",
        proj_dim: int = 512,
        drop_ratio: float = 0.9,
        freeze_text: bool = False,
        text_max_length: int = 32,
        init_temperature: float = 0.07,
        max_logit_scale: float = MAX_LOGIT_SCALE,
        learn_temperature: bool = True,
    ):
        super().__init__()
        if not 0 <= drop_ratio < 1:
            raise ValueError(f"drop_ratio must be in [0, 1), got {drop_ratio}")
        if not (init_temperature > 0 and 1 / init_temperature <= max_logit_scale):
            raise ValueError(
                f"init_temperature must be positive with 1 / init_temperature <= max_logit_scale "
                f"({max_logit_scale}), got {init_temperature}"
            )
        if proj_dim < 1:
            raise ValueError(f"proj_dim must be positive, got {proj_dim}")
        for attr in ("embed_dim", "patch_embed"):
            if not hasattr(video, attr):
                raise ValueError(
                    f"video tower {type(video).__name__} has no {attr!r}: VideoTextModel needs a "
                    "VideoViT-like encoder (e.g. vidlit.backbones.create_backbone, a vit_* or viclip_* name)"
                )
        if isinstance(text, str):
            text = create_text_encoder(text, max_length=text_max_length, freeze=freeze_text)
        elif freeze_text and not text.freeze:
            text.freeze = True
            text._apply_freeze()  # TextTower's: no gradients, eval mode
        self.video = video
        self.text = text
        self.proj_dim = proj_dim
        self.init_temperature = init_temperature
        self.drop_ratio = drop_ratio
        self.max_logit_scale = max_logit_scale
        self.video_proj = nn.Linear(video.embed_dim, proj_dim, bias=False)
        self.text_proj = nn.Linear(text.embed_dim, proj_dim, bias=False)
        # CLIP initializes the projections with std width^-0.5
        nn.init.normal_(self.video_proj.weight, std=video.embed_dim**-0.5)
        nn.init.normal_(self.text_proj.weight, std=text.embed_dim**-0.5)
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(1 / init_temperature)), requires_grad=learn_temperature
        )

    training_only_args = frozenset({"drop_ratio", "freeze_text", "init_temperature", "learn_temperature"})

    def pretrained_config(self) -> dict[str, Any]:
        """Constructor arguments for :meth:`save_pretrained`: the towers as nested configs.

        ``video`` is ``{"architecture": ..., "config": ...}`` of the video tower (a
        :class:`~vidlit.backbones._pretrained.PretrainedMixin`, e.g. VideoViT); ``text`` the
        text tower's arguments (:func:`~vidlit.backbones.text.create_text_encoder` rebuilds it).

        Raises:
            NotImplementedError: for a video tower that cannot describe itself.
        """
        if not isinstance(self.video, PretrainedMixin):
            raise NotImplementedError(
                f"video tower {type(self.video).__name__} has no pretrained_config(): save_pretrained needs "
                "a vidlit backbone (PretrainedMixin)"
            )
        video = {"architecture": type(self.video).architecture, "config": self.video.pretrained_config()}
        return {
            "video": video,
            "text": self.text.pretrained_config(),
            "proj_dim": self.proj_dim,
            "drop_ratio": self.drop_ratio,
            "freeze_text": self.text.freeze,
            "text_max_length": self.text.max_length,
            "init_temperature": self.init_temperature,
            "max_logit_scale": self.max_logit_scale,
            "learn_temperature": self.logit_scale.requires_grad,
        }

    @classmethod
    def architecture_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The config without training-only arguments, the video tower's and text freezing included."""
        config = super().architecture_config(config)
        if isinstance(config.get("video"), dict) and "config" in config["video"]:
            video_arch, video_config = architecture_of(config["video"], "config.json: key 'video'")
            config["video"] = {**config["video"], "config": video_arch.architecture_config(video_config)}
        if isinstance(config.get("text"), dict):
            config["text"] = {k: v for k, v in config["text"].items() if k != "freeze"}
        return config

    @classmethod
    def from_pretrained_config(cls, config: dict[str, Any]) -> VideoTextModel:
        """Build both towers and the projections from :meth:`pretrained_config`'s arguments."""
        config = dict(config)
        video_arch, video_config = architecture_of(config.pop("video", None), "config.json: key 'video'")
        text = create_text_encoder(**config.pop("text"))
        return cls(video_arch.from_pretrained_config(video_config), text, **config)

    @property
    def embed_dim(self) -> int:
        """Width of the shared space (``proj_dim``)."""
        return self.proj_dim

    def keep_indices(self, video: Tensor, generator: torch.Generator | None = None) -> Tensor | None:
        """Token indices each clip keeps in this forward pass; None (all tokens) in eval mode."""
        if not self.training or self.drop_ratio == 0:
            return None
        t, h, w = self.video.patch_embed.grid_size(*video.shape[2:])
        return random_keep_indices(video.shape[0], t * h * w, self.drop_ratio, generator, video.device)

    def video_features(self, video: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Un-normalized, un-projected ``[b, embed_dim]`` clip features (dropped tokens in training)."""
        return self.video(video, output="pooled", visible_idx=self.keep_indices(video, generator))

    def encode_video(self, video: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Embed clips.

        Args:
            video: ``[b, 3, t, h, w]`` float clips, normalized as the data module normalizes them.
            generator: randomness of the token dropping (training mode only).

        Returns:
            ``[b, proj_dim]`` L2-normalized embeddings (float32 under autocast too).
        """
        return F.normalize(self.video_proj(self.video_features(video, generator)).float(), dim=-1)

    def encode_text(self, texts: list[str] | tuple[str, ...]) -> Tensor:
        """Embed captions: ``[b, proj_dim]`` L2-normalized (float32)."""
        if isinstance(texts, str):
            raise TypeError("encode_text takes a list of strings, not one string")
        pooled = self.text.encode(list(texts)).pooled
        return F.normalize(self.text_proj(pooled).float(), dim=-1)

    def scale(self) -> Tensor:
        """The clamped, exponentiated logit scale (inverse temperature), float32."""
        return clip_logit_scale(self.logit_scale, self.max_logit_scale)

    @staticmethod
    def similarity(video: Tensor, text: Tensor) -> Tensor:
        """Cosine similarity ``[num_videos, num_texts]`` (float32) of embeddings from ``encode_*``."""
        with torch.autocast(video.device.type, enabled=False):
            return F.normalize(video.float(), dim=-1) @ F.normalize(text.float(), dim=-1).T

    def forward(
        self, video: Tensor, texts: list[str] | tuple[str, ...], generator: torch.Generator | None = None
    ) -> VideoTextOutput:
        """Embed paired clips and captions (``video[i]`` goes with ``texts[i]``)."""
        if video.shape[0] != len(texts):
            raise ValueError(f"{video.shape[0]} clips but {len(texts)} captions")
        return VideoTextOutput(self.encode_video(video, generator), self.encode_text(texts), self.scale())
