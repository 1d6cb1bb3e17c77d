"""The music-dance family's contract: AIST naming, batch / target types, rates and constants.

AIST Dance Video Database (Tsuchida et al., ISMIR 2019) / AIST++ (Li et al., ICCV 2021): a
sequence is named ``g{genre}_s{situation}_c{camera}_d{dancer}_m{genre}{music}_ch{choreo}``
(:data:`AIST_NAME`); splits are ``splits/crossmodal_{split}.txt`` (:data:`SPLIT_FILE`), one name a
line. Units: music at :data:`SAMPLE_RATE` Hz; onset envelopes at :data:`ENVELOPE_RATE` frames a
second (10 ms hop); log-mel patches one a second.

Used by :mod:`vidlit.data.music_dance`, :mod:`vidlit.data.synth.music_dance`,
:mod:`vidlit.heads.music_dance` and :mod:`vidlit.metrics.music_dance`.
"""

from __future__ import annotations

import re
from typing import TypedDict

from torch import Tensor

from vidlit.layers.log_mel import SAMPLE_RATE

__all__ = [
    "AIST_GENRES",
    "AIST_NAME",
    "ENVELOPE_RATE",
    "SAMPLE_RATE",
    "SPLIT_FILE",
    "MusicDanceBatch",
    "MusicDanceTarget",
]

# the ten AIST genre codes: break, pop, lock, middle hip-hop, LA hip-hop, house, waack, krump,
# street jazz, ballet jazz
AIST_GENRES = ("BR", "PO", "LO", "MH", "LH", "HO", "WA", "KR", "JS", "JB")
ENVELOPE_RATE = 100  # onset-envelope frames per second (10 ms hop of the log-mel front end)
SPLIT_FILE = "splits/crossmodal_{split}.txt"
AIST_NAME = re.compile(
    r"^g(?P<genre>[A-Z]{2})_s(?P<situation>[A-Z]{2})_c(?P<camera>\d{2}|All)_d(?P<dancer>\d{2})"
    r"_m(?P<music_genre>[A-Z]{2})(?P<music>\d)_ch(?P<choreo>\d{2})$"
)


class MusicDanceTarget(TypedDict):
    """Ground truth of one window for the retrieval and genre metrics."""

    video_id: str
    music_id: str
    label: int  # genre index in AIST_GENRES


class MusicDanceBatch(TypedDict):
    """A batch of music-dance windows, as :func:`vidlit.data.music_dance.collate_music_dance` returns it.

    Shape legend: ``b`` windows, ``t`` motion steps (``clip_seconds * motion_fps``), ``c`` grid
    cells, ``n`` envelope frames (``clip_seconds * ENVELOPE_RATE``), ``s`` seconds.

    Attributes:
        motion: ``[b, t, c]`` frame-difference energy per grid cell (the head's ``input``).
        visual_envelope: ``[b, n]`` visual onset envelope, max-normalized per window.
        audio_envelope: ``[b, n]`` music onset envelope, max-normalized per window.
        audio: ``[b, s, 96, 64]`` log-mel patches of the music window.
        genre: ``[b]`` int64 genre index in :data:`AIST_GENRES`.
        video_ids: ``"<sequence>@<start seconds>"`` per window.
        music_ids: ``"<music id>@<start seconds>"``: dances of one music over one span share it.
        targets: one :class:`MusicDanceTarget` per window.
    """

    motion: Tensor
    visual_envelope: Tensor
    audio_envelope: Tensor
    audio: Tensor
    genre: Tensor
    video_ids: list[str]
    music_ids: list[str]
    targets: list[MusicDanceTarget]
