"""The XD-Violence family's contract: annotation schema, batch / target / prediction types, constants.

Official layout (Wu et al., ECCV 2020, ``Roc-Ng/XDVioDet``; reused by MACIL-SD): I3D RGB and
VGGish feature lists, video-level labels in the video names (``_label_A`` = normal), and for the
test videos ``annotations.txt``: ``<video> start1 end1 start2 end2 ...``, violent frame ranges
``[start, end)`` in frames. Units: one feature row (snippet) is :data:`CLIP_LEN` frames.

Used by :mod:`vidlit.data.xd_violence`, :mod:`vidlit.data.synth.xd_violence`,
:mod:`vidlit.heads.xd_violence` and :mod:`vidlit.metrics.frame_ap`.
"""

from __future__ import annotations

from typing import TypedDict

from pydantic import model_validator
from torch import Tensor

from vidlit.formats._schema import NonEmptyStr, Record

__all__ = [
    "AUDIO_SUFFIX",
    "CLIP_LEN",
    "MAX_SEQLEN",
    "NORMAL_FLAG",
    "NUM_CROPS",
    "AnnotationLine",
    "XDViolenceBatch",
    "XDViolencePrediction",
    "XDViolenceTarget",
    "is_violent",
]

CLIP_LEN = 16  # frames per I3D snippet: one feature row
NUM_CROPS = 5  # I3D crops per video (the official 5-crop / 10-crop features)
MAX_SEQLEN = 200  # training sequences are resampled to this many snippets (official uniform_extract)
NORMAL_FLAG = "_label_A"  # a video is normal iff its name contains it
AUDIO_SUFFIX = "__vggish"  # <video>__vggish.npy


def is_violent(video: str) -> bool:
    """The video-level label from the name: normal iff it contains ``_label_A``."""
    return NORMAL_FLAG not in video


class AnnotationLine(Record):
    """One line of ``annotations.txt``: a test video's violent frame ranges.

    Frame numbers come from a text file: whole numbers only (``"1.5"`` or ``"2x"`` is an error),
    ``0 <= start < end``; a video named normal (``_label_A``) has no violent frames to annotate.
    """

    video: NonEmptyStr
    ranges: list[tuple[int, int]]

    @model_validator(mode="after")
    def _check(self) -> AnnotationLine:
        if not self.ranges:
            raise ValueError("expected pairs of frame numbers 'start end ...' after the video name")
        for start, end in self.ranges:
            if start < 0 or end <= start:
                raise ValueError(f"invalid frame range {start} {end} (need 0 <= start < end)")
        if not is_violent(self.video):
            raise ValueError(f"video {self.video!r} is named normal ({NORMAL_FLAG}) but has violent frames")
        return self


class XDViolenceTarget(TypedDict, total=False):
    """Ground truth of one sample: ``label`` (training, 1 = violent) or ``frame_labels`` (evaluation)."""

    video_id: str
    label: int
    frame_labels: Tensor  # uint8 [16 * T]


class XDViolenceBatch(TypedDict):
    """What :func:`vidlit.data.xd_violence.collate_xd_violence` returns and the head reads.

    Shape legend: ``b`` videos, ``k`` crops, ``t`` snippets, ``c`` RGB channels, ``a`` audio channels.
    """

    features: Tensor  # float [b, t, c] (training, one crop) or [b, k, t, c] (evaluation)
    audio: Tensor  # float [b, t, a]
    mask: Tensor  # bool [b, t], True on real snippets
    labels: Tensor  # float [b], 1 = violent
    video_ids: list[str]
    targets: list[XDViolenceTarget]


class XDViolencePrediction(TypedDict):
    """One video's prediction, as :class:`~vidlit.heads.xd_violence.MACILSDHead` ``predict`` returns it."""

    video_id: str
    scores: Tensor  # float [T] violence probability of each snippet (the metric repeats it CLIP_LEN times)
