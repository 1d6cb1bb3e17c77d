"""A head written outside vidlit, trained by ``vidlit fit`` through ``class_path`` alone."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from vidlit.heads import TaskHead
from vidlit.metrics import TemporalActionMAP


class FrameThresholdHead(TaskHead):
    """Per-step multi-label classification; moments are runs of steps above a threshold.

    Args:
        in_dim: feature channels (linked from the data module).
        num_classes: moment classes (linked from the data module).
        hidden: width of the temporal conv.
        threshold: probability above which a step belongs to a moment.
    """

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 64, threshold: float = 0.2):
        super().__init__()
        self.num_classes = num_classes
        self.threshold = threshold
        self.net = nn.Sequential(
            nn.Conv1d(in_dim, hidden, 3, padding=1), nn.ReLU(), nn.Conv1d(hidden, num_classes, 3, padding=1)
        )

    def forward(self, features: Tensor, batch: dict[str, Any]) -> Tensor:
        return self.net(features.transpose(1, 2)).transpose(1, 2)  # b t k

    def _step_targets(self, batch: dict[str, Any], steps: int) -> Tensor:
        targets = torch.zeros(len(batch["targets"]), steps, self.num_classes)
        for i, target in enumerate(batch["targets"]):
            centres = batch["offset_sec"][i] + torch.arange(steps) * batch["step_sec"][i]
            for (start, end), label in zip(target["segments"].tolist(), target["labels"].tolist()):
                targets[i, (centres >= start) & (centres <= end), label] = 1
        return targets

    def loss(self, outputs: Tensor, batch: dict[str, Any]) -> dict[str, Tensor]:
        targets = self._step_targets(batch, outputs.shape[1]).to(outputs.device)
        bce = F.binary_cross_entropy_with_logits(outputs.float(), targets, reduction="none").mean(-1)
        mask = batch["mask"].float()
        return {"loss": (bce * mask).sum() / mask.sum()}

    def predict(self, outputs: Tensor, batch: dict[str, Any]) -> list[dict[str, Any]]:
        probs = outputs.float().sigmoid() * batch["mask"][..., None]
        results = []
        for i, video_id in enumerate(batch["video_ids"]):
            step, offset = float(batch["step_sec"][i]), float(batch["offset_sec"][i])
            segments, labels, scores = [], [], []
            for k in range(self.num_classes):
                above = (probs[i, :, k] > self.threshold).int().tolist() + [0]
                start = None
                for t, on in enumerate(above):
                    if on and start is None:
                        start = t
                    elif not on and start is not None:
                        segments.append([offset + (start - 0.5) * step, offset + (t - 0.5) * step])
                        labels.append(k)
                        scores.append(float(probs[i, start:t, k].mean()))
                        start = None
            order = sorted(range(len(scores)), key=lambda j: -scores[j])
            results.append(
                {
                    "video_id": video_id,
                    "segments": torch.tensor([segments[j] for j in order], dtype=torch.float32).reshape(
                        -1, 2
                    ),
                    "labels": torch.tensor([labels[j] for j in order], dtype=torch.long),
                    "scores": torch.tensor([scores[j] for j in order], dtype=torch.float32),
                }
            )
        return results

    def metrics(self) -> MetricCollection:
        return MetricCollection({"map": TemporalActionMAP(num_classes=self.num_classes)})


class ExplodingHead(FrameThresholdHead):
    """Returns a NaN loss from training batch number ``explode_at`` on (for the non-finite-loss test)."""

    def __init__(self, in_dim: int, num_classes: int, explode_at: int = 3):
        super().__init__(in_dim, num_classes)
        self.explode_at = explode_at
        self.calls = 0

    def loss(self, outputs: Tensor, batch: dict[str, Any]) -> dict[str, Tensor]:
        losses = super().loss(outputs, batch)
        if self.training:
            self.calls += 1
            if self.calls >= self.explode_at:
                losses["loss"] = losses["loss"] * float("nan")
        return losses
