import pytest
import torch

from vidlit.core.segments import seconds_to_steps, segment_iou, steps_to_seconds


def test_segment_iou_worked_examples():
    a = torch.tensor([[0.0, 10.0], [5.0, 5.0]])
    b = torch.tensor([[2.0, 10.0], [20.0, 30.0], [5.0, 5.0]])
    iou = segment_iou(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 0] == pytest.approx(0.8)
    assert iou[0, 1] == 0
    assert iou[1, 2] == 0  # two zero-length segments: union 0


def test_seconds_steps_round_trip():
    # Ego4D SlowFast: stride 16 frames at 30 fps, window 32 frames -> step i centred at 16/30 * i + 32/60
    step, offset = 16 / 30, 32 / 60
    seconds = torch.tensor([[offset, offset + 10 * step]])
    steps = seconds_to_steps(seconds, step, offset)
    assert torch.allclose(steps, torch.tensor([[0.0, 10.0]]), atol=1e-5)
    assert torch.allclose(steps_to_seconds(steps, step, offset), seconds)
