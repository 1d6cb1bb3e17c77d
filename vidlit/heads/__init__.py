"""Task heads. Importing this package makes vidlit's heads resolvable by short name in YAML."""

from vidlit.heads.ave import MMPyramidHead, MPNHead
from vidlit.heads.base import TaskHead
from vidlit.heads.classification import AttentiveProbeHead, ClassificationHead, LinearProbeHead
from vidlit.heads.ego4d_fhp import HandForecastHead
from vidlit.heads.ego4d_mq import ActionFormerHead
from vidlit.heads.ego4d_nlq import VSLNetHead
from vidlit.heads.ego4d_scod import StateChangeDETRHead
from vidlit.heads.ego4d_sta import ShortTermAnticipationHead
from vidlit.heads.llp import AVParsingHead
from vidlit.heads.loris import LorisHead
from vidlit.heads.music_dance import MuDaRHead
from vidlit.heads.xd_violence import MACILSDHead

__all__ = [
    "AVParsingHead",
    "ActionFormerHead",
    "AttentiveProbeHead",
    "ClassificationHead",
    "HandForecastHead",
    "LinearProbeHead",
    "LorisHead",
    "MACILSDHead",
    "MMPyramidHead",
    "MPNHead",
    "MuDaRHead",
    "ShortTermAnticipationHead",
    "StateChangeDETRHead",
    "TaskHead",
    "VSLNetHead",
]
