"""Metrics implementing each dataset's official evaluation protocol, as torchmetrics Metrics."""

from vidlit.metrics.classification import TopKAccuracy
from vidlit.metrics.temporal_map import TemporalActionMAP

__all__ = ["TemporalActionMAP", "TopKAccuracy"]
