"""Synthetic sample datasets in each task's official layout (``vidlit data synth TASK --out DIR``).

Each generator writes small data with signal a head can learn, so every recipe runs on a fresh
machine and the tests train on it. :data:`SYNTHESIZERS` maps task names to generators; each is
a function ``write_<task>(out, seed=0, **kwargs)`` that returns the folder it wrote, imported
only when that task is asked for.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vidlit.core.imports import import_path

# task name -> "module:function"; the module is imported on first use
_GENERATORS: dict[str, str] = {
    "ego4d_mq": "vidlit.data.synth.ego4d_mq:write_ego4d_mq",
    "videos": "vidlit.data.synth.videos:write_videos",
    "internvid": "vidlit.data.synth.internvid:write_internvid",
    "ego4d_nlq": "vidlit.data.synth.ego4d_nlq:write_ego4d_nlq",
    "ego4d_fhp": "vidlit.data.synth.ego4d_fhp:write_ego4d_fhp",
    "ego4d_scod": "vidlit.data.synth.ego4d_scod:write_ego4d_scod",
    "ego4d_sta": "vidlit.data.synth.ego4d_sta:write_ego4d_sta",
    "ave": "vidlit.data.synth.ave:write_ave",
    "llp": "vidlit.data.synth.llp:write_llp",
    "xd_violence": "vidlit.data.synth.xd_violence:write_xd_violence",
    "music_dance": "vidlit.data.synth.music_dance:write_music_dance",
    "loris": "vidlit.data.synth.loris:write_loris",
    "msrvtt": "vidlit.data.synth.retrieval:write_msrvtt",
    "didemo": "vidlit.data.synth.retrieval:write_didemo",
    "activitynet": "vidlit.data.synth.retrieval:write_activitynet",
    "kinetics": "vidlit.data.synth.kinetics:write_kinetics",
}


def _load(task: str) -> Callable[..., Any]:
    return import_path(_GENERATORS[task], f"synth generator {task!r}")


class _Registry(dict):
    """A ``dict`` of task name -> generator that imports each generator lazily."""

    def __getitem__(self, task: str) -> Callable[..., Any]:
        if task not in _GENERATORS:
            raise KeyError(f"no synthetic dataset named {task!r}; known: {', '.join(sorted(_GENERATORS))}")
        return _load(task)


SYNTHESIZERS: dict[str, Callable[..., Any]] = _Registry.fromkeys(_GENERATORS)


# the characters of a YouTube video id
_YOUTUBE_ID_ALPHABET = string.ascii_letters + string.digits + "-_"


def random_youtube_id(rng: np.random.Generator, length: int = 11) -> str:
    """A made-up YouTube-style video id: ``length`` characters of ``[A-Za-z0-9_-]`` drawn from ``rng``."""
    return "".join(_YOUTUBE_ID_ALPHABET[i] for i in rng.integers(len(_YOUTUBE_ID_ALPHABET), size=length))


def require_complete(root: str | Path, marker: str | Path, task: str) -> None:
    """Refuse a sample folder that exists but lacks ``marker`` (written by another tool, or cut short).

    A data module with ``synthetic: true`` writes its sample dataset only where ``root`` does not
    exist; a folder without the file that marks a complete sample would otherwise fail later with a
    long traceback. Each generator's output folder is exactly what the recipe reads, so the fix is
    always the same command.

    Raises:
        FileNotFoundError: one line naming the folder, the missing file and the command to run.
    """
    from vidlit.core.io import file_exists, is_url, join_path

    if is_url(root):  # sample data is written to local folders only: a URL root must hold it already
        if not file_exists(join_path(root, marker)):
            raise FileNotFoundError(
                f"{root}: no {marker}: synthetic sample data is written to local folders only: run "
                f"`vidlit data synth {task} --out DIR` and copy DIR to {root}"
            )
        return
    root = Path(root)
    if root.exists() and not (root / marker).exists():
        raise FileNotFoundError(
            f"{root}: incomplete {task} sample data ({marker} is missing): run "
            f"`vidlit data synth {task} --out {root}` (or delete the folder to have the recipe write it)"
        )


def synthesize(task: str, out: str | Path, **kwargs: Any) -> Path:
    """Write the sample dataset of ``task`` under ``out`` and return the folder."""
    return SYNTHESIZERS[task](Path(out), **kwargs)
