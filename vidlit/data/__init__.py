"""Datasets and data modules, one reader per official dataset format."""

from vidlit.data.ave import AVEDataModule
from vidlit.data.base import EpochStreamLoader, VidlitDataModule
from vidlit.data.ego4d import Ego4DFeatureDataModule
from vidlit.data.ego4d_fhp import Ego4DFHP
from vidlit.data.ego4d_mq import Ego4DMQ
from vidlit.data.ego4d_nlq import Ego4DNLQ
from vidlit.data.ego4d_scod import Ego4DSCOD
from vidlit.data.ego4d_sta import Ego4DSTA
from vidlit.data.internvid import InternVidDataModule
from vidlit.data.llp import LLPVideoParsing
from vidlit.data.music_dance import MusicDanceDataModule
from vidlit.data.shards import VideoTextShards, write_shards
from vidlit.data.video_list import VideoListDataModule
from vidlit.data.xd_violence import XDViolence

__all__ = [
    "AVEDataModule",
    "Ego4DFeatureDataModule",
    "Ego4DFHP",
    "Ego4DMQ",
    "Ego4DNLQ",
    "Ego4DSCOD",
    "Ego4DSTA",
    "EpochStreamLoader",
    "InternVidDataModule",
    "LLPVideoParsing",
    "MusicDanceDataModule",
    "VideoListDataModule",
    "VideoTextShards",
    "VidlitDataModule",
    "XDViolence",
    "write_shards",
]
