"""Datasets and data modules, one reader per official dataset format."""

from vidlit.data.base import VidlitDataModule
from vidlit.data.ego4d import Ego4DMomentQueries
from vidlit.data.video_list import VideoListDataModule
from vidlit.data.xd_violence import XDViolence

__all__ = ["Ego4DMomentQueries", "VideoListDataModule", "VidlitDataModule", "XDViolence"]
