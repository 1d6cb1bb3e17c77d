"""Frame samplers: which frame indices of a video make one training or test example.

Every sampler takes the video's frame count first and returns ``int64`` numpy indices in
``[0, num_frames)``, ready for :meth:`vidlit.data.video.VideoReader.get_frames`. Randomness comes
only from the ``numpy.random.Generator`` passed in, so a dataset that seeds one generator per
``(seed, epoch, sample)`` gets the same clips on every run, in every DataLoader worker.

- :func:`uniform_segments`: TSN's sparse sampling (Wang et al., *Temporal Segment Networks*,
  ECCV 2016, sec. 3.2): split the video into ``k`` equal segments, one frame from each (optionally
  VideoMAE's whole-frame training segments).
- :func:`dense_clip`: one clip of ``clip_len`` frames, ``stride`` apart (I3D / SlowFast style).
- :func:`multi_view_clips`: ``num_clips`` evenly spaced test clips (the multi-view protocol of
  SlowFast / MMAction2 ``SampleFrames(num_clips=..., test_mode=True)``).
- :func:`multi_view_segments`: ``num_clips`` test views of TSN sampling, each one frame per
  segment at a different offset inside it (VideoMAE's Something-Something V2 test: 2 views).
- :func:`sample_in_window`: any of the above restricted to ``[start_sec, end_sec)``, for datasets
  whose annotations are time spans inside a longer video (InternVid, Ego4D NLQ).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np


def _check_num_frames(num_frames: int) -> None:
    if num_frames < 1:
        raise ValueError(f"cannot sample from a video with {num_frames} frames")


def _generator(rng: np.random.Generator | None) -> np.random.Generator:
    # None means fresh OS entropy, never numpy's global state, which forked DataLoader workers share
    return np.random.default_rng() if rng is None else rng


def uniform_segments(
    num_frames: int,
    k: int,
    train: bool,
    rng: np.random.Generator | None = None,
    whole_frames: bool = False,
) -> np.ndarray:
    """One frame from each of ``k`` equal segments (TSN).

    Segment ``i`` spans ``[i * n / k, (i + 1) * n / k)``; testing takes its centre,
    ``int((i + 0.5) * n / k)`` (VideoMAE's and MMAction2's test view), training a uniformly random
    frame inside it (ViCLIP / InternVideo's ``rand`` sampling splits at the same points, rounded
    down to whole frames, and never draws a segment's last frame).
    With ``whole_frames``, training draws from segments of ``n // k`` whole frames instead,
    ``i * (n // k) + randint(n // k)``, as VideoMAE's Something-Something V2 loader and
    MMAction2's ``SampleFrames`` do (the last ``n % k`` frames are never drawn). A video with
    fewer frames than ``k`` repeats frames, still in order, in both (VideoMAE takes frame 0
    ``k`` times).

    Args:
        num_frames: frames in the video.
        k: segments (frames returned).
        train: random offsets (True) or segment centres (False).
        rng: randomness for ``train``; None draws fresh entropy.
        whole_frames: VideoMAE's whole-frame training segments (testing is the same either way).

    Returns:
        ``[k]`` int64, non-decreasing.

    Raises:
        ValueError: ``num_frames < 1`` or ``k < 1``.
    """
    _check_num_frames(num_frames)
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    segment = num_frames // k
    if train and whole_frames and segment > 0:
        return np.arange(k, dtype=np.int64) * segment + _generator(rng).integers(segment, size=k)
    edges = np.arange(k + 1) * (num_frames / k)
    offsets = _generator(rng).random(k) if train else np.full(k, 0.5)
    indices = np.floor(edges[:-1] + offsets * (edges[1:] - edges[:-1])).astype(np.int64)
    return np.clip(indices, 0, num_frames - 1)


def multi_view_segments(num_frames: int, k: int, num_clips: int) -> np.ndarray:
    """``num_clips`` test views of TSN sampling over the whole video, one frame per segment each.

    The views take the frame at ``num_clips`` evenly spaced offsets inside every segment, one of
    them the centre: one view is :func:`uniform_segments`' test view (the centres); two are
    VideoMAE's Something-Something V2 test (``ssv2.py``, ``test_num_segment=2``): the segment
    starts ``int(i * n / k)``, then the centres ``int((i + 0.5) * n / k)``; MMAction2's
    ``SampleFrames(twice_sample=True)`` takes the same two.

    Args:
        num_frames: frames in the video.
        k: segments (frames per view).
        num_clips: views.

    Returns:
        ``[num_clips, k]`` int64; each row non-decreasing, rows in order of their offset.

    Raises:
        ValueError: any argument below 1.
    """
    _check_num_frames(num_frames)
    if k < 1 or num_clips < 1:
        raise ValueError(f"k and num_clips must be positive, got {k} and {num_clips}")
    # offsets (0.5 + j / v) mod 1, sorted: {0.5} for one view, {0, 0.5} for two
    offsets = np.sort((0.5 + np.arange(num_clips) / num_clips) % 1.0)
    tick = num_frames / k
    # ``v k`` legend: view, segment
    indices = np.floor(tick * np.arange(k)[None, :] + offsets[:, None] * tick).astype(np.int64)
    return np.clip(indices, 0, num_frames - 1)


def clip_span(clip_len: int, stride: int) -> int:
    """Frames a clip of ``clip_len`` frames, ``stride`` apart, covers: ``(clip_len - 1) * stride + 1``."""
    if clip_len < 1 or stride < 1:
        raise ValueError(f"clip_len and stride must be positive, got {clip_len} and {stride}")
    return (clip_len - 1) * stride + 1


def _clip_at(num_frames: int, start: int, clip_len: int, stride: int) -> np.ndarray:
    # a video shorter than the clip repeats its last frame
    return np.minimum(start + np.arange(clip_len, dtype=np.int64) * stride, num_frames - 1)


def _evenly_spaced_starts(num_frames: int, span: int, num_clips: int) -> np.ndarray:
    # the centres of num_clips equal parts of the possible starts, as MMAction2's test mode
    # does; one clip is the centre clip
    possible = max(num_frames - span, 0) + 1
    return np.floor((np.arange(num_clips) + 0.5) * possible / num_clips).astype(np.int64)


def dense_clip(
    num_frames: int, clip_len: int, stride: int, train: bool, rng: np.random.Generator | None = None
) -> np.ndarray:
    """One clip of ``clip_len`` frames, ``stride`` apart.

    Training starts it at a uniformly random frame, testing centres it (the same clip as
    ``multi_view_clips(..., num_clips=1)``). A video shorter than the clip's span starts at frame
    0 and repeats its last frame to fill the clip.

    Args:
        num_frames: frames in the video.
        clip_len: frames returned.
        stride: frames between consecutive clip frames.
        train: random (True) or centred (False) start.
        rng: randomness for ``train``; None draws fresh entropy.

    Returns:
        ``[clip_len]`` int64, non-decreasing.

    Raises:
        ValueError: ``num_frames``, ``clip_len`` or ``stride`` below 1.
    """
    _check_num_frames(num_frames)
    span = clip_span(clip_len, stride)
    if train:
        start = int(_generator(rng).integers(0, max(num_frames - span, 0) + 1))
    else:
        start = int(_evenly_spaced_starts(num_frames, span, 1)[0])
    return _clip_at(num_frames, start, clip_len, stride)


def multi_view_clips(num_frames: int, clip_len: int, stride: int, num_clips: int) -> np.ndarray:
    """``num_clips`` evenly spaced test clips (multi-view testing).

    The possible start frames are cut into ``num_clips`` equal parts and each clip starts at
    the centre of one. Clips of a short video all start at 0 and repeat its last frame.

    Args:
        num_frames: frames in the video.
        clip_len: frames per clip.
        stride: frames between consecutive clip frames.
        num_clips: clips returned.

    Returns:
        ``[num_clips, clip_len]`` int64; rows in time order.

    Raises:
        ValueError: any argument below 1.
    """
    _check_num_frames(num_frames)
    span = clip_span(clip_len, stride)
    if num_clips < 1:
        raise ValueError(f"num_clips must be positive, got {num_clips}")
    starts = _evenly_spaced_starts(num_frames, span, num_clips)
    return np.stack([_clip_at(num_frames, int(s), clip_len, stride) for s in starts])


def frame_window(
    num_frames: int, fps: float, start_sec: float, end_sec: float | None = None
) -> tuple[int, int]:
    """Frames ``[first, stop)`` that overlap ``[start_sec, end_sec)``.

    Frame ``i`` shows ``[i / fps, (i + 1) / fps)``. The window is cut to the video's end
    (annotations often run a little past a re-encoded video) and always holds at least one frame.

    Args:
        num_frames: frames in the video.
        fps: its frame rate.
        start_sec: window start, seconds from the video start.
        end_sec: window end; None means the end of the video.

    Raises:
        ValueError: no frames, ``fps <= 0``, a negative start, ``end_sec <= start_sec``, or a
            start at or past the end of the video.
    """
    _check_num_frames(num_frames)
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    duration = num_frames / fps
    end_sec = duration if end_sec is None else end_sec
    if start_sec < 0 or end_sec <= start_sec:
        raise ValueError(f"invalid time window [{start_sec}, {end_sec}) seconds")
    if start_sec >= duration:
        raise ValueError(
            f"time window [{start_sec}, {end_sec}) starts after the video ends "
            f"({num_frames} frames, {duration:.3f} s)"
        )
    # a small tolerance keeps e.g. 0.3 s * 10 fps = 2.9999999999999996 on frame 3
    first = min(math.floor(start_sec * fps + 1e-6), num_frames - 1)
    stop = min(max(math.ceil(end_sec * fps - 1e-6), first + 1), num_frames)
    return first, stop


def sample_in_window(
    sampler: Callable[..., np.ndarray],
    num_frames: int,
    fps: float,
    start_sec: float,
    end_sec: float | None = None,
    **sampler_kwargs: Any,
) -> np.ndarray:
    """Run a sampler on the frames of a time window only.

    Example: 8 TSN frames from an InternVid clip at 12.5-17.0 s of a 30 fps video::

        sample_in_window(uniform_segments, len(reader), reader.fps, 12.5, 17.0, k=8, train=True, rng=rng)

    Args:
        sampler: :func:`uniform_segments`, :func:`dense_clip`, :func:`multi_view_clips` or any
            function whose first argument is a frame count and which returns indices into it.
        num_frames: frames in the whole video.
        fps: its frame rate.
        start_sec: window start in seconds.
        end_sec: window end in seconds; None means the end of the video.
        **sampler_kwargs: the sampler's other arguments.

    Returns:
        The sampler's indices, shifted into the window: indices into the whole video.

    Raises:
        ValueError: see :func:`frame_window`, plus the sampler's own.
    """
    first, stop = frame_window(num_frames, fps, start_sec, end_sec)
    return first + sampler(stop - first, **sampler_kwargs)
