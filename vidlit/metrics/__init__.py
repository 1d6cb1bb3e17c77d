"""Metrics implementing each dataset's official evaluation protocol, as torchmetrics Metrics."""

from vidlit.metrics.classification import TopKAccuracy
from vidlit.metrics.frame_ap import FrameLevelAP
from vidlit.metrics.retrieval import RetrievalRecall
from vidlit.metrics.temporal_map import TemporalActionMAP

__all__ = ["FrameLevelAP", "RetrievalRecall", "TemporalActionMAP", "TopKAccuracy"]
