"""Synthetic sample datasets in each task's official layout (``vidlit data synth TASK --out DIR``).

Each generator writes small data with signal a head can learn, so every recipe runs on a fresh
machine and the tests train on it. :data:`SYNTHESIZERS` maps task names to generators; each is
a function ``write_<task>(out, seed=0, **kwargs)`` that returns the folder it wrote, imported
only when that task is asked for.
"""

from __future__ import annotations

import logging
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
    "pans": "vidlit.data.synth.videos:write_pans",
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
            f"`vidlit data synth {task} --out {root} --overwrite` (or delete the folder to have the recipe write it)"
        )


def write_sample_if_missing(
    root: str | Path,
    write: Callable[[Path], Any],
    what: str,
    *,
    marker: str | Path | None = None,
    task: str | None = None,
    log: logging.Logger | None = None,
    announce: bool = False,
) -> None:
    """Write the synthetic sample into a local ``root`` that does not exist, then check it is complete.

    What a data module with ``synthetic: true`` does in its constructor: a missing local folder
    gets the sample (``write(root)``) with the warning ``<root> does not exist: writing the
    SYNTHETIC <what> there``, so nobody mistakes sample data for the real dataset; a URL is never
    written to. Given ``marker``, :func:`require_complete` then refuses a folder (or URL) that
    exists without that file.

    Args:
        root: the dataset folder, or an fsspec URL string (which must hold the sample already).
        write: called with ``Path(root)`` to write the sample.
        what: the sample as the warning names it, e.g. ``"LLP sample dataset"``.
        marker: the file, relative to ``root``, whose absence marks an incomplete sample; None
            skips the check.
        task: the ``vidlit data synth`` task the error tells the user to run (needed with ``marker``).
        log: the data module's logger (default: this module's).
        announce: also print ``writing the synthetic <what> dataset to <root>``, for a CLI user
            whose logging shows no warnings.

    Raises:
        FileNotFoundError: ``marker`` is missing from an existing ``root`` (:func:`require_complete`).
    """
    from vidlit.core.io import is_url

    if not is_url(root) and not Path(root).exists():
        (log or logging.getLogger(__name__)).warning(
            "%s does not exist: writing the SYNTHETIC %s there", root, what
        )
        if announce:
            print(f"writing the synthetic {what} dataset to {root}")
        write(Path(root))
    if marker is not None:
        if task is None:
            raise TypeError("write_sample_if_missing: marker needs the task named in the error")
        require_complete(root, marker, task)


def synthesize(task: str, out: str | Path, **kwargs: Any) -> Path:
    """Write the sample dataset of ``task`` under ``out`` and return the folder."""
    return SYNTHESIZERS[task](Path(out), **kwargs)
