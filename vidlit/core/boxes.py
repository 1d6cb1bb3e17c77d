"""Bounding-box utilities shared by the detection heads (state change object detection, STA, ...).

Three layouts, in torchvision's names (:func:`torchvision.ops.box_convert`):

- ``"xyxy"``: ``(x1, y1, x2, y2)`` corners, what IoU functions take;
- ``"xywh"``: ``(x, y, width, height)`` from the top-left corner, the COCO annotation and
  result-file layout (and Ego4D's ``{"x", "y", "width", "height"}`` boxes);
- ``"cxcywh"``: ``(cx, cy, width, height)``, what DETR-style heads regress, in ``[0, 1]``
  relative to the image.

Image sizes are ``(height, width)``, as in torchvision (``clip_boxes_to_image``): a pair, or a
``[..., 2]`` tensor broadcasting against the boxes' leading dimensions (one size per image).
IoU and generalized IoU are torchvision's :func:`~torchvision.ops.box_iou` and
:func:`~torchvision.ops.generalized_box_iou`, re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou, generalized_box_iou

__all__ = [
    "box_convert",
    "box_iou",
    "generalized_box_iou",
    "cxcywh_to_xyxy",
    "xyxy_to_cxcywh",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
    "normalize_boxes",
    "denormalize_boxes",
    "clip_boxes",
]

Size = Sequence[int] | Sequence[float] | Tensor


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` centre-size boxes to corners."""
    return box_convert(boxes, "cxcywh", "xyxy")


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` corner boxes to centre-size."""
    return box_convert(boxes, "xyxy", "cxcywh")


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` COCO ``(x, y, w, h)`` boxes to corners."""
    return box_convert(boxes, "xywh", "xyxy")


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` corner boxes to COCO ``(x, y, w, h)``."""
    return box_convert(boxes, "xyxy", "xywh")


def _scale(size: Size, boxes: Tensor) -> Tensor:
    """``[..., 4]`` factors ``(w, h, w, h)`` from ``(h, w)`` sizes, broadcastable against ``boxes``."""
    size = torch.as_tensor(size, dtype=boxes.dtype, device=boxes.device)
    if size.shape[-1:] != (2,):
        raise ValueError(
            f"image size must be (height, width) or a [..., 2] tensor, got shape {list(size.shape)}"
        )
    height, width = size[..., 0], size[..., 1]
    scale = torch.stack([width, height, width, height], dim=-1)
    # one size per image of a [b, n, 4] batch: [b, 2] -> [b, 1, 4]
    while scale.ndim < boxes.ndim:
        scale = scale.unsqueeze(-2)
    return scale


def normalize_boxes(boxes: Tensor, size: Size) -> Tensor:
    """Pixel boxes to ``[0, 1]`` image-relative ones (any layout: every coordinate is an x or a y).

    Args:
        boxes: ``[..., 4]`` in pixels, in ``xyxy``, ``xywh`` or ``cxcywh`` order.
        size: ``(height, width)`` of the image, or a ``[..., 2]`` tensor of sizes, one per image.
    """
    return boxes / _scale(size, boxes)


def denormalize_boxes(boxes: Tensor, size: Size) -> Tensor:
    """``[0, 1]`` image-relative boxes to pixels (the inverse of :func:`normalize_boxes`)."""
    return boxes * _scale(size, boxes)


def clip_boxes(boxes: Tensor, size: Size) -> Tensor:
    """Clip ``[..., 4]`` ``xyxy`` pixel boxes to the image: x to ``[0, width]``, y to ``[0, height]``.

    Like :func:`torchvision.ops.clip_boxes_to_image`, but ``size`` may be a tensor of per-image
    sizes. Pass ``(1, 1)`` to clip normalized boxes to ``[0, 1]``.
    """
    scale = _scale(size, boxes)
    return torch.minimum(boxes.clamp(min=0), scale)
