"""Metrics implementing each dataset's official evaluation protocol, as torchmetrics Metrics."""

from vidlit.metrics.avvp import AVVPMetrics
from vidlit.metrics.beat_alignment import BeatAlignment
from vidlit.metrics.classification import TopKAccuracy
from vidlit.metrics.coco_detection import COCODetectionAP
from vidlit.metrics.frame_ap import FrameLevelAP
from vidlit.metrics.hand_displacement import HandDisplacement
from vidlit.metrics.recall_at_iou import RecallAtIoU
from vidlit.metrics.retrieval import RetrievalRecall
from vidlit.metrics.segment_accuracy import SegmentAccuracy
from vidlit.metrics.sta_map import ShortTermAnticipationMAP
from vidlit.metrics.temporal_map import TemporalActionMAP

__all__ = [
    "AVVPMetrics",
    "BeatAlignment",
    "COCODetectionAP",
    "FrameLevelAP",
    "HandDisplacement",
    "RecallAtIoU",
    "RetrievalRecall",
    "SegmentAccuracy",
    "ShortTermAnticipationMAP",
    "TemporalActionMAP",
    "TopKAccuracy",
]
