"""State change object detection: a DETR set-prediction head on video tokens (Ego4D SCOD).

Shape legend: ``b`` clips, ``n`` backbone tokens on a ``(t, h, w)`` grid, ``d`` backbone width
(``in_dim``), ``e`` decoder width (``hidden``), ``(h w)`` memory tokens (one per place), ``q``
object queries, ``k`` object classes (1: the object of change).

Batches carry, per clip, the PNR frame's ground truth twice: ``boxes`` (normalized ``cxcywh``
tensors ``[N, 4]``) and ``labels`` (``[N]``) for the loss, and ``targets`` (COCO pixel boxes) for
the metric, plus ``frame_size`` (``[b, 2]`` annotated height and width) and ``image_ids`` (the
PNR frame's ``<video_uid>/<frame_number>.jpg``); see
:class:`vidlit.data.ego4d_scod.Ego4DSCOD`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchvision.ops import roi_align

from vidlit.core.boxes import clip_boxes, cxcywh_to_xyxy, denormalize_boxes, generalized_box_iou, xyxy_to_xywh
from vidlit.formats.ego4d_scod import SCODBatch, SCODPrediction
from vidlit.heads.base import TaskHead
from vidlit.layers.matching import HungarianMatcher
from vidlit.layers.tubelet import token_grid
from vidlit.metrics.coco_detection import COCODetectionAP


def _sincos(coords: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """``[..., dim]`` sine-cosine features of coordinates in ``[0, 1]`` (DETR's ``PositionEmbeddingSine``).

    Not LORIS's ``_sinusoidal`` of ``2pi x`` (its float32 ``exp(-log(T) i/h)`` frequencies differ in
    the last bits, up to 5e-7 on ``[0, 1]``, and trained heads expect these), nor
    :func:`vidlit.layers.pos_embed.sincos_table` (VideoMAE's interleaved table of integer positions).
    """
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


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """``log(x / (1 - x))``, clamped: the space in which Deformable DETR refines reference boxes."""
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


def box_positions(boxes: Tensor, dim: int) -> Tensor:
    """``[..., dim]`` sine embedding of normalized ``cxcywh`` boxes (DAB-DETR): ``dim / 4`` channels each."""
    return torch.cat([_sincos(boxes[..., i], dim // 4) for i in range(4)], dim=-1)


def mlp(dim: int, out: int, layers: int) -> nn.Sequential:
    """DETR's prediction MLP: ``layers`` linear layers of width ``dim`` with ReLU between them."""
    modules: list[nn.Module] = []
    for _ in range(layers - 1):
        modules += [nn.Linear(dim, dim), nn.ReLU()]
    modules.append(nn.Linear(dim, out))
    return nn.Sequential(*modules)


class DETRDecoderLayer(nn.Module):
    """DETR's decoder layer (post-norm): self-attention among the queries, cross-attention to the
    memory, feed-forward. Query positions are added to queries and keys of the self-attention and
    to the cross-attention's queries; memory positions to the cross-attention's keys only. An
    optional additive ``attn_bias`` ``[b * heads, q, n]`` modulates the cross-attention (SMCA's
    Gaussian prior around each query's reference box).
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        query_pos: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        attn_bias: Tensor | None = None,
    ) -> Tensor:
        """``[b, q, e]`` queries and positions, ``[b, n, e]`` memory and ``[b or 1, n, e]`` positions."""
        q = x + query_pos
        x = self.norm1(x + self.dropout(self.self_attn(q, q, x, need_weights=False)[0]))
        attended = self.cross_attn(
            x + query_pos, memory + memory_pos, memory, attn_mask=attn_bias, need_weights=False
        )[0]
        x = self.norm2(x + self.dropout(attended))
        return self.norm3(x + self.dropout(self.ffn(x)))


class StateChangeDETRHead(TaskHead):
    """A two-stage DETR on a video backbone's tokens, for the object of change.

    Carion et al., "End-to-End Object Detection with Transformers" (ECCV 2020), with the
    convergence fixes of its successors, so that a small model learns from a few hundred clips:

    1. **Change memory.** The ``(t, h, w)`` tokens are fused over time per place: the mean token
       and the difference "after minus before" the clip's middle (the PNR frame sits at
       ``num_frames // 2``), projected to ``hidden``. The memory is one token per place,
       ``[b, (h w), e]``, that sees the state change happen there.
    2. **Two-stage proposals** (Zhu et al., "Deformable DETR", ICLR 2021, sec. 4.2): every memory
       token predicts class logits and a box, as an offset in inverse-sigmoid space from a
       reference box at its own centre (side ``proposal_size``). The ``num_queries``
       highest-scoring proposals become the decoder's reference boxes; the proposals are
       trained with the same set loss (Hungarian matching) as the decoder.
    3. **Anchor queries with iterative refinement** (Liu et al., "DAB-DETR", ICLR 2022; Deformable
       DETR's box refinement): each query carries a reference box; its positional query is an
       MLP of the box's sine embedding, its cross-attention is biased towards the box by a
       Gaussian (Gao et al., "SMCA", ICCV 2021), and every decoder layer predicts a refined box
       as an offset from the previous one (in inverse-sigmoid space, references detached between
       layers as in Deformable DETR). Content queries are learned embeddings (DINO's "mixed
       query selection").
    4. **Sub-token box refinement** (optional, ``refine_stride``): the decoder only sees one memory
       token per ``patch_size`` cell, so its box edges are coarse (on 64 px frames with 8 px
       patches, AP50 0.98 but AP75 0.15). A small convolutional stem reads the raw clip at
       ``refine_stride`` (the PNR frame and the mean frames before and after it), RoIAlign (He et
       al., "Mask R-CNN", ICCV 2017) samples it inside each final box (enlarged by
       ``refine_context``), and an MLP of those features and the query regresses R-CNN box deltas
       (Girshick, "Fast R-CNN"; as a last stage of Cascade R-CNN, Cai and Vasconcelos, CVPR 2018).
       The decoder's last layer then becomes an auxiliary output.

    Training matches queries to ground-truth boxes one-to-one with
    :class:`~vidlit.layers.matching.HungarianMatcher` (costs: class 1, L1 5, GIoU 2) and sums
    cross-entropy (the no-object class down-weighted by ``eos_coef``), L1 and GIoU losses
    (weights 1, 5, 2; box terms averaged over the batch's ground-truth boxes), over the last
    layer and, with ``aux_loss``, every earlier layer and the proposals (DETR's auxiliary decoding
    losses). InternVideo-Ego4D (Chen et al., 2022) and the Ego4D SCOD baseline detect the object
    of change with DETR-family detectors; here the memory holds the clip's change, not one frame.

    :meth:`predict` scores every query by its best object-class probability and returns COCO
    ``[x, y, w, h]`` boxes in pixels of the annotated frame, highest score first, for
    :class:`~vidlit.metrics.coco_detection.COCODetectionAP` (COCO AP / AP50 / AP75).

    Args:
        in_dim: backbone token width (linked from the backbone by the CLI).
        num_classes: object classes without "no object" (linked from the data module; 1).
        hidden: decoder width.
        num_queries: object queries (DETR: 100; a frame holds one or two objects of change); at
            most the number of memory tokens ``h * w``.
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
        aux_loss: add the losses of every earlier decoder layer and of the proposals.
        proposal_size: side of the proposals' reference boxes, in token cells.
        attn_prior: strength of the Gaussian cross-attention prior around each reference box
            (0: none).
        patch_size: the backbone's spatial patch side, to place its tokens on the
            ``(t, h, w)`` grid of ``batch["video"]`` (vit_test: 8; the named ViT sizes: 16);
            None derives it from the token count (square patches).
        tubelet_size: the backbone's frames per token.
        refine_stride: stride of the pixel features of the sub-token box refinement (2: half
            the frame's resolution); 0 leaves it out (the decoder's boxes are the output).
        refine_context: side of the RoIAlign window relative to the box being refined.
    """

    input: ClassVar[str] = "video"
    ROI_SIZE: ClassVar[int] = 7
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
        proposal_size: float = 2.0,
        attn_prior: float = 1.0,
        patch_size: int | None = None,
        tubelet_size: int = 2,
        refine_stride: int = 0,
        refine_context: float = 1.5,
    ):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("num_classes", num_classes), ("hidden", hidden)):
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if num_queries < 1 or num_layers < 1:
            raise ValueError(f"num_queries and num_layers must be positive, got {num_queries}, {num_layers}")
        if hidden % num_heads or hidden % 4:
            raise ValueError(f"hidden ({hidden}) must be divisible by 4 and by num_heads ({num_heads})")
        if not 0 <= eos_coef <= 1:
            raise ValueError(f"eos_coef must lie in [0, 1], got {eos_coef}")
        if tubelet_size < 1 or (patch_size is not None and patch_size < 1):
            raise ValueError(f"tubelet_size and patch_size must be >= 1, got {tubelet_size}, {patch_size}")
        if proposal_size <= 0 or attn_prior < 0:
            raise ValueError(
                f"proposal_size must be positive and attn_prior >= 0, got {proposal_size}, {attn_prior}"
            )
        if refine_stride < 0 or refine_context < 1:
            raise ValueError(
                f"refine_stride must be >= 0 and refine_context >= 1, got {refine_stride}, {refine_context}"
            )
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.num_heads = num_heads
        self.loss_weights = {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}
        self.aux_loss = aux_loss
        self.proposal_size = proposal_size
        self.attn_prior = attn_prior
        self.matcher = HungarianMatcher(cost_class, cost_bbox, cost_giou)

        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.hidden = hidden
        self.input_proj = nn.Sequential(nn.Linear(2 * in_dim, hidden), nn.LayerNorm(hidden))
        # two-stage proposals from the memory tokens
        self.enc_class = nn.Linear(hidden, num_classes + 1)
        self.enc_box = mlp(hidden, 4, 3)
        # decoder: learned content queries, positional queries from the reference boxes
        self.query_content = nn.Parameter(torch.randn(num_queries, hidden) * 0.02)
        self.ref_pos = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.layers = nn.ModuleList(
            DETRDecoderLayer(hidden, num_heads, ffn_dim or 4 * hidden, dropout) for _ in range(num_layers)
        )
        self.class_heads = nn.ModuleList(nn.Linear(hidden, num_classes + 1) for _ in range(num_layers))
        self.box_heads = nn.ModuleList(mlp(hidden, 4, 3) for _ in range(num_layers))
        for head in [self.enc_box, *self.box_heads]:  # start at the reference boxes
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)
        self.refine_stride = refine_stride
        self.refine_context = refine_context
        if refine_stride:
            # 9 channels: the PNR frame and the mean frames before and after it
            channels = max(hidden // 2, 8)
            self.pixel_stem = nn.Sequential(
                nn.Conv2d(9, channels, refine_stride + 2, stride=refine_stride, padding=1),
                nn.ReLU(),
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.ReLU(),
            )
            self.roi_proj = nn.Sequential(nn.Linear(channels * self.ROI_SIZE**2, hidden), nn.ReLU())
            self.refine_box = mlp(hidden, 4, 3)
            nn.init.zeros_(self.refine_box[-1].weight)
            nn.init.zeros_(self.refine_box[-1].bias)
        weight = torch.ones(num_classes + 1)
        weight[-1] = eos_coef
        self.register_buffer("class_weight", weight, persistent=False)

    def change_memory(self, features: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """``[b, (h w), e]``: per place, the mean token and "after minus before" the clip's middle."""
        t = grid[0]
        tokens = rearrange(features, "b (t h w) d -> b t (h w) d", t=t, h=grid[1], w=grid[2])
        half = t // 2
        change = (
            tokens[:, half:].mean(1) - tokens[:, :half].mean(1) if half else torch.zeros_like(tokens[:, 0])
        )
        return self.input_proj(torch.cat([tokens.mean(1), change], dim=-1))

    def _attn_bias(self, ref: Tensor, grid: tuple[int, int, int]) -> Tensor | None:
        """``[b * heads, q, h * w]`` SMCA's log-Gaussian around each reference box, per head."""
        if self.attn_prior == 0:
            return None
        _, h, w = grid
        ys = (torch.arange(h, device=ref.device, dtype=ref.dtype) + 0.5) / h
        xs = (torch.arange(w, device=ref.device, dtype=ref.dtype) + 0.5) / w
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        cx, cy, bw, bh = (ref[..., i, None] for i in range(4))  # b q 1
        dx = (xx.flatten() - cx) / (bw / 2).clamp(min=0.5 / w)
        dy = (yy.flatten() - cy) / (bh / 2).clamp(min=0.5 / h)
        bias = -self.attn_prior * (dx**2 + dy**2)  # b q n
        return bias.repeat_interleave(self.num_heads, dim=0)

    def forward(self, features: Tensor, batch: SCODBatch) -> dict[str, Any]:
        """Class logits and boxes of every query after every decoder layer, and the proposals'.

        Args:
            features: ``[b, n, d]`` backbone tokens.
            batch: its ``video`` (``[b, c, T, H, W]``) gives the token grid
                ``(T / tubelet_size, H / patch_size, W / patch_size)``.

        Returns:
            ``{"logits": [b, q, k + 1], "boxes": [b, q, 4] normalized cxcywh, "aux": [{"logits",
            "boxes"} per earlier layer], "enc": {"logits": [b, (h w), k + 1], "boxes": [b, (h w),
            4]}}``, the last the proposals.
        """
        self.check_features(features, "[b, n, d]")
        grid = self.token_grid(batch["video"].shape, features.shape[1])
        _, h, w = grid
        if self.num_queries > h * w:
            raise ValueError(f"num_queries ({self.num_queries}) exceeds the {h} x {w} memory tokens")
        memory = self.change_memory(features, grid)  # b (h w) e
        memory_pos = token_positions((1, h, w), self.hidden, features.device)[None].to(memory.dtype)
        # two-stage proposals: a box around every memory token
        ys = (torch.arange(h, device=memory.device, dtype=memory.dtype) + 0.5) / h
        xs = (torch.arange(w, device=memory.device, dtype=memory.dtype) + 0.5) / w
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        anchors = torch.stack(
            [
                xx.flatten(),
                yy.flatten(),
                torch.full_like(xx.flatten(), self.proposal_size / w),
                torch.full_like(yy.flatten(), self.proposal_size / h),
            ],
            dim=-1,
        )  # (h w) 4
        enc_logits = self.enc_class(memory)  # b (h w) k+1
        enc_boxes = (self.enc_box(memory) + inverse_sigmoid(anchors)).sigmoid()  # b (h w) 4
        scores = enc_logits.detach().softmax(-1)[..., :-1].max(-1).values  # b (h w)
        top = scores.topk(self.num_queries, dim=1).indices  # b q
        ref = enc_boxes.detach().gather(1, top[..., None].expand(-1, -1, 4))  # b q 4
        x = self.query_content[None].to(memory.dtype).expand(features.shape[0], -1, -1)  # b q e
        layers = []
        for layer, class_head, box_head in zip(self.layers, self.class_heads, self.box_heads):
            query_pos = self.ref_pos(box_positions(ref, self.hidden).to(memory.dtype))  # b q e
            x = layer(x, query_pos, memory, memory_pos, self._attn_bias(ref, grid))
            boxes = (box_head(x) + inverse_sigmoid(ref)).sigmoid()
            layers.append({"logits": class_head(x), "boxes": boxes})
            ref = boxes.detach()
        enc = {"logits": enc_logits, "boxes": enc_boxes}
        if self.refine_stride:
            boxes = self.refine(batch["video"], x, ref)
            return {"logits": layers[-1]["logits"], "boxes": boxes, "aux": layers, "enc": enc}
        return {**layers[-1], "aux": layers[:-1], "enc": enc}

    def refine(self, video: Tensor, queries: Tensor, ref: Tensor) -> Tensor:
        """``[b, q, 4]`` boxes refined from ``ref`` (detached decoder boxes) on pixel features.

        Args:
            video: ``[b, c, T, H, W]`` clip, the PNR frame at ``T // 2``.
            queries: ``[b, q, e]`` the decoder's last query features.
            ref: ``[b, q, 4]`` normalized ``cxcywh`` boxes to refine.
        """
        b, q, _ = ref.shape
        frames = video.shape[2]
        half = frames // 2
        pnr = video[:, :, half]
        before = video[:, :, :half].mean(2) if half else pnr
        pixels = self.pixel_stem(
            torch.cat([pnr, before, video[:, :, half:].mean(2)], dim=1).to(queries.dtype)
        )
        height, width = video.shape[-2:]
        window = ref.float().clone()
        window[..., 2:] = window[..., 2:] * self.refine_context
        scale = window.new_tensor([width, height, width, height])
        rois = (cxcywh_to_xyxy(window) * scale).unbind(0)  # b tensors [q, 4], pixels of the clip
        sampled = roi_align(
            pixels.float(), list(rois), self.ROI_SIZE, 1 / self.refine_stride, sampling_ratio=2, aligned=True
        )  # (b q) c s s
        roi = self.roi_proj(rearrange(sampled, "(b q) c s t -> b q (c s t)", b=b).to(queries.dtype))
        delta = self.refine_box(roi + queries).float()  # b q 4: R-CNN deltas
        cx = ref[..., 0] + delta[..., 0] * ref[..., 2]
        cy = ref[..., 1] + delta[..., 1] * ref[..., 3]
        size = ref[..., 2:] * delta[..., 2:].clamp(max=2.0).exp()
        return torch.cat([torch.stack([cx, cy], -1), size], -1).clamp(1e-4, 1).to(ref.dtype)

    def token_grid(self, video_shape: torch.Size, num_tokens: int) -> tuple[int, int, int]:
        """The ``(t, h, w)`` token grid of a ``[b, c, T, H, W]`` clip holding ``num_tokens`` tokens.

        See :func:`vidlit.layers.tubelet.token_grid` (a ``patch_size`` of None is
        derived from the token count).
        """
        return token_grid(num_tokens, video_shape, self.tubelet_size, self.patch_size)

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

    def loss(self, outputs: dict[str, Any], batch: SCODBatch) -> dict[str, Tensor]:
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
            for aux in [*outputs["aux"], outputs["enc"]]:
                aux_parts = self._set_loss(aux, labels, boxes, num_boxes)
                total = total + sum(self.loss_weights[k] * v for k, v in aux_parts.items())
        return {"loss": total, **parts}

    @torch.no_grad()
    def predict(self, outputs: dict[str, Any], batch: SCODBatch) -> list[SCODPrediction]:
        """Per clip: ``{"image_id", "video_id", "boxes": [q, 4] COCO pixels, "scores": [q], "labels": [q]}``.

        Boxes are scaled to ``batch["frame_size"]`` (the annotated ``(height, width)``) and
        clipped to the frame; detections are sorted by score, descending (DETR's post-processing:
        every query is kept, COCO evaluation reads at most 100).
        """
        probs = outputs["logits"].float().softmax(-1)[..., :-1]  # b q k
        scores, labels = probs.max(-1)
        size = batch["frame_size"].to(outputs["boxes"].device)
        xyxy = clip_boxes(denormalize_boxes(cxcywh_to_xyxy(outputs["boxes"].float()), size), size)
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
