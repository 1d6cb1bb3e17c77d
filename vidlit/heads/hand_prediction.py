"""Ego4D Future Hand Prediction: regress both hands' positions at five future key frames.

Shape legend: ``b`` clips, ``n`` tokens, ``d`` width, ``q`` key-point queries (5 frames x 2 hands).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torchmetrics import MetricCollection

from vidlit.heads.base import TaskHead
from vidlit.metrics.hand_displacement import HANDS, KEY_FRAMES, HandDisplacement


class HandForecastHead(TaskHead):
    """Future hand positions from video tokens, for the Ego4D Future Hand Prediction benchmark.

    The Ego4D baseline (Grauman et al., CVPR 2022, Sec. I.1; ``EGO4D/forecasting``,
    ``Ego4D-Future-Hand-Prediction``) regresses 20 values, left and right hand ``(x, y)`` at the
    key frames ``pre_45``, ``pre_30``, ``pre_15``, ``pre_frame`` and ``contact_frame``, from a
    video backbone's pooled features with a SmoothL1 loss, missing hands masked out. Pooling
    throws away *where* things are, so here one learned query per key point (10) attends over
    the backbone's tokens (which carry their space-time position), and a small MLP maps each
    query to ``(x, y)``. Pooled ``[B, C]`` features are accepted too (one token).

    Outputs are in pixels of the original frame: ``(raw + 0.5) * coord_scale``, so the layers work
    at unit scale and an untrained head predicts about the frame centre when ``coord_scale`` is
    near the frame size.

    Loss: SmoothL1 with ``beta`` (5 pixels) over the annotated coordinates only (the
    baseline multiplies predictions and labels by the annotation mask).

    The batch carries ``valid [B, 5, 2]`` bool, ``hands [B, 5, 2, 2]`` pixels, ``video_ids`` and
    ``targets`` in :class:`~vidlit.metrics.hand_displacement.HandDisplacement`'s format.

    Args:
        in_dim: token width (linked from the backbone's ``embed_dim``).
        hidden: width of the query attention and MLP.
        num_heads: attention heads.
        coord_scale: pixels per unit of the raw output (about the frame size).
        beta: SmoothL1 transition point, in pixels (5 in the Ego4D baseline).
        dropout: dropout on the pooled query features.
    """

    input = "features"
    feature_layout = "tokens"

    def __init__(
        self,
        in_dim: int,
        hidden: int = 256,
        num_heads: int = 4,
        coord_scale: float = 1.0,
        beta: float = 5.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        if coord_scale <= 0 or beta < 0:
            raise ValueError(f"coord_scale must be > 0 and beta >= 0, got {coord_scale} and {beta}")
        self.in_dim = in_dim
        self.coord_scale = coord_scale
        self.beta = beta
        num_points = len(KEY_FRAMES) * len(HANDS)
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, hidden)
        self.queries = nn.Parameter(torch.randn(num_points, hidden) * 0.02)
        self.attention = nn.MultiheadAttention(hidden, num_heads, batch_first=True)
        self.mlp = nn.Sequential(
            nn.LayerNorm(hidden), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.out = nn.Linear(hidden, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: Tensor, batch: dict[str, Any]) -> Tensor:
        """Hand positions ``[B, 5, 2, 2]`` (key frame, hand left/right, x/y) in pixels, float32.

        Args:
            features: ``[B, N, in_dim]`` tokens or ``[B, in_dim]`` pooled features.
            batch: unused.
        """
        if features.ndim == 2:
            features = features[:, None]
        if features.ndim != 3 or features.shape[-1] != self.in_dim:
            raise ValueError(
                f"HandForecastHead expects features [B, N, {self.in_dim}] or [B, {self.in_dim}], "
                f"got {tuple(features.shape)}"
            )
        tokens = self.proj(self.norm(features))  # b n d
        queries = self.queries.to(tokens.dtype).expand(tokens.shape[0], -1, -1)  # b q d
        pooled, _ = self.attention(queries, tokens, tokens, need_weights=False)
        x = pooled + queries
        x = x + self.mlp(x)
        points = (self.out(x).float() + 0.5) * self.coord_scale  # b q 2
        return rearrange(points, "b (f h) xy -> b f h xy", f=len(KEY_FRAMES), h=len(HANDS))

    def loss(self, outputs: Tensor, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Masked SmoothL1 (``beta`` pixels), averaged over annotated coordinates: ``{"loss"}``."""
        target = batch["hands"].to(outputs.device, torch.float32)
        valid = batch["valid"].to(outputs.device, torch.bool)[..., None].expand_as(target)
        per_value = F.smooth_l1_loss(outputs.float(), target, beta=self.beta, reduction="none")
        loss = (per_value * valid).sum() / valid.sum().clamp(min=1)
        return {"loss": loss}

    @torch.no_grad()
    def predict(self, outputs: Tensor, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """One ``{"video_id", "hands": [5, 2, 2] pixels}`` per clip (view)."""
        return [
            {"video_id": video_id, "hands": outputs[i].float()}
            for i, video_id in enumerate(batch["video_ids"])
        ]

    def metrics(self) -> MetricCollection:
        """The Ego4D hands protocol: mean and contact-frame displacement per hand, views averaged."""
        return MetricCollection({"displacement": HandDisplacement()})
