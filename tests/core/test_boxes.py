"""Box conversions, scaling and clipping against hand-computed values and torchvision."""

import pytest
import torch
from torchvision.ops import box_convert, clip_boxes_to_image

from vidlit.core.boxes import (
    clip_boxes,
    cxcywh_to_xyxy,
    denormalize_boxes,
    normalize_boxes,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)


def test_conversions_worked_example():
    xyxy = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert xyxy_to_xywh(xyxy).tolist() == [[10.0, 20.0, 20.0, 40.0]]
    assert xyxy_to_cxcywh(xyxy).tolist() == [[20.0, 40.0, 20.0, 40.0]]
    assert xywh_to_xyxy(torch.tensor([[10.0, 20.0, 20.0, 40.0]])).tolist() == xyxy.tolist()
    assert cxcywh_to_xyxy(torch.tensor([[20.0, 40.0, 20.0, 40.0]])).tolist() == xyxy.tolist()


def test_round_trips_match_torchvision():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(3, 5, 2, generator=g) * 50
    xyxy = torch.cat([xy, xy + torch.rand(3, 5, 2, generator=g) * 20], -1)
    torch.testing.assert_close(xyxy_to_cxcywh(xyxy), box_convert(xyxy, "xyxy", "cxcywh"))
    torch.testing.assert_close(cxcywh_to_xyxy(xyxy_to_cxcywh(xyxy)), xyxy)
    torch.testing.assert_close(xywh_to_xyxy(xyxy_to_xywh(xyxy)), xyxy)


def test_normalize_uses_height_width_order():
    # a 100 x 200 (h x w) frame: x coordinates are divided by 200, y by 100
    boxes = torch.tensor([[50.0, 25.0, 150.0, 75.0]])
    normalized = normalize_boxes(boxes, (100, 200))
    assert normalized.tolist() == [[0.25, 0.25, 0.75, 0.75]]
    assert denormalize_boxes(normalized, (100, 200)).tolist() == boxes.tolist()


def test_per_image_sizes_broadcast_over_a_batch():
    boxes = torch.full((2, 3, 4), 0.5)  # b n 4
    sizes = torch.tensor([[10, 20], [30, 40]])  # b 2, (h, w)
    pixels = denormalize_boxes(boxes, sizes)
    assert pixels[0, 0].tolist() == [10.0, 5.0, 10.0, 5.0]
    assert pixels[1, 2].tolist() == [20.0, 15.0, 20.0, 15.0]
    torch.testing.assert_close(normalize_boxes(pixels, sizes), boxes)


def test_clip_matches_torchvision_and_takes_per_image_sizes():
    boxes = torch.tensor([[-5.0, 3.0, 70.0, 90.0], [10.0, -1.0, 20.0, 20.0]])
    torch.testing.assert_close(clip_boxes(boxes, (64, 48)), clip_boxes_to_image(boxes, (64, 48)))
    batch = torch.stack([boxes, boxes])
    clipped = clip_boxes(batch, torch.tensor([[64, 48], [32, 16]]))
    assert clipped[1, 0].tolist() == [0.0, 3.0, 16.0, 32.0]


def test_bad_size_is_an_error():
    with pytest.raises(ValueError, match="height, width"):
        normalize_boxes(torch.zeros(1, 4), (1, 2, 3))
