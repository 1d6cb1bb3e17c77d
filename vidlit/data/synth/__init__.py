"""Synthetic sample datasets in each task's official layout (``vidlit data synth TASK --out DIR``).

Each generator writes small data with signal a head can learn, so every recipe runs on a fresh
machine and the tests train on it. :data:`SYNTHESIZERS` maps task names to generators.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def _ego4d_mq(out: Path, **kwargs: Any) -> Any:
    from vidlit.data.synth.ego4d_mq import write_ego4d_mq

    return write_ego4d_mq(out, **kwargs)


def _videos(out: Path, num_videos: int = 32, **kwargs: Any) -> Any:
    from vidlit.data.synth.videos import write_synthetic_videos

    write_synthetic_videos(out, num_videos, **kwargs)
    return out


SYNTHESIZERS: dict[str, Callable[..., Any]] = {"ego4d_mq": _ego4d_mq, "videos": _videos}
