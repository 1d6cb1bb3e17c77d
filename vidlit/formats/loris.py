"""LORIS (rhythm-conditioned soundtrack generation): the family's contract.

LORIS (Yu et al., "Long-Term Rhythmic Video Soundtracker", ICML 2023) generates a music waveform
in sync with a dance, floor-exercise or figure-skating video. Its released data is three parallel
text lists per split, aligned by line: an audio ``.wav``, the clip's I3D visual features ``.npy``
and its 2-D pose ``.npy``. vidlit names them ``{split}_audio.txt``, ``{split}_visual.txt`` and
``{split}_pose.txt``; each line is a path relative to the dataset root::

    train_audio.txt     audio/gBR_sBM_c01_d04_mBR0_ch01_seg0.wav
    train_visual.txt    visual/gBR_sBM_c01_d04_mBR0_ch01_seg0.npy     [2 Hz steps, 1024] float
    train_pose.txt      pose/gBR_sBM_c01_d04_mBR0_ch01_seg0.npy       [16 Hz frames, 17, 3] float

A clip's id is its audio file's stem. For the dance subset the genre is the AIST code in the id
(``gBR``: break); floor exercise and figure skating have none.

Units: audio at :data:`SAMPLE_RATE` (22,050 Hz mono, peak-normalized to :data:`PEAK`), visual
features at :data:`VISUAL_RATE` (one I3D vector per 0.5 s), pose at :data:`POSE_RATE` (16 Hz,
COCO-17 key points as ``(x, y, confidence)``). Condition step ``k`` covers time ``k / rate``.
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath
from typing import TypedDict

from pydantic import model_validator
from torch import Tensor

from vidlit.formats._schema import NonEmptyStr, Record

__all__ = [
    "GAIN_RANGE",
    "LIST_KINDS",
    "NUM_JOINTS",
    "PEAK",
    "POSE_RATE",
    "SAMPLE_RATE",
    "SEGMENT_SAMPLES",
    "VISUAL_RATE",
    "LorisBatch",
    "LorisClip",
    "LorisPrediction",
    "LorisTarget",
    "condition_steps",
    "list_name",
]

SAMPLE_RATE = 22050  # LORIS's audio rate (and the beat metric's)
SEGMENT_SAMPLES = 2**19  # the generated length of the 25-s configurations (~23.8 s)
PEAK = 0.95  # peak normalization of every waveform
VISUAL_RATE = 2.0  # I3D features per second
POSE_RATE = 16.0  # pose frames per second
NUM_JOINTS = 17  # COCO-17 key points
GAIN_RANGE = (0.3, 1.0)  # random gain at train time
LIST_KINDS = ("audio", "visual", "pose")
_SUFFIXES = {"audio": ".wav", "visual": ".npy", "pose": ".npy"}


def list_name(split: str, kind: str) -> str:
    """The list file of one split and kind: ``{split}_{kind}.txt``."""
    return f"{split}_{kind}.txt"


def condition_steps(num_samples: int, sample_rate: int, rate: float) -> int:
    """Condition steps at ``rate`` Hz that cover ``num_samples`` of audio (the last one partly)."""
    return math.ceil(num_samples / sample_rate * rate - 1e-9)


class LorisClip(Record):
    """One line of the three lists: the clip's audio, visual-feature and pose files."""

    audio: NonEmptyStr
    visual: NonEmptyStr
    pose: NonEmptyStr

    @model_validator(mode="after")
    def _suffixes(self) -> LorisClip:
        for kind, suffix in _SUFFIXES.items():
            name = getattr(self, kind)
            if PurePosixPath(name).suffix.lower() != suffix:
                raise ValueError(f"key {kind!r}: expected a {suffix} file, got {name!r}")
        return self

    @property
    def clip_id(self) -> str:
        """The audio file's stem."""
        return PurePosixPath(self.audio).stem


class LorisTarget(TypedDict):
    """The reference of one clip: what the beat metric compares a generated waveform with.

    Attributes:
        video_id: the clip id.
        audio: ``[n]`` reference waveform (peak-normalized, no gain).
        sample_rate: its rate.
    """

    video_id: str
    audio: Tensor
    sample_rate: int


class LorisBatch(TypedDict):
    """A collated LORIS batch; shape legend ``b`` clips, ``n`` samples, ``t`` pose frames,
    ``v`` visual steps, ``d`` feature width.

    Attributes:
        audio: ``[b, 1, n]`` waveforms (train: random crop and gain; eval: from the clip's start).
        beats: ``[b, t]`` binary visual-beat sequence at :data:`POSE_RATE` (1 on a beat frame).
        visual: ``[b, v, d]`` I3D features at :data:`VISUAL_RATE`.
        genre: ``[b]`` genre index, -1 where the subset has none.
        sample_rate: the waveforms' rate.
        video_ids: clip ids.
        targets: one :class:`LorisTarget` per clip.
    """

    audio: Tensor
    beats: Tensor
    visual: Tensor
    genre: Tensor
    sample_rate: int
    video_ids: list[str]
    targets: list[LorisTarget]


class LorisPrediction(TypedDict):
    """One generated soundtrack (``predict`` output; the beat metric's input).

    Attributes:
        video_id: the clip id.
        waveform: ``[n]`` generated audio, float in about ``[-1, 1]``.
        sample_rate: its rate.
    """

    video_id: str
    waveform: Tensor
    sample_rate: int
