"""Ego4D Future Hand Prediction: regress both hands' positions at five future key frames.

Shape legend: ``b`` clips, ``n`` tokens (a ``(t h w)`` grid), ``d`` width, ``q`` key-point queries
(5 frames x 2 hands), ``a`` attention heads, ``xy`` the two image axes.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import Tensor, nn
from torchmetrics import MetricCollection

from vidlit.formats.ego4d_fhp import HANDS, KEY_FRAMES, FHPBatch, FHPPrediction
from vidlit.heads.base import TaskHead
from vidlit.layers.tubelet import token_grid
from vidlit.metrics.hand_displacement import HandDisplacement

READOUTS = ("query", "soft_argmax")


def token_centres(grid: tuple[int, int, int], device: torch.device | None = None) -> Tensor:
    """``[t*h*w, 2]`` (x, y) centres of the tokens' patches, fractions of the frame, ``(t h w)`` order."""
    t, h, w = grid
    ys = (torch.arange(h, device=device) + 0.5) / h
    xs = (torch.arange(w, device=device) + 0.5) / w
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(1, h * w, 2).expand(t, -1, -1).reshape(t * h * w, 2)


class HandForecastHead(TaskHead):
    """Future hand positions from video tokens, for the Ego4D Future Hand Prediction benchmark.

    The Ego4D baseline (Grauman et al., CVPR 2022, Sec. I.1; ``EGO4D/forecasting``,
    ``Ego4D-Future-Hand-Prediction``) regresses 20 values, left and right hand ``(x, y)`` at the
    key frames ``pre_45``, ``pre_30``, ``pre_15``, ``pre_frame`` and ``contact_frame``, from a
    video backbone's pooled features with a SmoothL1 loss, missing hands masked out. Pooling
    throws away *where* things are, so here one learned query per key point (10) attends over
    the backbone's tokens, and the ``readout`` turns what it attended to into ``(x, y)``:

    - ``"query"``: a small MLP maps the attended features to the point (the tokens carry their
      position embedding, so where they are must be decoded from features). Outputs
      ``(raw + 0.5) * coord_scale`` pixels.
    - ``"soft_argmax"`` (recommended; the recipe's): every attention head of every query also
      reads the expected *position* of what it attends to, ``sum_n attention_n * centre_n``
      (a soft-argmax over the token grid, as in integral pose regression, Sun et al., ECCV
      2018), and the point is a learned mix of these positions plus an MLP offset from the
      attended features, ``(sum_a mix_a * position_a + raw) * coord_scale``. A future hand
      position is mostly a weighted sum of where the hand and the object are now (the mix can
      extrapolate the hand's motion from heads attending to different time steps), so the
      localization signal reaches the attention and the backbone directly: on the synthetic
      sample data (``recipes/ego4d_fhp.yaml``) it reaches 1.2 px after 7 epochs and 0.5 px after
      20, where ``"query"`` stays near the train-mean baseline (8.5 px) for ~15 epochs and
      reaches 6.4 px after 40. Tokens are laid out on their ``(t, h, w)`` grid from
      ``batch["video"]`` (:func:`~vidlit.layers.tubelet.token_grid`); one pooled token sits at
      the frame centre.

    Outputs are pixels of the original frame, ``coord_scale`` pixels per unit (the frame's width
    and height), so the layers work at unit scale; an untrained ``"query"`` head predicts the
    frame centre, a ``"soft_argmax"`` one the mean position its heads attend to.

    Loss: SmoothL1 with ``beta`` (5 pixels) over the annotated coordinates only (the
    baseline multiplies predictions and labels by the annotation mask).

    The batch carries ``valid [B, 5, 2]`` bool, ``hands [B, 5, 2, 2]`` pixels, ``video_ids`` and
    ``targets`` in :class:`~vidlit.metrics.hand_displacement.HandDisplacement`'s format, and, for
    ``readout="soft_argmax"`` on more than one token, ``video [B, C, T, H, W]``.

    Args:
        in_dim: token width (linked from the backbone's ``embed_dim``).
        hidden: width of the query attention and MLP.
        num_heads: attention heads.
        coord_scale: pixels per unit of the output: the frame size, one number or
            ``(width, height)``.
        beta: SmoothL1 transition point, in pixels (5 in the Ego4D baseline).
        dropout: dropout on the pooled query features.
        readout: ``"query"`` (the default, for checkpoints of earlier versions) or
            ``"soft_argmax"`` (see above).
        tubelet_size: frames per token of the backbone (``"soft_argmax"`` only; 2 for every
            registered VideoViT).
        patch_size: the backbone's spatial patch side (``"soft_argmax"`` only); None derives it
            from the token count.
    """

    input = "features"
    feature_layout = "tokens"

    def __init__(
        self,
        in_dim: int,
        hidden: int = 256,
        num_heads: int = 4,
        coord_scale: float | tuple[float, float] = 1.0,
        beta: float = 5.0,
        dropout: float = 0.0,
        readout: Literal["query", "soft_argmax"] = "query",
        tubelet_size: int = 2,
        patch_size: int | None = None,
    ):
        super().__init__()
        scale = torch.as_tensor(coord_scale, dtype=torch.float32).expand(2).clone()
        if (scale <= 0).any() or beta < 0:
            raise ValueError(f"coord_scale must be > 0 and beta >= 0, got {coord_scale} and {beta}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        if tubelet_size < 1 or (patch_size is not None and patch_size < 1):
            raise ValueError(f"tubelet_size and patch_size must be >= 1, got {tubelet_size} and {patch_size}")
        self.in_dim = in_dim
        self.coord_scale = coord_scale
        self.beta = beta
        self.readout = readout
        self.tubelet_size = tubelet_size
        self.patch_size = patch_size
        self.register_buffer("scale", scale, persistent=False)
        num_points = len(KEY_FRAMES) * len(HANDS)
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, hidden)
        # soft-argmax: unit-scale queries, so the heads attend to distinct tokens from the start
        query_std = 1.0 if readout == "soft_argmax" else 0.02
        self.queries = nn.Parameter(torch.randn(num_points, hidden) * query_std)
        self.attention = nn.MultiheadAttention(hidden, num_heads, batch_first=True)
        if readout == "soft_argmax":
            # each point starts at the mean of its heads' attended positions
            self.mix = nn.Parameter(torch.full((num_points, num_heads), 1.0 / num_heads))
        self.mlp = nn.Sequential(
            nn.LayerNorm(hidden), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.out = nn.Linear(hidden, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _centres(self, features: Tensor, batch: dict[str, Any]) -> Tensor:
        """``[n, 2]`` token centres in fractions of the frame (``"soft_argmax"``)."""
        if features.shape[1] == 1:
            return features.new_full((1, 2), 0.5)
        video = batch.get("video")
        if video is None:
            raise ValueError(
                f"HandForecastHead(readout='soft_argmax') lays the {features.shape[1]} tokens out on their "
                "(t, h, w) grid from batch['video'], which this batch lacks (stored features?): "
                "use readout='query'"
            )
        grid = token_grid(features.shape[1], video.shape, self.tubelet_size, self.patch_size)
        return token_centres(grid, features.device)

    def forward(self, features: Tensor, batch: FHPBatch) -> Tensor:
        """Hand positions ``[B, 5, 2, 2]`` (key frame, hand left/right, x/y) in pixels, float32.

        Args:
            features: ``[B, N, in_dim]`` tokens or ``[B, in_dim]`` pooled features.
            batch: ``video`` for the token grid (``readout="soft_argmax"``), else unused.
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
        soft_argmax = self.readout == "soft_argmax"
        pooled, weights = self.attention(
            queries, tokens, tokens, need_weights=soft_argmax, average_attn_weights=False
        )
        x = pooled + queries
        x = x + self.mlp(x)
        raw = self.out(x).float()  # b q xy
        if soft_argmax:
            centres = self._centres(features, batch)
            positions = einsum(weights.float(), centres.float(), "b a q n, n xy -> b q a xy")
            raw = raw + einsum(positions, self.mix.float(), "b q a xy, q a -> b q xy")
        else:
            raw = raw + 0.5
        points = raw * self.scale  # b q xy
        return rearrange(points, "b (f h) xy -> b f h xy", f=len(KEY_FRAMES), h=len(HANDS))

    def loss(self, outputs: Tensor, batch: FHPBatch) -> dict[str, Tensor]:
        """Masked SmoothL1 (``beta`` pixels), averaged over annotated coordinates: ``{"loss"}``."""
        target = batch["hands"].to(outputs.device, torch.float32)
        valid = batch["valid"].to(outputs.device, torch.bool)[..., None].expand_as(target)
        per_value = F.smooth_l1_loss(outputs.float(), target, beta=self.beta, reduction="none")
        loss = (per_value * valid).sum() / valid.sum().clamp(min=1)
        return {"loss": loss}

    @torch.no_grad()
    def predict(self, outputs: Tensor, batch: FHPBatch) -> list[FHPPrediction]:
        """One ``{"video_id", "hands": [5, 2, 2] pixels}`` per clip (view)."""
        return [
            {"video_id": video_id, "hands": outputs[i].float()}
            for i, video_id in enumerate(batch["video_ids"])
        ]

    def metrics(self) -> MetricCollection:
        """The Ego4D hands protocol: mean and contact-frame displacement per hand, views averaged."""
        return MetricCollection({"displacement": HandDisplacement()})
