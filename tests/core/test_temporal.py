"""Feature slicing by seconds, VSLNet resampling and span <-> seconds grids."""

import math

import numpy as np
import pytest
import torch

from vidlit.core.temporal import (
    resample_features,
    seconds_to_span,
    slice_by_seconds,
    span_to_seconds,
    step_range,
)


def test_slice_follows_the_ego4d_nlq_floor_ceil_rule():
    # prepare_ego4d_dataset.py: feature[floor(start * 30 / 16) : ceil(end * 30 / 16) + 1]
    features = torch.arange(100, dtype=torch.float32)[:, None]
    step = 16 / 30
    for start, end in [(0.0, 10.0), (3.3, 7.9), (8.0, 8.0), (16 / 30 * 15, 16 / 30 * 20)]:
        clip = slice_by_seconds(features, start, end, step)
        first, last = math.floor(start * 30 / 16 + 1e-9), math.ceil(end * 30 / 16 - 1e-9) + 1
        assert clip[:, 0].tolist() == list(range(first, last)), (start, end)
    # exact step boundaries do not pick up a neighbour through float error: 8 s = step 15
    assert step_range(8.0, 8.0, step) == (15, 16)


def test_slice_with_offset_and_clipping():
    features = torch.arange(10, dtype=torch.float32)[:, None]
    # step i starts at 1 + 2 i: [4, 9] s covers steps 1 (3-5 s) to 4 (9-11 s)
    assert slice_by_seconds(features, 4.0, 9.0, 2.0, offset_sec=1.0)[:, 0].tolist() == [1, 2, 3, 4]
    # a window running past the end is cut at the last step
    assert slice_by_seconds(features, 15.0, 100.0, 2.0)[:, 0].tolist() == [7, 8, 9]


def test_slice_errors_name_the_window():
    features = torch.zeros(10, 4)
    with pytest.raises(ValueError, match=r"window \[30.000, 40.000\] s has no feature step"):
        slice_by_seconds(features, 30.0, 40.0, 1.0)
    with pytest.raises(ValueError, match="end_sec 1.0 is before start_sec 2.0"):
        slice_by_seconds(features, 2.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="step_sec must be positive"):
        slice_by_seconds(features, 0.0, 1.0, 0.0)


def _vslnet_sampling(feature: np.ndarray, max_num_clips: int) -> np.ndarray:
    # VSLNet's visual_feature_sampling (NLQ/VSLNet/utils/data_util.py), the reference
    num_clips = feature.shape[0]
    if num_clips <= max_num_clips:
        return feature
    idxs = np.round(np.arange(0, max_num_clips + 1, 1.0) / max_num_clips * num_clips).astype(np.int32)
    idxs[idxs > num_clips - 1] = num_clips - 1
    out = []
    for i in range(max_num_clips):
        s, e = idxs[i], idxs[i + 1]
        out.append(np.mean(feature[s:e], axis=0) if s < e else feature[s])
    return np.asarray(out)


@pytest.mark.parametrize("length,max_len", [(10, 4), (130, 128), (257, 128), (12, 12), (5, 8), (7, 6)])
def test_resample_matches_vslnet(length, max_len):
    features = torch.randn(length, 3, generator=torch.Generator().manual_seed(length))
    expected = _vslnet_sampling(features.numpy(), max_len)
    got = resample_features(features, max_len)
    assert got.shape == (min(length, max_len), 3)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_span_grid_round_trip_and_vslnet_labels():
    # 10 s clip on 10 units of 1 s: [2.0, 5.0] is exactly units 2..4
    assert seconds_to_span(2.0, 5.0, 10, 10.0) == (2, 4)
    windows = span_to_seconds(torch.tensor([2]), torch.tensor([4]), 10, 10.0)
    assert windows.tolist() == [[2.0, 5.0]]
    # [2.2, 4.6]: the best-IoU span is still 2..4 (IoU 2.4 / 3 = 0.8 against 0.69 for 2..3)
    assert seconds_to_span(2.2, 4.6, 10, 10.0) == (2, 4)
    # window beyond the clip end: the last unit
    assert seconds_to_span(9.5, 10.0, 10, 10.0) == (9, 9)


def test_zero_length_window_gets_the_unit_containing_it():
    # the baseline's argmax over all-zero IoUs would label (0, 0); here the unit holding 7.5 s
    assert seconds_to_span(7.5, 7.5, 10, 10.0) == (7, 7)
    assert seconds_to_span(10.0, 10.0, 10, 10.0) == (9, 9)
