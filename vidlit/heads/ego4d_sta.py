"""Ego4D Short-Term Object Interaction Anticipation: an RoI head on VideoViT tokens.

The Ego4D STA baseline (Grauman et al., "Ego4D: Around the World in 3,000 Hours of Egocentric
Video", CVPR 2022, Sec. 5 "Forecasting" and Appendix; ``EGO4D/forecasting``,
``ShortTermAnticipationTask``) pools SlowFast features inside the boxes of the annotated frame
(RoIAlign) and predicts, per box, a verb (cross-entropy) and a time to contact (a softplus
output trained with SmoothL1); the noun and the box score come from the object detector. Here the
features are VideoViT tokens, the head also predicts the noun, and a prediction's score is the
box score times the noun probability.

Shape legend: ``b`` clips, ``t h w`` the token grid, ``c`` channels, ``r`` boxes of the batch,
``s`` RoI output side, ``k`` classes.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchvision.ops import roi_align

from vidlit.core.boxes import box_iou
from vidlit.formats.ego4d_sta import STABatch, STAPrediction
from vidlit.heads.base import TaskHead
from vidlit.layers.tubelet import token_grid
from vidlit.metrics.sta_map import ShortTermAnticipationMAP


class ShortTermAnticipationHead(TaskHead):
    """Per-box noun, verb and time to contact from VideoViT tokens (Ego4D STA).

    The tokens are laid out on their ``(t, h, w)`` grid and reduced over time (the last time
    step, or the mean); :func:`torchvision.ops.roi_align` pools a ``roi_size x roi_size`` map
    inside each input box (given as normalized ``x1 y1 x2 y2`` in ``batch["boxes"]``), which is
    concatenated with the clip's mean token (where the hand is, and how it moves, is context
    outside the box) and fed to an MLP with three outputs: noun logits, verb logits and a
    softplus time to contact in seconds.

    Training: every input box takes the labels of the ground-truth object it overlaps most,
    when that IoU reaches ``match_iou`` (the baseline's next-active-object assignment); other
    boxes are ignored. Loss = ``noun_weight * CE(noun) + verb_weight * CE(verb) + ttc_weight *
    SmoothL1(ttc)`` (the baseline weighs TTC by 15 against the verb's 1).

    Prediction: each box gives its ``nouns_per_box`` most likely nouns, scored by box score x
    noun probability, with the box's most likely verb and its TTC, in the frame's pixels (from
    ``batch["orig_boxes"]``); a frame's predictions are sorted by score.

    Args:
        in_dim: token width (linked from the backbone).
        num_classes: noun categories (linked from the data module).
        num_verbs: verb categories (the data module's ``num_verbs``).
        hidden_dim: MLP width.
        roi_size: RoIAlign output side.
        temporal_pool: ``"last"`` (the time step ending at the annotated frame) or ``"mean"``.
        tubelet_size: frames per token of the backbone (2 for every registered VideoViT).
        dropout: dropout before the outputs.
        match_iou: IoU a box needs with a ground-truth object to be trained on.
        noun_weight: weight of the noun loss.
        verb_weight: weight of the verb loss.
        ttc_weight: weight of the TTC loss.
        nouns_per_box: predictions per box (its top nouns).
        patch_size: the backbone's spatial patch side; None derives it from the token count
            (:func:`token_grid`).
    """

    input = "video"
    feature_layout = "tokens"

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        num_verbs: int,
        hidden_dim: int = 256,
        roi_size: int = 2,
        temporal_pool: Literal["last", "mean"] = "last",
        tubelet_size: int = 2,
        dropout: float = 0.0,
        match_iou: float = 0.5,
        noun_weight: float = 1.0,
        verb_weight: float = 1.0,
        ttc_weight: float = 15.0,
        nouns_per_box: int = 1,
        patch_size: int | None = None,
    ):
        super().__init__()
        if num_classes < 1 or num_verbs < 1:
            raise ValueError(f"num_classes and num_verbs must be >= 1, got {num_classes} and {num_verbs}")
        if temporal_pool not in ("last", "mean"):
            raise ValueError(f"temporal_pool must be 'last' or 'mean', got {temporal_pool!r}")
        if roi_size < 1 or tubelet_size < 1 or not 1 <= nouns_per_box <= num_classes:
            raise ValueError(
                f"roi_size and tubelet_size must be >= 1 and nouns_per_box in [1, {num_classes}], "
                f"got {roi_size}, {tubelet_size}, {nouns_per_box}"
            )
        if patch_size is not None and patch_size < 1:
            raise ValueError(f"patch_size must be >= 1 or None, got {patch_size}")
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.num_verbs = num_verbs
        self.roi_size = roi_size
        self.temporal_pool = temporal_pool
        self.tubelet_size = tubelet_size
        self.patch_size = patch_size
        self.match_iou = match_iou
        self.noun_weight, self.verb_weight, self.ttc_weight = noun_weight, verb_weight, ttc_weight
        self.nouns_per_box = nouns_per_box
        self.norm = nn.LayerNorm(in_dim)
        self.mlp = nn.Sequential(
            nn.Linear(in_dim * (roi_size * roi_size + 1), hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
        )
        self.noun = nn.Linear(hidden_dim, num_classes)
        self.verb = nn.Linear(hidden_dim, num_verbs)
        self.ttc = nn.Linear(hidden_dim, 1)

    def forward(self, features: Tensor, batch: STABatch) -> dict[str, Tensor | list[int]]:
        """Per-box outputs.

        Args:
            features: ``[b, n, in_dim]`` tokens.
            batch: ``video`` (for the grid shape) and ``boxes`` (``b`` x ``[n_i, 4]`` normalized).

        Returns:
            ``noun_logits [r, num_classes]``, ``verb_logits [r, num_verbs]``, ``ttc [r]`` (seconds,
            >= 0) and ``counts`` (boxes per clip), boxes in batch order.
        """
        self.check_features(features, "[b, n, d]")
        boxes = batch["boxes"]
        if len(boxes) != features.shape[0]:
            raise ValueError(f"batch['boxes'] has {len(boxes)} entries for {features.shape[0]} clips")
        t, h, w = token_grid(features.shape[1], batch["video"].shape, self.tubelet_size, self.patch_size)
        x = self.norm(features)
        grid = rearrange(x, "b (t h w) c -> b t c h w", t=t, h=h, w=w)
        fmap = grid[:, -1] if self.temporal_pool == "last" else grid.mean(1)  # b c h w
        scale = torch.tensor([w, h, w, h], dtype=fmap.dtype, device=fmap.device)
        rois = [b.to(fmap.device, fmap.dtype).reshape(-1, 4) * scale for b in boxes]
        pooled = roi_align(fmap, rois, self.roi_size, spatial_scale=1.0, sampling_ratio=2, aligned=True)
        pooled = rearrange(pooled, "r c s1 s2 -> r (c s1 s2)")
        counts = [len(r) for r in rois]
        context = torch.repeat_interleave(x.mean(1), torch.tensor(counts, device=x.device), dim=0)  # r c
        hidden = self.mlp(torch.cat([pooled, context], dim=-1))
        return {
            "noun_logits": self.noun(hidden),
            "verb_logits": self.verb(hidden),
            "ttc": F.softplus(self.ttc(hidden).squeeze(-1)),
            "counts": counts,
        }

    @torch.no_grad()
    def assign(self, batch: dict[str, Any], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """Noun, verb (``-100`` = ignore) and TTC (NaN = ignore) targets ``[r]`` of the input boxes."""
        nouns, verbs, ttcs = [], [], []
        for boxes, target in zip(batch["orig_boxes"], batch["targets"], strict=True):
            n = len(boxes)
            noun = torch.full((n,), -100, dtype=torch.long)
            verb, ttc = noun.clone(), torch.full((n,), float("nan"))
            if n and len(target["nouns"]):
                iou = box_iou(boxes.float().cpu(), target["boxes"].float().cpu().reshape(-1, 4))  # r g
                best, which = iou.max(1)
                ok = best >= self.match_iou
                noun[ok] = target["nouns"].cpu()[which[ok]].long()
                verb[ok] = target["verbs"].cpu()[which[ok]].long()
                ttc[ok] = target["ttcs"].cpu()[which[ok]].float()
            nouns.append(noun)
            verbs.append(verb)
            ttcs.append(ttc)
        return torch.cat(nouns).to(device), torch.cat(verbs).to(device), torch.cat(ttcs).to(device)

    def loss(self, outputs: dict[str, Any], batch: STABatch) -> dict[str, Tensor]:
        """``{"loss", "noun_loss", "verb_loss", "ttc_loss"}``, float32; parts with no target are 0."""
        noun_logits = outputs["noun_logits"].float()
        nouns, verbs, ttcs = self.assign(batch, noun_logits.device)
        if (nouns >= self.num_classes).any() or (verbs >= self.num_verbs).any():
            raise ValueError(
                f"a target noun or verb id exceeds the head's {self.num_classes} nouns / "
                f"{self.num_verbs} verbs (frames {batch.get('video_ids')})"
            )
        zero = noun_logits.sum() * 0.0  # keeps the graph when nothing is labelled

        def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
            return F.cross_entropy(logits.float(), labels, ignore_index=-100) if (labels >= 0).any() else zero

        noun_loss = cross_entropy(noun_logits, nouns)
        verb_loss = cross_entropy(outputs["verb_logits"], verbs)
        valid = ~torch.isnan(ttcs)
        ttc_loss = F.smooth_l1_loss(outputs["ttc"].float()[valid], ttcs[valid]) if valid.any() else zero
        total = self.noun_weight * noun_loss + self.verb_weight * verb_loss + self.ttc_weight * ttc_loss
        return {"loss": total, "noun_loss": noun_loss, "verb_loss": verb_loss, "ttc_loss": ttc_loss}

    @torch.no_grad()
    def predict(self, outputs: dict[str, Any], batch: STABatch) -> list[STAPrediction]:
        """One prediction dict per frame in :class:`~vidlit.metrics.ShortTermAnticipationMAP`'s format.

        Returns:
            ``{"video_id", "boxes" [K, 4] pixels, "nouns" [K], "verbs" [K], "ttcs" [K], "scores" [K]}``
            on the CPU, sorted by score, descending.
        """
        noun_probs = outputs["noun_logits"].float().softmax(-1).cpu()
        verbs = outputs["verb_logits"].float().argmax(-1).cpu()
        ttcs = outputs["ttc"].float().cpu()
        k = self.nouns_per_box
        predictions, start = [], 0
        for i, count in enumerate(outputs["counts"]):
            end = start + count
            probs, nouns = noun_probs[start:end].topk(k, dim=-1)  # n k
            box_scores = batch["box_scores"][i].float().cpu()
            scores = (box_scores[:, None] * probs).flatten()
            order = torch.argsort(scores, descending=True, stable=True)
            boxes = batch["orig_boxes"][i].float().cpu().repeat_interleave(k, dim=0)
            predictions.append(
                {
                    "video_id": batch["video_ids"][i],
                    "boxes": boxes[order],
                    "nouns": nouns.flatten()[order],
                    "verbs": verbs[start:end].repeat_interleave(k)[order],
                    "ttcs": ttcs[start:end].repeat_interleave(k)[order],
                    "scores": scores[order],
                }
            )
            start = end
        return predictions

    def metrics(self) -> MetricCollection:
        """Ego4D STA's top-5 mAP (Noun, Noun+Verb, Noun+TTC and All)."""
        return MetricCollection({"sta": ShortTermAnticipationMAP()})
