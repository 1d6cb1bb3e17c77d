"""State change object detection: a DETR set-prediction head on video tokens (Ego4D SCOD).

Shape legend: ``b`` clips, ``n`` backbone tokens, ``d`` backbone width (``in_dim``), ``e`` decoder
width (``hidden``), ``q`` object queries, ``k`` object classes (1: the object of change), ``l``
decoder layers.

Batches carry, per clip, the PNR frame's ground truth twice: ``boxes`` (normalized ``cxcywh``
tensors ``[N, 4]``) and ``labels`` (``[N]``) for the loss, and ``targets`` (COCO pixel boxes) for
the metric, plus ``frame_size`` (``[b, 2]`` annotated height and width) and ``image_ids`` (the
PNR frame's ``<video_uid>/<frame_number>.jpg``); see
:class:`vidlit.data.ego4d_scod.Ego4DStateChangeDetection`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from vidlit.core.boxes import cxcywh_to_xyxy, denormalize_boxes, generalized_box_iou, xyxy_to_xywh
from vidlit.heads.base import TaskHead
from vidlit.layers.matching import HungarianMatcher
from vidlit.metrics.coco_detection import COCODetectionAP


def _sincos(coords: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """``[..., dim]`` sine-cosine features of coordinates in ``[0, 1]`` (DETR's ``PositionEmbeddingSine``)."""
    freqs = temperature ** (torch.arange(dim // 2, device=coords.device, dtype=torch.float32) / (dim // 2))
    angles = coords.float()[..., None] * 2 * torch.pi / freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def token_positions(grid: tuple[int, int, int], dim: int, device: torch.device | None = None) -> Tensor:
    """``[t*h*w, dim]`` fixed position embedding of a ``(t, h, w)`` token grid, ``(t h w)`` order.

    DETR's sine embedding of the normalized token centres: half the channels encode y, half x;
    the time coordinate's embedding (all channels) is added, so tokens of one place at different
    times differ.
    """
    t, h, w = grid
    axes = [(torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n for n in (t, h, w)]
    tt, yy, xx = torch.meshgrid(*axes, indexing="ij")
    spatial = torch.cat([_sincos(yy.flatten(), dim // 2), _sincos(xx.flatten(), dim // 2)], dim=-1)
    return spatial + _sincos(tt.flatten(), dim)


class DETRDecoderLayer(nn.Module):
    """DETR's decoder layer (post-norm): self-attention among the queries, cross-attention to the
    memory, feed-forward. Query positions are added to queries and keys of the self-attention and
    to the cross-attention's queries; memory positions to the cross-attention's keys only.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, query_pos: Tensor, memory: Tensor, memory_pos: Tensor) -> Tensor:
        """``[b, q, e]`` queries, ``[b or 1, q, e]`` their positions, ``[b, n, e]`` memory and positions."""
        q = x + query_pos
        x = self.norm1(x + self.dropout(self.self_attn(q, q, x, need_weights=False)[0]))
        attended = self.cross_attn(x + query_pos, memory + memory_pos, memory, need_weights=False)[0]
        x = self.norm2(x + self.dropout(attended))
        return self.norm3(x + self.dropout(self.ffn(x)))


class StateChangeDETRHead(TaskHead):
    """DETR's decoder and set loss on a video backbone's tokens, for the object of change.

    Carion et al., "End-to-End Object Detection with Transformers" (ECCV 2020): ``num_queries``
    learned object queries attend to the clip's tokens through a transformer decoder (pre-norm
    layers); after every layer a shared MLP predicts a box (normalized ``cxcywh``, sigmoid) and a
    linear layer the class logits (``k`` classes plus "no object", last). Training matches
    queries to ground-truth boxes one-to-one with :class:`~vidlit.layers.matching.HungarianMatcher`
    (costs: class 1, L1 5, GIoU 2) and sums cross-entropy (the no-object class down-weighted by
    ``eos_coef`` 0.1), L1 and GIoU losses (weights 1, 5, 2; box terms averaged over the batch's
    ground-truth boxes), over the last layer and, with ``aux_loss``, every earlier one (DETR's
    auxiliary decoding losses, sec. 3.2). This is how the InternVideo-Ego4D report (Chen et al.,
    2022) and the Ego4D SCOD DETR baseline detect the object of change; here the memory is the
    clip's spatio-temporal tokens, so the queries see the state change happen.

    :meth:`predict` scores every query by its best object-class probability and returns COCO
    ``[x, y, w, h]`` boxes in pixels of the annotated frame, highest score first, for
    :class:`~vidlit.metrics.coco_detection.COCODetectionAP` (COCO AP / AP50 / AP75).

    Args:
        in_dim: backbone token width (linked from the backbone by the CLI).
        num_classes: object classes without "no object" (linked from the data module; 1).
        hidden: decoder width.
        num_queries: object queries (DETR: 100; a frame holds one or two objects of change).
        num_layers: decoder layers (DETR: 6).
        num_heads: attention heads.
        ffn_dim: feed-forward width; defaults to ``4 * hidden``.
        dropout: dropout in the decoder (DETR: 0.1).
        eos_coef: cross-entropy weight of the no-object class.
        cost_class: matching weight of the class cost.
        cost_bbox: matching weight of the L1 cost.
        cost_giou: matching weight of the GIoU cost.
        loss_ce: weight of the cross-entropy loss.
        loss_bbox: weight of the L1 loss.
        loss_giou: weight of the GIoU loss.
        aux_loss: add the losses of every decoder layer's predictions.
        patch_size: the backbone's spatial patch side, to place its tokens on the
            ``(t, h, w)`` grid of ``batch["video"]`` (vit_test: 8; the named ViT sizes: 16).
        tubelet_size: the backbone's frames per token.
    """

    input: ClassVar[str] = "video"
    feature_layout: ClassVar[Literal["temporal", "tokens", "pooled"]] = "tokens"

    def __init__(
        self,
        in_dim: int,
        num_classes: int = 1,
        hidden: int = 128,
        num_queries: int = 10,
        num_layers: int = 3,
        num_heads: int = 4,
        ffn_dim: int | None = None,
        dropout: float = 0.0,
        eos_coef: float = 0.1,
        cost_class: float = 1.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        loss_ce: float = 1.0,
        loss_bbox: float = 5.0,
        loss_giou: float = 2.0,
        aux_loss: bool = True,
        patch_size: int = 16,
        tubelet_size: int = 2,
    ):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("num_classes", num_classes), ("hidden", hidden)):
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if num_queries < 1 or num_layers < 1:
            raise ValueError(f"num_queries and num_layers must be positive, got {num_queries}, {num_layers}")
        if hidden % num_heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by num_heads ({num_heads})")
        if not 0 <= eos_coef <= 1:
            raise ValueError(f"eos_coef must lie in [0, 1], got {eos_coef}")
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.loss_weights = {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}
        self.aux_loss = aux_loss
        self.matcher = HungarianMatcher(cost_class, cost_bbox, cost_giou)

        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.hidden = hidden
        self.input_proj = nn.Linear(in_dim, hidden)
        self.query_pos = nn.Parameter(torch.randn(num_queries, hidden))
        self.layers = nn.ModuleList(
            DETRDecoderLayer(hidden, num_heads, ffn_dim or 4 * hidden, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden)
        self.class_head = nn.Linear(hidden, num_classes + 1)
        self.box_head = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 4)
        )
        weight = torch.ones(num_classes + 1)
        weight[-1] = eos_coef
        self.register_buffer("class_weight", weight, persistent=False)

    def forward(self, features: Tensor, batch: dict[str, Any]) -> dict[str, Any]:
        """Class logits and boxes of every query after every decoder layer.

        Args:
            features: ``[b, n, d]`` backbone tokens.
            batch: its ``video`` (``[b, c, T, H, W]``) gives the token grid
                ``(T / tubelet_size, H / patch_size, W / patch_size)``.

        Returns:
            ``{"logits": [b, q, k + 1], "boxes": [b, q, 4] normalized cxcywh, "aux": [{"logits",
            "boxes"} per earlier layer]}``.
        """
        if features.ndim != 3 or features.shape[-1] != self.in_dim:
            raise ValueError(
                f"{type(self).__name__} expects tokens [b, n, {self.in_dim}] (a backbone called with "
                f"output='tokens'), got shape {tuple(features.shape)}"
            )
        grid = self.token_grid(batch["video"].shape, features.shape[1])
        memory = self.input_proj(features)  # b n e
        memory_pos = token_positions(grid, self.hidden, features.device).to(memory.dtype)[None]  # 1 n e
        query_pos = self.query_pos[None].to(memory.dtype)  # 1 q e
        x = torch.zeros_like(query_pos).expand(features.shape[0], -1, -1)  # b q e, DETR's zero targets
        layers = []
        for layer in self.layers:
            x = layer(x, query_pos, memory, memory_pos)
            y = self.norm(x)
            layers.append({"logits": self.class_head(y), "boxes": self.box_head(y).sigmoid()})
        return {**layers[-1], "aux": layers[:-1]}

    def token_grid(self, video_shape: torch.Size, num_tokens: int) -> tuple[int, int, int]:
        """The ``(t, h, w)`` token grid of a ``[b, c, T, H, W]`` clip; it must hold ``num_tokens``."""
        *_, frames, height, width = video_shape
        grid = (frames // self.tubelet_size, height // self.patch_size, width // self.patch_size)
        if grid[0] * grid[1] * grid[2] != num_tokens:
            raise ValueError(
                f"{num_tokens} tokens do not fill the {grid} grid of a {frames} x {height} x {width} clip "
                "with "
                f"patch_size={self.patch_size}, tubelet_size={self.tubelet_size}: set them to the backbone's"
            )
        return grid

    def _set_loss(
        self, out: dict[str, Tensor], labels: list[Tensor], boxes: list[Tensor], num_boxes: float
    ) -> dict[str, Tensor]:
        logits, pred_boxes = out["logits"], out["boxes"]
        matches = self.matcher(logits, pred_boxes, labels, boxes)
        batch_idx = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(matches)]).to(logits.device)
        query_idx = torch.cat([q for q, _ in matches]).to(logits.device)
        target_classes = torch.full(
            logits.shape[:2], self.num_classes, dtype=torch.long, device=logits.device
        )
        if len(query_idx):
            matched_labels = [lab[t].to(logits.device) for lab, (_, t) in zip(labels, matches)]
            target_classes[batch_idx, query_idx] = torch.cat(matched_labels)
        loss_ce = F.cross_entropy(
            logits.flatten(0, 1).float(), target_classes.flatten(), weight=self.class_weight
        )
        matched = pred_boxes[batch_idx, query_idx].float()
        target = torch.cat([box[t].to(matched) for box, (_, t) in zip(boxes, matches)]).reshape(-1, 4)
        loss_bbox = F.l1_loss(matched, target, reduction="sum") / num_boxes
        giou = torch.diag(generalized_box_iou(cxcywh_to_xyxy(matched), cxcywh_to_xyxy(target)))
        loss_giou = (1 - giou).sum() / num_boxes
        return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}

    def loss(self, outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        """DETR's set loss against ``batch["boxes"]`` / ``batch["labels"]`` (after matching).

        Returns:
            ``{"loss", "loss_ce", "loss_bbox", "loss_giou"}`` of the last layer (``loss`` also
            sums the auxiliary layers' weighted losses).
        """
        labels, boxes = batch["labels"], batch["boxes"]
        if len(labels) != outputs["logits"].shape[0] or len(boxes) != len(labels):
            raise ValueError(
                f"batch has {len(labels)} label and {len(boxes)} box lists for "
                f"{outputs['logits'].shape[0]} clips"
            )
        num_boxes = max(float(sum(len(t) for t in labels)), 1.0)
        parts = self._set_loss(outputs, labels, boxes, num_boxes)
        total = sum(self.loss_weights[k] * v for k, v in parts.items())
        if self.aux_loss:
            for aux in outputs["aux"]:
                aux_parts = self._set_loss(aux, labels, boxes, num_boxes)
                total = total + sum(self.loss_weights[k] * v for k, v in aux_parts.items())
        return {"loss": total, **parts}

    @torch.no_grad()
    def predict(self, outputs: dict[str, Any], batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per clip: ``{"image_id", "video_id", "boxes": [q, 4] COCO pixels, "scores": [q], "labels": [q]}``.

        Boxes are scaled to ``batch["frame_size"]`` (the annotated ``(height, width)``) and
        clipped to the frame; detections are sorted by score, descending (DETR's post-processing:
        every query is kept, COCO evaluation reads at most 100).
        """
        probs = outputs["logits"].float().softmax(-1)[..., :-1]  # b q k
        scores, labels = probs.max(-1)
        size = batch["frame_size"].to(outputs["boxes"].device)
        xyxy = denormalize_boxes(cxcywh_to_xyxy(outputs["boxes"].float()).clamp(0, 1), size)
        boxes = xyxy_to_xywh(xyxy)
        predictions = []
        for i in range(len(scores)):
            order = scores[i].argsort(descending=True)
            predictions.append(
                {
                    "image_id": batch["image_ids"][i],
                    "video_id": batch["video_ids"][i],
                    "boxes": boxes[i, order].cpu(),
                    "scores": scores[i, order].cpu(),
                    "labels": labels[i, order].cpu(),
                }
            )
        return predictions

    def metrics(self) -> MetricCollection:
        """COCO box AP (headline), AP50 and AP75 on the PNR frame: the Ego4D SCOD protocol."""
        return MetricCollection({"coco": COCODetectionAP(num_classes=self.num_classes)})
