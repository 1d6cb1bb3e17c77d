"""Every metric computes the same after a (simulated) cross-process sync as without it.

torchmetrics turns each list state into one concatenated tensor when it syncs; a ``compute``
that tests a state with ``not state`` then fails on multi-GPU runs only. This simulates the sync
in one process (world of one: the gather returns the local tensor).
"""

import pytest
import torch
import torchmetrics.metric

from vidlit.metrics.hand_displacement import HandDisplacement
from vidlit.metrics.recall_at_iou import RecallAtIoU
from vidlit.metrics.segment_accuracy import SegmentAccuracy


def _cases():
    hands = torch.rand(5, 2, 2) * 64
    valid = torch.ones(5, 2, dtype=torch.bool)
    yield (
        HandDisplacement,
        {},
        [[{"video_id": "a", "hands": hands}], [{"video_id": "a", "hands": hands + 2, "valid": valid}]],
    )
    yield (
        RecallAtIoU,
        {},
        [
            [{"video_id": "q0", "windows": torch.tensor([[1.0, 4.0], [0.0, 2.0]])}],
            [{"video_id": "q0", "window": torch.tensor([1.0, 3.0])}],
        ],
    )
    labels = torch.tensor([28, 3, 3, 28, 28, 28, 28, 28, 28, 28])
    yield (
        SegmentAccuracy,
        {"num_classes": 29},
        [[{"video_id": "v", "labels": labels}], [{"video_id": "v", "labels": labels}]],
    )


@pytest.mark.parametrize("case", list(_cases()), ids=lambda c: c[0].__name__)
def test_compute_after_sync_equals_local(case, monkeypatch):
    cls, kwargs, (preds, targets) = case
    local = cls(**kwargs)
    local.update(preds, targets)
    expected = local.compute()
    monkeypatch.setattr(torchmetrics.metric, "jit_distributed_available", lambda: True)
    synced = cls(**kwargs, dist_sync_fn=lambda tensor, group=None: [tensor])
    synced.update(preds, targets)
    synced.update(preds, targets)  # a second update: more than one element per state
    got = synced.compute()
    if not isinstance(expected, dict):
        expected, got = {"value": expected}, {"value": got}
    assert expected
    for key, value in expected.items():
        torch.testing.assert_close(torch.as_tensor(got[key]).float(), torch.as_tensor(value).float())
