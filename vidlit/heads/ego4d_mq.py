"""Ego4D Moment Queries: ActionFormer, a single-stage anchor-free temporal action localizer.

Zhang, Wu and Li, "ActionFormer: Localizing Moments of Actions with Transformers", ECCV 2022,
the strong baseline of the Ego4D Moment Queries challenge. Defaults follow the released
Ego4D configs (``configs/ego4d_*.yaml`` of happyharrycn/actionformer_release).

Shape legend: ``b`` clips, ``t`` steps of one pyramid level, ``p`` points (steps of all levels),
``k`` classes, ``n`` ground-truth moments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchvision.ops import sigmoid_focal_loss

from vidlit.core.device import torch_threads
from vidlit.formats.ego4d_mq import SegmentPrediction, seconds_to_steps, steps_to_seconds
from vidlit.heads.base import TaskHead
from vidlit.layers.nms import batched_nms
from vidlit.layers.temporal_pyramid import MaskedConv1d, TemporalPyramid
from vidlit.metrics.temporal_map import TemporalActionMAP


def ego4d_regression_range(levels: int) -> list[tuple[float, float]]:
    """Per-level regression ranges, in input feature steps, of ActionFormer's Ego4D configs.

    Level 0 regresses distances ``[0, 4]``, level ``l`` ``[2**l, 2**(l+2)]`` (neighbouring
    ranges overlap) and the last level ``[2**(levels-1), 10000]``; for 8 levels this is
    ``[[0,4],[2,8],[4,16],[8,32],[16,64],[32,128],[64,256],[128,10000]]`` of
    ``ego4d_egovlp.yaml`` / ``ego4d_omnivore_egovlp.yaml``, and for 7 that of ``ego4d_slowfast.yaml``.
    """
    if levels == 1:
        return [(0.0, 10000.0)]
    ranges = [(0.0, 4.0)] + [(2.0**level, 2.0 ** (level + 2)) for level in range(1, levels - 1)]
    return ranges + [(2.0 ** (levels - 1), 10000.0)]


def diou_loss_1d(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """1-D Distance-IoU loss between segments given as distances from a shared point.

    A point ``c`` predicts the segment ``(c - l, c + r)``; both ``pred`` and ``target`` hold
    ``(l, r) >= 0``. The loss is ``1 - IoU + (centre distance / enclosing length)**2``
    (Zheng et al., AAAI 2020), as ActionFormer's ``ctr_diou_loss_1d`` (Sec. 3.3).

    Args:
        pred: ``[N, 2]`` predicted distances.
        target: ``[N, 2]`` target distances.
        eps: guards the divisions.

    Returns:
        ``[N]`` losses, computed in float32.
    """
    pred, target = pred.float(), target.float()
    lp, rp = pred.unbind(-1)
    lg, rg = target.unbind(-1)
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = (lp + rp) + (lg + rg) - inter
    iou = inter / union.clamp(min=eps)
    enclosing = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    centre_distance = 0.5 * ((rp - lp) - (rg - lg))
    return 1.0 - iou + (centre_distance / enclosing.clamp(min=eps)).square()


@torch.no_grad()
def assign_points(
    points: Tensor,
    strides: Tensor,
    ranges: Tensor,
    segments: Tensor,
    labels: Tensor,
    num_classes: int,
    center_radius: float | None = 1.5,
) -> tuple[Tensor, Tensor]:
    """ActionFormer's label assignment (Sec. 3.3, "center sampling") for one clip.

    A point is positive for a moment when it lies inside the moment's centre region
    (``centre +- center_radius * stride``, clipped to the moment; the whole moment when
    ``center_radius`` is None) and its largest distance to the moment's boundaries is within
    the point's regression range. A point positive for several moments takes the shortest
    (easiest to regress); moments within 1e-3 of that length all set their class.

    Args:
        points: ``[P]`` positions, in input feature steps.
        strides: ``[P]`` stride of each point's level.
        ranges: ``[P, 2]`` regression range (min, max) of each point's level, in feature steps.
        segments: ``[N, 2]`` moments (start, end) in feature steps.
        labels: ``[N]`` class ids.
        num_classes: number of classes.
        center_radius: centre-sampling radius in strides; None samples the whole moment.

    Returns:
        ``cls_targets [P, K]`` (multi-hot, all zero on negatives) and ``reg_targets [P, 2]``,
        the distances to the assigned moment's (start, end) divided by the stride.
    """
    p, n = points.shape[0], segments.shape[0]
    if n == 0:
        return points.new_zeros(p, num_classes), points.new_zeros(p, 2)
    pts = points[:, None]  # p 1
    starts, ends = segments[None, :, 0], segments[None, :, 1]  # 1 n
    reg = torch.stack((pts - starts, ends - pts), dim=-1)  # p n 2
    if center_radius is None:
        inside = reg.min(-1).values > 0
    else:
        centre = 0.5 * (starts + ends)
        radius = strides[:, None] * center_radius
        inside = (pts > torch.maximum(centre - radius, starts)) & (pts < torch.minimum(centre + radius, ends))
    farthest = reg.max(-1).values
    in_range = (farthest >= ranges[:, None, 0]) & (farthest <= ranges[:, None, 1])
    lengths = (ends - starts).expand(p, n).masked_fill(~(inside & in_range), float("inf"))
    shortest, which = lengths.min(dim=1)
    ties = (lengths <= shortest[:, None] + 1e-3) & torch.isfinite(lengths)  # p n
    cls_targets = (ties.to(points.dtype) @ F.one_hot(labels.long(), num_classes).to(points.dtype)).clamp(
        max=1.0
    )
    reg_targets = reg[torch.arange(p, device=points.device), which] / strides[:, None]
    return cls_targets, reg_targets


class _SharedConvHead(nn.Module):
    """``layers - 1`` x (masked conv, LayerNorm, ReLU) and an output conv, shared by all levels."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int = 3, kernel_size: int = 3):
        super().__init__()
        self.convs = nn.ModuleList(
            MaskedConv1d(in_dim if i == 0 else hidden, hidden, kernel_size, bias=False)
            for i in range(layers - 1)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers - 1))
        self.out = MaskedConv1d(hidden if layers > 1 else in_dim, out_dim, kernel_size)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = F.relu(norm(conv(x, mask)[0]))
        return self.out(x, mask)[0]


class ActionFormerHead(TaskHead):
    """ActionFormer (Zhang et al., ECCV 2022) for Ego4D Moment Queries on pre-extracted features.

    A :class:`~vidlit.layers.temporal_pyramid.TemporalPyramid` of local-attention transformer
    blocks encodes the clip at ``levels`` temporal scales (Sec. 3.2); every step of every level
    is a candidate moment centre. Two conv heads shared across levels predict, per step, class
    scores (sigmoid focal loss) and the distances to the moment's start and end (ReLU of a
    learnable per-level scale times the output, 1-D DIoU loss), Sec. 3.3. Training targets come
    from center sampling within per-level regression ranges (:func:`assign_points`); both losses
    are normalized by an EMA of the number of positive points. At inference (Sec. 3.4), each
    level's top-scoring (step, class) pairs are decoded into segments, merged with per-class
    Gaussian Soft-NMS and converted to seconds (:func:`~vidlit.layers.nms.batched_nms`).

    Defaults are those of ActionFormer's Ego4D configs (8 levels, window 9, abs. position
    encoding, ``init_loss_norm`` 100; ``test_cfg``: ``pre_nms_topk`` 5000, Soft-NMS sigma 0.9,
    ``max_seg_num`` 2000, ``min_score`` 0.001, ``multiclass_nms`` True, ``voting_thresh`` 0.95).
    As upstream, score voting only acts with class-agnostic NMS (``multiclass_nms=False``):
    ActionFormer's ``batched_nms`` skips it for per-class NMS, so with the Ego4D defaults the
    0.95 threshold is inert.

    Args:
        in_dim: feature channels (linked from the data module).
        num_classes: moment classes (linked from the data module).
        embed_dim: channels of the pyramid (ActionFormer's ``embd_dim`` = ``fpn_dim``).
        head_dim: channels of the classification and regression heads.
        num_heads: attention heads.
        levels: pyramid levels; level ``l`` has stride ``2**l``.
        window: odd local-attention window, in steps of each level.
        embed_layers: conv layers projecting the input features.
        stem_layers: full-resolution transformer blocks before the downsampling branch.
        embed_kernel_size: kernel of the embedding convs.
        head_layers: conv layers of each head, the output conv included.
        head_kernel_size: kernel of the head convs.
        mlp_ratio: transformer MLP width / ``embed_dim``.
        dropout: dropout in the transformer blocks.
        attn_dropout: dropout on attention weights.
        drop_path: stochastic depth of every transformer block.
        layer_scale_init: initial residual-branch scale of the blocks (ActionFormer's
            ``AffineDropPath``); None disables it.
        use_abs_pos: add a sinusoidal position encoding after the embedding.
        max_seq_len: length of that encoding (longer clips interpolate it).
        regression_range: ``levels`` (min, max) distance ranges in input feature steps;
            None uses :func:`ego4d_regression_range`.
        center_sample_radius: centre-sampling radius in strides; None labels every point
            inside a moment.
        cls_prior_prob: initial foreground probability of the classifier.
        focal_alpha: focal-loss alpha.
        focal_gamma: focal-loss gamma.
        reg_loss_weight: weight of the regression loss; <= 0 balances it with the
            classification loss on the fly (ActionFormer's ``loss_weight: -1``).
        label_smoothing: classification label smoothing.
        init_loss_norm: initial value of the loss normalizer.
        loss_norm_momentum: EMA momentum of the loss normalizer.
        pre_nms_thresh: scores at or below this are dropped before NMS.
        pre_nms_topk: the most (step, class) candidates kept per level before NMS.
        duration_thresh: candidates this short or shorter, in feature steps, are dropped.
        nms_sigma: Gaussian Soft-NMS sigma.
        nms_min_score: segments whose decayed score falls below this are dropped.
        max_segments: the most segments returned per clip.
        multiclass_nms: Soft-NMS per class (ActionFormer's ``multiclass_nms``) rather than
            over all classes at once.
        voting_thresh: with class-agnostic NMS, each kept segment's boundaries become the
            ``score * IoU``-weighted mean of the candidates overlapping it with IoU at least
            this (:func:`~vidlit.layers.nms.seg_voting`); 0 disables voting.
    """

    input = "features"
    feature_layout = "temporal"

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        embed_dim: int = 512,
        head_dim: int = 512,
        num_heads: int = 4,
        levels: int = 8,
        window: int = 9,
        embed_layers: int = 2,
        stem_layers: int = 2,
        embed_kernel_size: int = 3,
        head_layers: int = 3,
        head_kernel_size: int = 3,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        drop_path: float = 0.1,
        layer_scale_init: float | None = 1e-4,
        use_abs_pos: bool = True,
        max_seq_len: int = 1024,
        regression_range: Sequence[Sequence[float]] | None = None,
        center_sample_radius: float | None = 1.5,
        cls_prior_prob: float = 0.01,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        reg_loss_weight: float = 1.0,
        label_smoothing: float = 0.0,
        init_loss_norm: float = 100.0,
        loss_norm_momentum: float = 0.9,
        pre_nms_thresh: float = 0.001,
        pre_nms_topk: int = 5000,
        duration_thresh: float = 0.05,
        nms_sigma: float = 0.9,
        nms_min_score: float = 0.001,
        max_segments: int = 2000,
        multiclass_nms: bool = True,
        voting_thresh: float = 0.95,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        if window < 1 or window % 2 != 1:
            raise ValueError(f"window must be an odd positive number, got {window}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        if not 0.0 < cls_prior_prob < 1.0:
            raise ValueError(f"cls_prior_prob must be in (0, 1), got {cls_prior_prob}")
        if head_layers < 1:
            raise ValueError(f"head_layers must be >= 1, got {head_layers}")
        if not 0.0 <= voting_thresh <= 1.0:
            raise ValueError(f"voting_thresh must be in [0, 1] (0 disables voting), got {voting_thresh}")
        ranges = ego4d_regression_range(levels) if regression_range is None else regression_range
        ranges = [tuple(float(v) for v in r) for r in ranges]
        if len(ranges) != levels or any(len(r) != 2 or r[0] > r[1] for r in ranges):
            raise ValueError(f"regression_range must give {levels} (min, max) pairs, got {list(ranges)}")
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.levels = levels
        self.regression_range = ranges
        self.center_sample_radius = center_sample_radius
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.reg_loss_weight = reg_loss_weight
        self.label_smoothing = label_smoothing
        self.loss_norm_momentum = loss_norm_momentum
        self.pre_nms_thresh = pre_nms_thresh
        self.pre_nms_topk = pre_nms_topk
        self.duration_thresh = duration_thresh
        self.nms_sigma = nms_sigma
        self.nms_min_score = nms_min_score
        self.max_segments = max_segments
        self.multiclass_nms = multiclass_nms
        self.voting_thresh = voting_thresh

        self.pyramid = TemporalPyramid(
            in_dim, embed_dim, num_heads, levels, window,
            embed_layers=embed_layers, embed_kernel_size=embed_kernel_size, stem_layers=stem_layers,
            mlp_ratio=mlp_ratio, dropout=dropout, attn_dropout=attn_dropout, drop_path=drop_path,
            layer_scale_init=layer_scale_init, abs_pos_embed=use_abs_pos, max_seq_len=max_seq_len,
        )  # fmt: skip
        self.cls_head = _SharedConvHead(embed_dim, head_dim, num_classes, head_layers, head_kernel_size)
        self.reg_head = _SharedConvHead(embed_dim, head_dim, 2, head_layers, head_kernel_size)
        self.reg_scales = nn.Parameter(torch.ones(levels))
        # focal-loss prior (RetinaNet): start every class at cls_prior_prob, so the many
        # background points do not swamp the first updates
        nn.init.constant_(self.cls_head.out.conv.bias, -math.log((1 - cls_prior_prob) / cls_prior_prob))
        # EMA of the number of positive points: a stable normalizer for small batches
        self.register_buffer("loss_normalizer", torch.tensor(float(init_loss_norm)))

    def forward(self, features: Tensor, batch: dict[str, Any]) -> dict[str, list[Tensor]]:
        """Per-level class logits and boundary distances.

        Args:
            features: ``[B, T, in_dim]``.
            batch: a :class:`~vidlit.formats._temporal.TemporalFeatureBatch`; ``mask`` is used.

        Returns:
            ``cls_logits``: ``levels`` x ``[B, T_l, num_classes]``; ``offsets``: ``levels`` x
            ``[B, T_l, 2]`` distances to (start, end) in units of the level's stride ``2**l``;
            ``masks``: ``levels`` x ``[B, T_l]``. ``T_l`` is ``T`` padded to a multiple of
            ``2**(levels-1)``, divided by ``2**l``; step ``j`` of level ``l`` sits at input
            step ``j * 2**l``.

        On the CPU it runs with one torch thread (the setting is restored after): it is hundreds of
        small ops, which intra-op threads slow down 3-13x when the other cores are busy (data-loader
        workers; ``benchmarks/bench_contention.py``). The backward pass keeps the caller's setting.
        """
        if features.device.type != "cpu":
            return self._forward(features, batch)
        with torch_threads(1):
            return self._forward(features, batch)

    def _forward(self, features: Tensor, batch: dict[str, Any]) -> dict[str, list[Tensor]]:
        self.check_features(features)
        mask = self.sequence_mask(features, batch)
        feats, masks = self.pyramid(features, mask)
        cls_logits = [self.cls_head(f, m) for f, m in zip(feats, masks, strict=True)]
        offsets = [
            F.relu(self.reg_scales[level] * self.reg_head(f, m))
            for level, (f, m) in enumerate(zip(feats, masks, strict=True))
        ]
        return {"cls_logits": cls_logits, "offsets": offsets, "masks": masks}

    def points(self, masks: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Positions ``[P]``, strides ``[P]`` and regression ranges ``[P, 2]`` of all levels' steps."""
        device = masks[0].device
        positions, strides, ranges = [], [], []
        for level, mask in enumerate(masks):
            stride = 2**level
            t = mask.shape[1]
            positions.append(torch.arange(t, device=device, dtype=torch.float32) * stride)
            strides.append(torch.full((t,), float(stride), device=device))
            ranges.append(torch.tensor(self.regression_range[level], device=device).expand(t, 2))
        return torch.cat(positions), torch.cat(strides), torch.cat(ranges)

    def targets(self, outputs: dict[str, list[Tensor]], batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Classification ``[B, P, K]`` and regression ``[B, P, 2]`` targets (:func:`assign_points`)."""
        positions, strides, ranges = self.points(outputs["masks"])
        cls_targets, reg_targets = [], []
        for i, target in enumerate(batch["targets"]):
            segments = seconds_to_steps(
                target["segments"].to(positions.device, torch.float32).reshape(-1, 2),
                float(batch["step_sec"][i]), float(batch["offset_sec"][i]),
            )  # fmt: skip
            cls, reg = assign_points(
                positions, strides, ranges, segments, target["labels"].to(positions.device),
                self.num_classes, self.center_sample_radius,
            )  # fmt: skip
            cls_targets.append(cls)
            reg_targets.append(reg)
        return torch.stack(cls_targets), torch.stack(reg_targets)

    def loss(self, outputs: dict[str, list[Tensor]], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Sigmoid focal loss on all real points plus DIoU loss on positives, over the EMA normalizer.

        In training mode the normalizer ``loss_normalizer`` is first moved towards this batch's
        number of positive points (momentum ``loss_norm_momentum``), as in ActionFormer.

        Returns:
            ``{"loss": cls_loss + reg_loss_weight * reg_loss, "cls_loss": ..., "reg_loss": ...}``,
            float32.
        """
        device_type = outputs["masks"][0].device.type
        with torch.autocast(device_type, enabled=False):
            cls_targets, reg_targets = self.targets(outputs, batch)
            valid = torch.cat(outputs["masks"], dim=1)  # b p
            logits = torch.cat(outputs["cls_logits"], dim=1).float()  # b p k
            offsets = torch.cat(outputs["offsets"], dim=1).float()  # b p 2
            positive = (cls_targets.sum(-1) > 0) & valid
            if self.training:
                num_positive = positive.sum().clamp(min=1).to(self.loss_normalizer.dtype)
                m = self.loss_norm_momentum
                self.loss_normalizer.mul_(m).add_((1 - m) * num_positive)
            # a copy: autograd saves the divisor, and the buffer changes in place next step
            normalizer = self.loss_normalizer.detach().clone().float()

            smoothing = self.label_smoothing
            target = cls_targets[valid] * (1 - smoothing) + smoothing / (self.num_classes + 1)
            focal = sigmoid_focal_loss(
                logits[valid], target, self.focal_alpha, self.focal_gamma, reduction="sum"
            )
            cls_loss = focal / normalizer
            reg_loss = diou_loss_1d(offsets[positive], reg_targets[positive]).sum() / normalizer
            if self.reg_loss_weight > 0:
                weight = self.reg_loss_weight
            else:
                weight = cls_loss.detach() / reg_loss.detach().clamp(min=0.01)
            return {"loss": cls_loss + weight * reg_loss, "cls_loss": cls_loss, "reg_loss": reg_loss}

    @torch.no_grad()
    def predict(self, outputs: dict[str, list[Tensor]], batch: dict[str, Any]) -> list[SegmentPrediction]:
        """Decode, Soft-NMS (per class, or class-agnostic with score voting), convert to seconds.

        Segments are clamped to ``[0, duration]``, as ActionFormer's ``postprocessing``.

        Returns:
            One :class:`~vidlit.formats._temporal.SegmentPrediction` per clip, sorted by score,
            descending, on the outputs' device.
        """
        device = outputs["masks"][0].device
        predictions = []
        for i, video_id in enumerate(batch["video_ids"]):
            segments, scores, labels = [], [], []
            for level, (logits, offsets, mask) in enumerate(
                zip(outputs["cls_logits"], outputs["offsets"], outputs["masks"], strict=True)
            ):
                stride = 2**level
                probs = (logits[i].float().sigmoid() * mask[i, :, None]).flatten()  # (t k)
                candidates = torch.nonzero(probs > self.pre_nms_thresh).squeeze(1)
                top, order = probs[candidates].sort(descending=True)
                top, candidates = top[: self.pre_nms_topk], candidates[order[: self.pre_nms_topk]]
                step = torch.div(candidates, self.num_classes, rounding_mode="floor")
                distance = offsets[i, step].float() * stride
                centre = step.float() * stride
                segment = torch.stack((centre - distance[:, 0], centre + distance[:, 1]), dim=-1)
                long_enough = segment[:, 1] - segment[:, 0] > self.duration_thresh
                segments.append(segment[long_enough])
                scores.append(top[long_enough])
                labels.append((candidates % self.num_classes)[long_enough])
            # Soft-NMS is a sequential loop: cheaper on the CPU than as many small GPU kernels
            segment, score, label = batched_nms(
                torch.cat(segments).cpu(), torch.cat(scores).cpu(), torch.cat(labels).cpu(),
                sigma=self.nms_sigma, min_score=self.nms_min_score, max_segments=self.max_segments,
                multiclass=self.multiclass_nms, voting_thresh=self.voting_thresh,
            )  # fmt: skip
            segment = steps_to_seconds(segment, float(batch["step_sec"][i]), float(batch["offset_sec"][i]))
            segment = segment.clamp(min=0.0, max=float(batch["duration"][i]))
            predictions.append(
                SegmentPrediction(
                    video_id=video_id,
                    segments=segment.to(device),
                    labels=label.to(device=device, dtype=torch.int64),
                    scores=score.to(device),
                )
            )
        return predictions

    def metrics(self) -> MetricCollection:
        """Ego4D MQ's official protocol: mAP over tIoU 0.1:0.5 and Recall@1x at tIoU 0.5."""
        return MetricCollection({"map": TemporalActionMAP(num_classes=self.num_classes)})
