"""Hungarian matching of set predictions to ground truth, for DETR-style detection heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from vidlit.core.boxes import cxcywh_to_xyxy, generalized_box_iou


class HungarianMatcher(nn.Module):
    """One-to-one assignment of predictions to targets that minimizes a DETR matching cost.

    Carion et al., "End-to-End Object Detection with Transformers" (ECCV 2020), section 3.1 and
    appendix A.1: the cost of giving target ``j`` to prediction ``i`` is

    ``cost_class * (-p_i(c_j)) + cost_bbox * ||b_i - b_j||_1 + cost_giou * (-GIoU(b_i, b_j))``

    with ``p_i`` the softmax class probabilities (the no-object class last), boxes in normalized
    ``cxcywh`` and GIoU on their corners. DETR's weights are 1, 5 and 2. Each image is solved
    exactly with :func:`scipy.optimize.linear_sum_assignment`; with more predictions than targets
    every target gets one prediction and the rest stay unmatched (they learn "no object").

    Args:
        cost_class: weight of the class term.
        cost_bbox: weight of the L1 box term.
        cost_giou: weight of the generalized-IoU term.
    """

    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0):
        super().__init__()
        if min(cost_class, cost_bbox, cost_giou) < 0 or cost_class == cost_bbox == cost_giou == 0:
            raise ValueError(
                "matching costs must be non-negative and not all 0, got "
                f"{cost_class}, {cost_bbox}, {cost_giou}"
            )
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou

    @torch.no_grad()
    def forward(
        self, logits: Tensor, boxes: Tensor, target_labels: Sequence[Tensor], target_boxes: Sequence[Tensor]
    ) -> list[tuple[Tensor, Tensor]]:
        """Match each image's predictions to its targets.

        Shape legend: ``b`` images, ``q`` queries, ``k`` classes, ``n`` targets of an image.

        Args:
            logits: ``[b, q, k + 1]`` class logits, the no-object class last.
            boxes: ``[b, q, 4]`` predicted normalized ``cxcywh`` boxes.
            target_labels: ``b`` int64 tensors ``[n]`` of class ids in ``[0, k)``.
            target_boxes: ``b`` tensors ``[n, 4]`` of normalized ``cxcywh`` boxes.

        Returns:
            ``b`` pairs ``(query_idx, target_idx)`` of int64 tensors of equal length
            ``min(q, n)``, sorted by ``query_idx``.
        """
        if len(target_labels) != logits.shape[0] or len(target_boxes) != logits.shape[0]:
            raise ValueError(
                f"got {logits.shape[0]} images of predictions but {len(target_labels)} label and "
                f"{len(target_boxes)} box targets"
            )
        b, q = logits.shape[:2]
        sizes = [len(t) for t in target_labels]
        empty = torch.empty(0, dtype=torch.long)
        if sum(sizes) == 0:
            return [(empty, empty) for _ in range(b)]
        # one cost matrix over every (query of every image, target of every image); the blocks of
        # other images are cut away below (DETR's batching: one big matmul beats b small ones)
        prob = logits.flatten(0, 1).float().softmax(-1)  # (b q) k+1
        out_boxes = boxes.flatten(0, 1).float()  # (b q) 4
        tgt_labels = torch.cat(list(target_labels)).to(logits.device, torch.long)
        tgt_boxes = torch.cat(list(target_boxes)).to(boxes.device, torch.float32)
        cost = (
            -self.cost_class * prob[:, tgt_labels]
            + self.cost_bbox * torch.cdist(out_boxes, tgt_boxes, p=1)
            - self.cost_giou * generalized_box_iou(cxcywh_to_xyxy(out_boxes), cxcywh_to_xyxy(tgt_boxes))
        )
        cost = cost.view(b, q, -1).cpu()
        matches = []
        for i, block in enumerate(cost.split(sizes, dim=-1)):
            rows, cols = linear_sum_assignment(block[i].numpy())
            matches.append((torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)))
        return matches
