"""Audio-visual event localization heads for AVE: MPN and MM-Pyramid, fully or weakly supervised.

Both heads read the official pre-extracted features of :class:`vidlit.data.ave.AVEDataModule`:
``batch["audio"]`` ``[b, t, a]`` (VGGish, the head's ``input``) and ``batch["visual"]``
``[b, t, h, w, c]`` (VGG-19 pool5 maps). The maps are reduced to one vector per segment by the
**audio-guided visual attention** of AVE (Tian et al., ECCV 2018, Sec. 4.1; MPN and MM-Pyramid
both start from it): each segment's audio feature scores the ``h * w`` positions and the map is
averaged with those weights. Pre-pooled ``[b, t, c]`` visual features skip it.

Supervision follows the batch: with ``segment_labels`` (full supervision) each head trains on
per-segment labels; without them (weak supervision, the data module leaves them out) it sees
only ``video_labels`` ``[b, k]``: segment scores are max-pooled over time to the video level and
trained with a multi-label loss against them (the AVE weakly supervised protocol, W-A+V-att).

Shape legend: ``b`` videos, ``t`` segments, ``h w`` grid, ``c`` visual channels, ``a`` audio
channels, ``d`` model width, ``k`` classes incl. background (last), ``e = k - 1`` event
categories, ``n`` bottleneck tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torchmetrics import MetricCollection

from vidlit.formats.ave import AVEBatch
from vidlit.heads.base import TaskHead
from vidlit.layers.av_pyramid import MMPyramid, WindowedAttentionLayer
from vidlit.metrics.segment_accuracy import SegmentAccuracy


class AudioGuidedSpatialAttention(nn.Module):
    """AVE's audio-guided visual attention: pool each segment's map with weights scored by its audio.

    ``z = w_h^T tanh(W_v relu(U_v v_i) + W_g relu(U_a a))``, ``alpha = softmax_i(z)``,
    ``v = sum_i alpha_i v_i`` (Tian et al., ECCV 2018, Eq. 1-2; ``att_Net`` in the official code).

    Args:
        audio_dim: audio channels.
        visual_dim: visual channels.
        hidden: width of the scoring space (512 in the official code).
    """

    def __init__(self, audio_dim: int, visual_dim: int, hidden: int = 256):
        super().__init__()
        self.audio = nn.Linear(audio_dim, hidden)
        self.visual = nn.Linear(visual_dim, hidden)
        self.score_visual = nn.Linear(hidden, hidden, bias=False)
        self.score_audio = nn.Linear(hidden, hidden, bias=False)
        self.score = nn.Linear(hidden, 1, bias=False)

    def forward(self, audio: Tensor, visual: Tensor) -> tuple[Tensor, Tensor]:
        """``[b, t, a]``, ``[b, t, h, w, c]`` -> pooled ``[b, t, c]`` and weights ``[b, t, h*w]``."""
        v = rearrange(visual, "b t h w c -> b t (h w) c")
        content = (
            self.score_visual(F.relu(self.visual(v)))
            + self.score_audio(F.relu(self.audio(audio)))[:, :, None]
        )
        alpha = self.score(torch.tanh(content)).squeeze(-1).softmax(dim=-1)
        return torch.einsum("btn,btnc->btc", alpha, v), alpha


def _projection(in_dim: int, dim: int, dropout: float) -> nn.Sequential:
    """``Linear -> ReLU (-> Dropout)``: a modality's segments to the model width."""
    return nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), *([nn.Dropout(dropout)] if dropout else []))


class _AVEHead(TaskHead):
    """What both AVE heads share: visual pooling, input checks, predictions, the segment-accuracy metric.

    Subclasses return ``{"segment_logits": [b, t, k], ...}`` from ``forward``; ``predict`` takes the
    argmax per segment.
    """

    input: ClassVar[str] = "audio"

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        audio_dim: int,
        attention_dim: int,
        dim: int,
        dropout: float = 0.0,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts events plus background and must be >= 2, got {num_classes}")
        self.in_dim = in_dim
        self.audio_dim = audio_dim
        self.num_classes = num_classes
        self.spatial = AudioGuidedSpatialAttention(audio_dim, in_dim, attention_dim)
        # both heads start by projecting each modality's segments to the model width
        self.proj_audio = _projection(audio_dim, dim, dropout)
        self.proj_visual = _projection(in_dim, dim, dropout)

    def _inputs(self, audio: Tensor, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        visual = batch.get("visual")
        name = type(self).__name__
        if visual is None:
            raise ValueError(f"{name}: the batch has no 'visual' features")
        if audio.ndim != 3 or audio.shape[-1] != self.audio_dim:
            raise ValueError(
                f"{name}: audio must be [B, T, {self.audio_dim}] (audio_dim), got {tuple(audio.shape)}"
            )
        if (
            visual.shape[:2] != audio.shape[:2]
            or visual.ndim not in (3, 5)
            or visual.shape[-1] != self.in_dim
        ):
            raise ValueError(
                f"{name}: visual must be [B, T, H, W, {self.in_dim}] or [B, T, {self.in_dim}] (in_dim) with "
                f"audio's B, T={tuple(audio.shape[:2])}, got {tuple(visual.shape)}"
            )
        if visual.ndim == 5:
            visual, _ = self.spatial(audio, visual)
        return audio, visual

    @staticmethod
    def _weak_loss(video_logits: Tensor, batch: dict[str, Any]) -> Tensor:
        # MultiLabelSoftMarginLoss of the official weakly supervised AVE code
        return F.multilabel_soft_margin_loss(video_logits, batch["video_labels"].to(video_logits.dtype))

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per video: ``{"video_id", "labels": [t] argmax class (background k - 1), "scores": [t, k]}``."""
        logits = outputs["segment_logits"].detach().float()
        scores = logits.softmax(dim=-1)
        labels = logits.argmax(dim=-1)
        return [
            {"video_id": vid, "labels": labels[i].cpu(), "scores": scores[i].cpu()}
            for i, vid in enumerate(batch["video_ids"])
        ]

    def metrics(self) -> MetricCollection:
        """AVE's official protocol: accuracy over all segments of the split, background included."""
        return MetricCollection({"acc": SegmentAccuracy(num_classes=self.num_classes)})


class MPNHead(_AVEHead):
    """MPN: Multimodal Parallel Network (Yu et al., "MPN: Multimodal Parallel Network for
    Audio-Visual Event Localization", ICME 2021).

    Two branches run in parallel on the projected audio and attended visual segments:

    - **classification** (global event category): a Multimodal Co-attention Module (MCM):
      ``layers`` x (self-attention per modality, then co-attention: audio queries visual and
      visual queries audio), averaged over time, concatenated, a linear layer to ``e`` logits.
    - **localization** (per-segment event vs background): a Multimodal Bottleneck Attention
      Module (MBAM): ``layers`` x (each modality attends jointly over its segments and ``n``
      shared bottleneck tokens, which are then averaged across modalities, so all cross-modal
      exchange squeezes through them), a linear layer on the concatenated segments to one
      event logit per segment.

    The combination: ``P(t, c) = sigmoid(l_t) * softmax(g)_c`` for event categories,
    ``P(t, bg) = 1 - sigmoid(l_t)``; ``segment_logits = log P``, so a segment is background when
    its event probability is below the largest category share. Full supervision: cross-entropy of
    the category (videos with an event) plus binary cross-entropy of event/background per
    segment. Weak supervision: ``P`` is max-pooled over time to video probabilities, trained with
    binary cross-entropy against the video labels.

    Args:
        in_dim: visual channels (linked from the data module's ``feature_dim``).
        num_classes: event categories + background (linked).
        audio_dim: audio channels (128 VGGish).
        dim: model width.
        num_heads: attention heads.
        layers: attention layers of each module.
        num_bottleneck: bottleneck tokens of MBAM.
        attention_dim: width of the audio-guided spatial attention.
        dropout: dropout in the attention layers.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        audio_dim: int = 128,
        dim: int = 256,
        num_heads: int = 4,
        layers: int = 1,
        num_bottleneck: int = 4,
        attention_dim: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__(in_dim, num_classes, audio_dim, attention_dim, dim, dropout)
        layer = dict(num_heads=num_heads, window=None, dropout=dropout)
        self.mcm = nn.ModuleList(
            nn.ModuleDict(
                {name: WindowedAttentionLayer(dim, **layer) for name in ("sa_a", "sa_v", "co_a", "co_v")}
            )
            for _ in range(layers)
        )
        self.bottleneck = nn.Parameter(torch.randn(num_bottleneck, dim) * 0.02)
        self.mbam = nn.ModuleList(
            nn.ModuleDict({name: WindowedAttentionLayer(dim, **layer) for name in ("a", "v")})
            for _ in range(layers)
        )
        self.classifier = nn.Linear(2 * dim, num_classes - 1)
        self.localizer = nn.Linear(2 * dim, 1)

    def forward(self, features: Tensor, batch: AVEBatch) -> dict[str, Tensor]:
        """``features`` = ``batch["audio"]`` ``[b, t, a]`` (+ ``batch["visual"]``) -> logits.

        Returns:
            ``category_logits`` ``[b, e]``, ``event_logits`` ``[b, t]`` and ``segment_logits``
            ``[b, t, k]`` (log-probabilities of the combined prediction).
        """
        audio, visual = self._inputs(features, batch)
        a, v = self.proj_audio(audio), self.proj_visual(visual)
        b, t, _ = a.shape
        mask = torch.ones(b, t, dtype=torch.bool, device=a.device)
        # classification branch: co-attention, then the global category
        ca, cv = a, v
        for block in self.mcm:
            ca, cv = block["sa_a"](ca, ca, mask), block["sa_v"](cv, cv, mask)
            ca, cv = block["co_a"](ca, cv, mask), block["co_v"](cv, ca, mask)
        category_logits = self.classifier(torch.cat((ca.mean(dim=1), cv.mean(dim=1)), dim=-1))
        # localization branch: modalities meet only through the bottleneck tokens
        z = self.bottleneck.expand(b, -1, -1)
        la, lv = a, v
        full = torch.ones(b, t + z.shape[1], dtype=torch.bool, device=a.device)
        for block in self.mbam:
            xa, xv = torch.cat((la, z), dim=1), torch.cat((lv, z), dim=1)
            xa, xv = block["a"](xa, xa, full), block["v"](xv, xv, full)
            la, lv = xa[:, :t], xv[:, :t]
            z = (xa[:, t:] + xv[:, t:]) / 2
        event_logits = self.localizer(torch.cat((la, lv), dim=-1)).squeeze(-1)
        log_event = F.logsigmoid(event_logits)[..., None]
        segment_logits = torch.cat(
            (
                log_event + category_logits.log_softmax(dim=-1)[:, None],
                F.logsigmoid(-event_logits)[..., None],
            ),
            dim=-1,
        )
        return {
            "category_logits": category_logits,
            "event_logits": event_logits,
            "segment_logits": segment_logits,
        }

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Full: category CE + event/background BCE. Weak (no ``segment_labels``): video-level BCE."""
        background = self.num_classes - 1
        if "segment_labels" not in batch:
            # BCE on probabilities is unsafe under autocast (CUDA refuses it): compute it in float32
            with torch.autocast(device_type=outputs["segment_logits"].device.type, enabled=False):
                video_prob = outputs["segment_logits"].float().exp().amax(dim=1).clamp(1e-6, 1 - 1e-6)
                weak = F.binary_cross_entropy(video_prob, batch["video_labels"].float())
            return {"loss": weak, "video_bce": weak.detach()}
        labels = batch["segment_labels"]
        is_event = labels != background
        event = F.binary_cross_entropy_with_logits(
            outputs["event_logits"], is_event.to(outputs["event_logits"].dtype)
        )
        # the video's category: its most frequent event class; background-only videos have none
        counts = F.one_hot(labels, self.num_classes)[..., :background].sum(dim=1)
        has_event = counts.sum(dim=-1) > 0
        logits = outputs["category_logits"]
        if has_event.any():
            category = F.cross_entropy(logits[has_event], counts[has_event].argmax(dim=-1))
        else:
            category = logits.sum() * 0.0
        return {"loss": category + event, "category_ce": category.detach(), "event_bce": event.detach()}


class MMPyramidHead(_AVEHead):
    """MM-Pyramid for AVE (Yu et al., "MM-Pyramid: Multimodal Pyramid Attentional Network for
    Audio-Visual Event Localization and Video Parsing", ACM MM 2022).

    Projected audio and attended visual segments go through :class:`vidlit.layers.av_pyramid.MMPyramid`
    (stacked pyramid units of windowed self-/cross-modal attention fused by sigmoid gates and a
    dilated conv; attention over the levels and a sigmoid-weighted fusion); the fused audio and
    visual segments are concatenated and classified into ``k`` classes (background last).
    Full supervision: cross-entropy per segment. Weak supervision: segment logits max-pooled over
    time, multi-label soft-margin loss against the video labels.

    Args:
        in_dim: visual channels (linked from the data module's ``feature_dim``).
        num_classes: event categories + background (linked).
        audio_dim: audio channels (128 VGGish).
        dim: model width.
        num_levels: pyramid units.
        dilations: dilation of each unit (official: 1, 2, 4, 8).
        num_heads: attention heads.
        attention_dim: width of the audio-guided spatial attention.
        dropout: dropout in the pyramid's attention layers.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        audio_dim: int = 128,
        dim: int = 256,
        num_levels: int = 4,
        dilations: Sequence[int] = (1, 2, 4, 8),
        num_heads: int = 4,
        attention_dim: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__(in_dim, num_classes, audio_dim, attention_dim, dim)  # no dropout on the inputs
        self.pyramid = MMPyramid(dim, num_levels, dilations, num_heads=num_heads, dropout=dropout)
        self.classifier = nn.Linear(2 * dim, num_classes)

    def forward(self, features: Tensor, batch: AVEBatch) -> dict[str, Tensor]:
        """``features`` = ``batch["audio"]`` ``[b, t, a]`` (+ ``batch["visual"]``) -> ``segment_logits``."""
        audio, visual = self._inputs(features, batch)
        a, v = self.pyramid(self.proj_audio(audio), self.proj_visual(visual))
        return {"segment_logits": self.classifier(torch.cat((a, v), dim=-1))}

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Full: per-segment cross-entropy. Weak (no ``segment_labels``): max-pooled multi-label loss."""
        logits = outputs["segment_logits"]
        if "segment_labels" not in batch:
            weak = self._weak_loss(logits.amax(dim=1), batch)
            return {"loss": weak, "video_bce": weak.detach()}
        ce = F.cross_entropy(rearrange(logits, "b t k -> (b t) k"), batch["segment_labels"].reshape(-1))
        return {"loss": ce, "segment_ce": ce.detach()}
