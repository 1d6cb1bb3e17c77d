"""Datasets and data modules, one reader per official dataset format.

The names below load their module on first use (PEP 562), so ``import vidlit.data.video`` (or
``vidlit.curate`` in every Ray worker) does not import every family, Lightning and transformers
with it; ``vidlit.data.Ego4DMQ`` and a YAML ``class_path: vidlit.data.Ego4DMQ`` work as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vidlit.core.imports import import_path

# public name -> the submodule that defines it
_EXPORTS = {
    "AVEDataModule": "ave",
    "Ego4DFeatureDataModule": "ego4d",
    "Ego4DFHP": "ego4d_fhp",
    "Ego4DMQ": "ego4d_mq",
    "Ego4DNLQ": "ego4d_nlq",
    "Ego4DSCOD": "ego4d_scod",
    "Ego4DSTA": "ego4d_sta",
    "EpochStreamLoader": "epochs",
    "InternVidDataModule": "internvid",
    "LLPVideoParsing": "llp",
    "MusicDanceDataModule": "music_dance",
    "VideoListDataModule": "video_list",
    "VideoTextShards": "shards",
    "VidlitDataModule": "base",
    "XDViolence": "xd_violence",
    "write_shards": "shards",
}

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

if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from vidlit.data.ave import AVEDataModule
    from vidlit.data.base import VidlitDataModule
    from vidlit.data.ego4d import Ego4DFeatureDataModule
    from vidlit.data.ego4d_fhp import Ego4DFHP
    from vidlit.data.ego4d_mq import Ego4DMQ
    from vidlit.data.ego4d_nlq import Ego4DNLQ
    from vidlit.data.ego4d_scod import Ego4DSCOD
    from vidlit.data.ego4d_sta import Ego4DSTA
    from vidlit.data.epochs import EpochStreamLoader
    from vidlit.data.internvid import InternVidDataModule
    from vidlit.data.llp import LLPVideoParsing
    from vidlit.data.music_dance import MusicDanceDataModule
    from vidlit.data.shards import VideoTextShards, write_shards
    from vidlit.data.video_list import VideoListDataModule
    from vidlit.data.xd_violence import XDViolence


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = import_path(f"{__name__}.{module}.{name}", what=f"{__name__}.{name}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
