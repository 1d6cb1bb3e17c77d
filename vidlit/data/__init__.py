"""Datasets and data modules, one reader per official dataset format."""

from vidlit.data.base import VidlitDataModule
from vidlit.data.ego4d import Ego4DMomentQueries

__all__ = ["Ego4DMomentQueries", "VidlitDataModule"]
