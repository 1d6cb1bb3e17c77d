"""Every metric computes the same after a (simulated) cross-process sync as without it.

torchmetrics turns each list state into one concatenated tensor when it syncs; a ``compute``
that tests a state with ``not state`` then fails on multi-GPU runs only. This simulates the sync
in one process (world of one: the gather returns the local tensor).
"""

import pytest
import torch
import torchmetrics.metric

from vidlit.metrics.avvp import AVVPMetrics
from vidlit.metrics.classification import TopKAccuracy
from vidlit.metrics.coco_detection import COCODetectionAP
from vidlit.metrics.frame_ap import FrameLevelAP
from vidlit.metrics.hand_displacement import HandDisplacement
from vidlit.metrics.music_dance import MusicDanceRetrieval
from vidlit.metrics.recall_at_iou import RecallAtIoU
from vidlit.metrics.segment_accuracy import SegmentAccuracy
from vidlit.metrics.sta_map import ShortTermAnticipationMAP
from vidlit.metrics.temporal_map import TemporalActionMAP


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
    yield (
        TopKAccuracy,
        {"num_classes": 3, "top_k": (1, 2)},
        [
            [
                {"video_id": "a", "scores": torch.tensor([0.2, 0.5, 0.3])},
                {"video_id": "b", "scores": torch.ones(3)},
            ],
            [{"video_id": "a", "label": 2}, {"video_id": "b", "label": 0}],
        ],
    )
    frame_labels = torch.zeros(32)
    frame_labels[20:] = 1
    yield (
        FrameLevelAP,
        {},
        [
            [
                {"video_id": "v", "scores": torch.tensor([0.2, 0.9])},
                {"video_id": "w", "scores": torch.tensor([0.5])},
            ],
            [
                {"video_id": "v", "frame_labels": frame_labels},
                {"video_id": "w", "frame_labels": torch.ones(16)},
            ],
        ],
    )
    audio = torch.tensor([[1, 0]] * 4 + [[0, 0]] * 6)
    yield (
        AVVPMetrics,
        {"num_classes": 2},
        [
            [{"video_id": "v", "video_prob": torch.tensor([0.9, 0.2]), "audio_prob": audio * 0.8,
              "visual_prob": torch.rand(10, 2)}],
            [{"video_id": "v", "audio": audio, "visual": torch.zeros(10, 2)}],
        ],
    )  # fmt: skip
    box = torch.tensor([[10.0, 10.0, 20.0, 20.0], [50.0, 50.0, 10.0, 10.0]])
    yield (
        COCODetectionAP,
        {},
        [
            [{"image_id": "v/1.jpg", "boxes": box, "scores": torch.tensor([0.9, 0.3])}],
            [{"image_id": "v/1.jpg", "boxes": box[:1] + 2}],
        ],
    )
    segments, labels = torch.tensor([[0.0, 5.0], [4.0, 9.0]]), torch.tensor([1, 0])
    yield (
        TemporalActionMAP,
        {"num_classes": 2},
        [
            [{"video_id": "c", "segments": segments, "labels": labels, "scores": torch.tensor([0.9, 0.4])}],
            [
                {
                    "video_id": "c",
                    "segments": segments + torch.tensor([[1.0, 0.0], [2.0, 0.0]]),
                    "labels": labels,
                }
            ],
        ],
    )
    gt = {"video_id": "f", "boxes": box[:1], "nouns": torch.tensor([3]), "verbs": torch.tensor([1]),
          "ttcs": torch.tensor([0.5])}  # fmt: skip
    yield (
        ShortTermAnticipationMAP,
        {},
        [[{**gt, "boxes": box, "nouns": torch.tensor([3, 3]), "verbs": torch.tensor([1, 2]),
           "ttcs": torch.tensor([0.7, 0.5]), "scores": torch.tensor([0.4, 0.8])}], [gt]],
    )  # fmt: skip
    yield (
        MusicDanceRetrieval,
        {"ks": (1,)},
        [
            [{"video_id": f"d{i}", "dance_embedding": torch.randn(8), "music_embedding": torch.randn(8)}
             for i in range(4)],
            [{"video_id": f"d{i}", "music_id": f"m{i % 3}"} for i in range(4)],
        ],
    )  # fmt: skip


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
