"""Audio-visual video parsing (LLP): an MM-Pyramid encoder with HAN's attentive MIL head.

Shape legend: ``b`` videos, ``t`` one-second segments, ``m`` modalities (audio, visual),
``c`` channels, ``k`` event classes.

Batches (see :func:`vidlit.data.llp.collate_llp`) carry ``audio`` ``[b, t, Ca]``, ``visual``
``[b, t, Cv]`` (the head's ``features`` when there is no backbone), ``mask`` ``[b, t]``,
video-level ``labels`` ``[b, k]`` and ``targets`` in :class:`~vidlit.metrics.avvp.AVVPMetrics`'
format. Training uses the video-level labels only (weak supervision).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torchmetrics import MetricCollection

from vidlit.formats.llp import LLPBatch
from vidlit.heads.base import TaskHead
from vidlit.layers.av_pyramid import DEFAULT_DILATIONS, MMPyramid
from vidlit.metrics.avvp import AVVPMetrics


class AVParsingHead(TaskHead):
    """Weakly-supervised audio-visual video parsing: MM-Pyramid + HAN's attentive MIL pooling.

    The model of Yu et al., "MM-Pyramid: Multimodal Pyramid Attentional Network for
    Audio-Visual Event Localization and Video Parsing" (ACM MM 2022) for LLP: audio and visual
    segment features are projected to ``embed_dim``, fused across scales and modalities by
    :class:`~vidlit.layers.av_pyramid.MMPyramid`, and pooled by the attentive multimodal MIL of
    the Hybrid Attention Network (HAN; Tian et al., "Unified Multisensory Perception:
    Weakly-Supervised Audio-Visual Video Parsing", ECCV 2020, Sec. 4; official ``MMIL_Net``):

    - ``frame_prob = sigmoid(fc_prob(x))`` ``[b, t, m, k]`` for each segment and modality;
    - ``frame_att = softmax_t(fc_frame_att(x))`` (temporal attention, padded segments masked)
      and ``av_att = softmax_m(fc_av_att(x))`` (modality attention);
    - video probability ``P = sum_t sum_m frame_att * av_att * frame_prob``; the audio and
      visual video-level probabilities ``P_a = sum_t frame_att[:, :, 0] * frame_prob[:, :, 0]``
      (and ``P_v`` likewise) feed the modality losses. ``P_a`` and ``P_v`` are convex
      combinations of segment probabilities; the weights of ``P`` need not sum to one (the
      temporal softmax is per modality), so ``P`` can exceed 1, which is why the official
      code clamps every probability before its BCE.

    Loss (the official ``train``): ``BCE(P, y) + BCE(P_a, y_a) + BCE(P_v, y_v)`` with
    probabilities clamped to ``[1e-7, 1 - 1e-7]`` and ``y_m = (1 - eps_m) y + eps_m / 2``; the
    official code smooths only the visual labels (``v = 0.9``: ``visual_label_smoothing=0.1``,
    ``audio_label_smoothing=0``), since a video's labels are more often audible than visible.

    The official visual input is ``fc_fusion([fc_v(avg_8(res152)); fc_st(r2plus1d)])``; here the
    data module averages the ResNet frames per segment and concatenates the R(2+1)D features,
    and one linear layer projects them (the same family of functions: linear maps compose).
    With a backbone, its ``[b, t', C]`` temporal features are average-pooled to the ``t``
    audio segments when ``t' != t``.

    Args:
        in_dim: width of the visual stream (linked from the data module's ``feature_dim`` or
            the backbone's ``embed_dim``).
        num_classes: event classes (25; linked from the data module).
        audio_dim: width of ``batch["audio"]`` (VGGish: 128).
        embed_dim: width of the encoder (official: 512).
        num_levels: MM-Pyramid levels.
        dilations: dilation of each level.
        window: attention window of every level; None: ``2 * dilation + 1`` per level.
        num_heads: attention heads.
        dropout: dropout inside MM-Pyramid.
        audio_label_smoothing: ``eps_a`` of the audio video-level target (official: 0).
        visual_label_smoothing: ``eps_v`` of the visual video-level target (official: 0.1).
        threshold: probability threshold of the metric's predictions (official: 0.5).
    """

    input: ClassVar[str] = "visual"
    feature_layout: ClassVar[str] = "temporal"

    def __init__(
        self,
        in_dim: int,
        num_classes: int = 25,
        audio_dim: int = 128,
        embed_dim: int = 512,
        num_levels: int = 4,
        dilations: Sequence[int] = DEFAULT_DILATIONS,
        window: int | None = None,
        num_heads: int = 4,
        dropout: float = 0.1,
        audio_label_smoothing: float = 0.0,
        visual_label_smoothing: float = 0.1,
        threshold: float = 0.5,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        for name, eps in (("audio", audio_label_smoothing), ("visual", visual_label_smoothing)):
            if not 0.0 <= eps < 1.0:
                raise ValueError(f"{name}_label_smoothing must lie in [0, 1), got {eps}")
        self.in_dim, self.audio_dim, self.num_classes = in_dim, audio_dim, num_classes
        self.audio_label_smoothing = audio_label_smoothing
        self.visual_label_smoothing = visual_label_smoothing
        self.threshold = threshold
        self.audio_proj = nn.Linear(audio_dim, embed_dim)
        self.visual_proj = nn.Linear(in_dim, embed_dim)
        self.encoder = MMPyramid(
            embed_dim,
            num_levels=num_levels,
            dilations=dilations,
            window=window,
            num_heads=num_heads,
            dropout=dropout,
        )
        self.fc_prob = nn.Linear(embed_dim, num_classes)
        self.fc_frame_att = nn.Linear(embed_dim, num_classes)
        self.fc_av_att = nn.Linear(embed_dim, num_classes)

    def forward(self, features: Tensor, batch: LLPBatch) -> dict[str, Tensor]:
        """Segment-level and video-level probabilities.

        Args:
            features: ``[b, t', Cv]`` visual features (``batch["visual"]`` or a backbone's).
            batch: holds ``audio`` ``[b, t, Ca]`` and optionally ``mask`` ``[b, t]``.

        Returns:
            ``video_prob``, ``audio_video_prob``, ``visual_video_prob`` ``[b, k]``;
            ``frame_prob`` ``[b, t, m, k]`` (``m`` = 0 audio, 1 visual); ``mask`` ``[b, t]``.
        """
        audio = batch["audio"]
        if audio.ndim != 3 or audio.shape[-1] != self.audio_dim:
            raise ValueError(f"batch['audio'] must be [b, t, {self.audio_dim}], got {tuple(audio.shape)}")
        if features.ndim != 3 or features.shape[-1] != self.in_dim or features.shape[0] != audio.shape[0]:
            raise ValueError(
                f"{type(self).__name__} expects visual features [b={audio.shape[0]}, t, {self.in_dim}], "
                f"got {tuple(features.shape)}"
            )
        t = audio.shape[1]
        mask = batch.get("mask")
        if mask is None:
            mask = torch.ones(audio.shape[:2], dtype=torch.bool, device=audio.device)
        if features.shape[1] != t:  # a backbone's own temporal resolution -> the audio segments
            features = rearrange(
                F.adaptive_avg_pool1d(rearrange(features, "b t c -> b c t"), t), "b c t -> b t c"
            )
        a, v = self.encoder(self.audio_proj(audio), self.visual_proj(features), mask)
        x = torch.stack((a, v), dim=2)  # b t m c
        frame_prob = torch.sigmoid(self.fc_prob(x))
        att_logits = self.fc_frame_att(x).masked_fill(~mask[:, :, None, None], float("-inf"))
        frame_att = att_logits.softmax(dim=1)
        av_att = self.fc_av_att(x).softmax(dim=2)
        temporal_prob = frame_att * frame_prob  # b t m k
        return {
            "video_prob": (temporal_prob * av_att).sum(dim=(1, 2)),
            "audio_video_prob": temporal_prob[:, :, 0].sum(dim=1),
            "visual_video_prob": temporal_prob[:, :, 1].sum(dim=1),
            "frame_prob": frame_prob,
            "mask": mask,
        }

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """HAN's weakly-supervised loss from the video-level ``batch["labels"]`` only.

        Returns:
            ``loss`` and its parts ``video``, ``audio`` and ``visual`` (BCE of each video-level
            probability against its, possibly smoothed, labels).
        """
        labels = batch["labels"]
        if labels.numel() == 0:
            return {"loss": outputs["video_prob"].sum() * 0.0}
        # BCE on probabilities is unsafe under autocast: compute it in float32
        with torch.autocast(device_type=labels.device.type, enabled=False):
            y = labels.float()
            parts = {}
            for name, key, eps in (
                ("video", "video_prob", 0.0),
                ("audio", "audio_video_prob", self.audio_label_smoothing),
                ("visual", "visual_video_prob", self.visual_label_smoothing),
            ):
                prob = outputs[key].float().clamp(1e-7, 1 - 1e-7)
                parts[name] = F.binary_cross_entropy(prob, (1 - eps) * y + eps * 0.5)
        return {"loss": parts["video"] + parts["audio"] + parts["visual"], **parts}

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        """One ``{"video_id", "video_prob" [k], "audio_prob" [t, k], "visual_prob" [t, k]}`` per video.

        Probabilities, not decisions: :class:`~vidlit.metrics.avvp.AVVPMetrics` applies the
        official threshold and the filtering by the video-level prediction.
        """
        frame_prob = outputs["frame_prob"].detach().float()
        video_prob = outputs["video_prob"].detach().float()
        lengths = outputs["mask"].sum(dim=1).tolist()
        return [
            {
                "video_id": video_id,
                "video_prob": video_prob[i],
                "audio_prob": frame_prob[i, :n, 0],
                "visual_prob": frame_prob[i, :n, 1],
            }
            for i, (video_id, n) in enumerate(zip(batch["video_ids"], lengths))
        ]

    def metrics(self) -> MetricCollection:
        """The official AVVP F-scores; ``segment_type_av`` (segment-level Type@AV) is the headline."""
        return MetricCollection({"avvp": AVVPMetrics(num_classes=self.num_classes, threshold=self.threshold)})
