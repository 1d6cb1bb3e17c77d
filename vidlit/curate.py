"""``vidlit curate``: the InternVid curation pipeline in miniature.

    vidlit curate sources.jsonl --ckpt_path runs/pretrain_viclip/.../last.ckpt --out data/curated \\
        --threshold 0.3


InternVid (Wang et al., 2023, Sec. 3) cuts web videos into clips at shot boundaries
(PySceneDetect), captions them, scores every clip-caption pair by video-text similarity (UMT)
and keeps the pairs above a threshold (InternVid-10M-FLT). :func:`curate` does the same with
captions you supply and a trained :class:`~vidlit.backbones.video_text.VideoTextModel` (ViCLIP):

1. **Shots.** Every source video is cut at shot boundaries by PySceneDetect
   (:func:`detect_shots`: ``ContentDetector`` or ``AdaptiveDetector``, decoding with its PyAV
   backend). Shots shorter than ``min_clip_seconds`` are dropped; shots longer than
   ``max_clip_seconds`` are split into equal consecutive clips no longer than that.
2. **Pairs.** A clip is paired with each candidate caption of its video: a timed caption when
   its ``[start, end)`` overlaps the clip, an untimed caption always.
3. **Scores.** ``num_frames`` uniformly spaced frames of the clip (segment centres), resized and
   centre-cropped to the model's input size and normalized, go through ``encode_video``; the
   captions through ``encode_text``; the score is their cosine similarity.
4. **Filter.** Pairs with ``score >= threshold`` are kept (``keep="best"``: only each clip's
   best caption, if it passes).
5. **Output** (in ``out``: a local folder or any fsspec URL, ``s3://bucket/curated``; every file
   is written atomically: temporary file and rename, or one PUT on an object store):

   - ``shards/shard-000003.tar``, ...: WebDataset shards (:func:`~vidlit.data.shards.write_shards`)
     of the kept pairs: the clip re-encoded as H.264 MP4, its caption, and JSON metadata. The
     input is split into partitions of ``videos_per_partition`` consecutive lines; shard ``p``
     holds the kept pairs of partition ``p`` (none when it kept nothing). Train on them with
     :class:`~vidlit.data.shards.VideoTextShards` (``InternVidDataModule(shards=...)``).
   - ``curated.jsonl``: one line per kept pair in the InternVid-10M-FLT layout --
     ``YoutubeID`` (the ``id`` of the input row, by default the source file's name without its
     suffix, so :class:`~vidlit.data.internvid.InternVidDataModule` finds the source video in
     the input folder), ``Start_timestamp`` / ``End_timestamp`` (``HH:MM:SS.mmm`` in the source
     video), ``Caption`` and ``UMT_Score``. **``UMT_Score`` here holds the cosine similarity of
     the VideoTextModel that curated the file**, not UMT's: it is the column InternVid's readers
     filter on (``min_umt_score``), so curated files work with them unchanged. ``Shard`` and
     ``Key`` name the pair's shard and sample; readers ignore them.
   - ``partitions/part-000003.json``: partition ``p``'s done marker, written after its shard:
     its videos (each with a SHA-256 of its input line, so an edited line redoes the partition)
     and, per video, ``done`` (with its shard and counts) or ``failed`` (with the reason).
   - ``curate_manifest.json``: the settings, the shards and every video's record, gathered from
     the markers in partition order; written at the start (settings only) and at the end of a
     run, not after each partition (the markers are the resume state).

**Captioning** (``caption="coarse,fine"``, ``vidlit curate --caption coarse,fine``): InternVid's
multi-scale captions are generated per clip (:mod:`vidlit.captioning`): the coarse one from the
middle frame by an image captioner, the fine one from ``fine_frames`` frames each captioned and
fused in order by a language model. Both are candidates of the clip (beside the input's, which
may be none), scored and filtered like given captions; the JSONL lines add ``Caption_scale``,
``Coarse_caption``, ``Fine_caption``, ``Frame_captions``, the model names and, where the
summarizer failed, ``Summary_error`` (the manifest lists those clips per video).

Resumable: a rerun skips every partition whose marker lists the same videos and whose shard is
there, and redoes the others: unfinished ones, and those with a ``failed`` video (a re-downloaded
file may work now). A run killed mid-way loses only the partitions it was working on.

**Engines** (``engine="ray"``, ``vidlit curate --engine ray``): both engines run the same three
stages per video and the same writer (:mod:`vidlit.engines`): shots and frames on CPU
(``_decode_video``), captioning and scoring with the models (``_ScoreClips``), the threshold and
clip encoding on CPU (``_encode_kept``). The local engine runs them in this process; the Ray
Data engine runs the CPU stages as tasks and the models in a pool of actors (with a GPU each
where the cluster has them) and writes each partition from the driver as it completes. The
outputs are the same files, byte for byte.

A source video that cannot be decoded is logged,
recorded as failed and skipped; :class:`CurateSummary` counts it. The manifest records the
settings (model fingerprint: the SHA-256 of its weights; threshold, keep, shot and clip settings,
input size and normalization): a rerun with other ones is refused with one line naming what
changed, so an output folder never mixes two curations (``overwrite`` starts it over). When no
pair reaches the threshold, the summary gives the score distribution to pick one from.

Input: a JSONL file, one source video per line::

    {"video": "videos/abc.mp4", "id": "abc", "captions": [
        {"start": 0.0, "end": 4.2, "text": "a man is cooking in the kitchen"},
        "a cooking show"]}

``video`` is relative to the JSONL file's folder or absolute; ``id`` is optional; each caption
is either a string (untimed: a candidate for every clip of the video) or an object with
``text`` and optional ``start`` / ``end`` seconds (timed: a candidate for the clips it overlaps).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import pickle
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vidlit.captioning import CAPTION_SCALES, DTYPES, SummarizerError
from vidlit.core.device import resolve_device
from vidlit.core.fingerprint import settings_changes, weights_fingerprint
from vidlit.core.io import read_jsonl
from vidlit.core.progress import progress_bar
from vidlit.data.sampling import uniform_segments
from vidlit.data.shards import encode_mp4, write_shards
from vidlit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, VideoBatchTransform
from vidlit.data.video import VideoDecodeError, _resize_frames, open_video, output_size
from vidlit.engines import (
    ENGINES,
    OutputFolder,
    Partition,
    Pipeline,
    add_engine_arguments,
    pending_partitions,
    ray_options,
    run_local,
    split_partitions,
)
from vidlit.engines.partitions import MARKERS
from vidlit.engines.ray_data import RayOptions
from vidlit.formats.internvid import format_timestamp

log = logging.getLogger(__name__)

__all__ = [
    "Caption",
    "CurateSummary",
    "SourceVideo",
    "curate",
    "detect_shots",
    "format_timestamp",
    "read_curation_input",
    "split_shots",
]

DETECTORS = ("content", "adaptive")
KEEP = ("all", "best")
MANIFEST = "curate_manifest.json"
CAPTION_GROUP = 32  # clips whose captioner frames are decoded and captioned together
SHARD_PATTERN = "shard-%06d.tar"
_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


# -- input ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caption:
    """A candidate caption; ``start`` / ``end`` in seconds, None for an untimed caption."""

    text: str
    start: float | None = None
    end: float | None = None

    def overlaps(self, start: float, end: float) -> bool:
        """Whether the caption is a candidate for the clip ``[start, end)``."""
        if self.start is None and self.end is None:
            return True
        lo = self.start if self.start is not None else -math.inf
        hi = self.end if self.end is not None else math.inf
        return lo < end and start < hi


@dataclass(frozen=True)
class SourceVideo:
    """One input line: a source video and its candidate captions.

    Attributes:
        path: the video file, resolved against the input file's folder.
        name: the path as written (the manifest's key).
        video_id: the ``YoutubeID`` written to the JSONL.
        captions: candidate captions.
        line: line number in the input file.
        source: the input file's name, for messages (``sources.jsonl line 5``).
    """

    path: Path
    name: str
    video_id: str
    captions: tuple[Caption, ...]
    line: int
    source: str = "input"

    @property
    def where(self) -> str:
        """``sources.jsonl line 5``: where the video is listed."""
        return f"{self.source} line {self.line}"


def sample_key_prefix(video_id: str) -> str:
    """The id as every sample key of the video starts (characters outside ``[A-Za-z0-9_-]``: ``_``)."""
    return _ID_CHARS.sub("_", video_id)


def _seconds(value: Any, key: str, where: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{where}: {key} must be a non-negative number of seconds, got {value!r}")
    return float(value)


def _caption(raw: Any, where: str) -> Caption:
    if isinstance(raw, str):
        if not raw.strip():
            raise ValueError(f"{where}: empty caption")
        return Caption(raw.strip())
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a caption is a string or an object with 'text', got {raw!r}")
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: 'text' must be a non-empty string, got {text!r}")
    start, end = _seconds(raw.get("start"), "start", where), _seconds(raw.get("end"), "end", where)
    if start is not None and end is not None and end <= start:
        raise ValueError(f"{where}: end ({end} s) must be after start ({start} s)")
    return Caption(text.strip(), start, end)


def read_curation_input(path: str | Path) -> list[SourceVideo]:
    """Parse and check a curation input JSONL (see the module docstring).

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file and line: invalid JSON, no ``video``, malformed captions,
            a video or an id listed twice, or two ids that would make the same sample keys.
    """
    path = Path(path)
    videos: list[SourceVideo] = []
    names: dict[str, int] = {}
    ids: dict[str, int] = {}
    prefixes: dict[str, tuple[str, int]] = {}
    for number, row in read_jsonl(path, "curation input"):
        where = f"{path}:{number}"
        name = row.get("video")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: 'video' must be the path of a source video, got {name!r}")
        name = name.strip()
        captions = row.get("captions", [])
        if not isinstance(captions, list):
            raise ValueError(f"{where}: 'captions' must be a list, got {type(captions).__name__}")
        video_id = row.get("id") or Path(name).stem
        if not isinstance(video_id, str):
            raise ValueError(f"{where}: 'id' must be a string, got {video_id!r}")
        for seen, value, what in ((names, name, "video"), (ids, video_id, "id")):
            if value in seen:
                raise ValueError(f"{where}: {what} {value!r} is already listed on line {seen[value]}")
            seen[value] = number
        prefix = sample_key_prefix(video_id)
        if prefix in prefixes:
            other, line = prefixes[prefix]
            raise ValueError(
                f"{where}: id {video_id!r} and id {other!r} (line {line}) would both key their samples "
                f"{prefix}_*; give one of them another id"
            )
        prefixes[prefix] = (video_id, number)
        parsed = tuple(_caption(c, f"{where}: captions[{i}]") for i, c in enumerate(captions))
        videos.append(SourceVideo(path.parent / name, name, video_id, parsed, number, path.name))
    if not videos:  # else an empty corpus and a summary of zeros, as if it had worked
        raise ValueError(f'{path}: no source videos; expected one {{"video": path, ...}} object a line')
    return videos


# -- shots ----------------------------------------------------------------------------------------


def detect_shots(
    path: str | Path, detector: str = "content", threshold: float | None = None, min_shot_frames: int = 15
) -> list[tuple[int, int]]:
    """Shot boundaries of a video with PySceneDetect (Castellano, PySceneDetect), PyAV backend.

    Args:
        path: the video.
        detector: ``"content"`` (``ContentDetector``: a cut where the HSV frame difference
            exceeds ``threshold``, default 27) or ``"adaptive"`` (``AdaptiveDetector``: where it
            exceeds ``threshold`` times its rolling average, default 3).
        threshold: the detector's threshold; None for PySceneDetect's default.
        min_shot_frames: no shot shorter than this (PySceneDetect's ``min_scene_len``).

    Returns:
        ``[(first_frame, end_frame)]``, end exclusive, covering the whole video (one shot when
        there is no cut).

    Raises:
        ValueError: an unknown detector.
        VideoDecodeError: PySceneDetect cannot read the video.
    """
    from scenedetect import AdaptiveDetector, ContentDetector, SceneManager
    from scenedetect import open_video as open_scenedetect_video

    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
    if detector == "content":
        kwargs = {} if threshold is None else {"threshold": threshold}
        instance = ContentDetector(min_scene_len=min_shot_frames, **kwargs)
    else:
        kwargs = {} if threshold is None else {"adaptive_threshold": threshold}
        instance = AdaptiveDetector(min_scene_len=min_shot_frames, **kwargs)
    try:
        # FFmpeg's log stays silenced; without decoder threads that is safe (PySceneDetect's caveat)
        stream = open_scenedetect_video(str(path), backend="pyav", suppress_output=True, threading_mode=None)
        manager = SceneManager()
        manager.add_detector(instance)
        manager.detect_scenes(stream)
        scenes = manager.get_scene_list(start_in_scene=True)
    except Exception as e:  # noqa: BLE001 - PySceneDetect and PyAV raise many error types
        raise VideoDecodeError(path, f"PySceneDetect cannot read it: {e}") from e
    return [(start.get_frames(), end.get_frames()) for start, end in scenes]


def split_shots(
    shots: Sequence[tuple[int, int]], fps: float, min_seconds: float, max_seconds: float | None
) -> list[tuple[int, int]]:
    """Clips from shots: drop shots under ``min_seconds``, split those over ``max_seconds`` evenly."""
    clips = []
    for first, end in shots:
        length = end - first
        if length < max(1, round(min_seconds * fps)):
            continue
        pieces = 1 if max_seconds is None else math.ceil(length / (max_seconds * fps) - 1e-9)
        edges = np.linspace(first, end, pieces + 1).round().astype(int)
        clips.extend((int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a)
    return clips


# -- the run --------------------------------------------------------------------------------------


@dataclass
class CurateSummary:
    """What a curation run did.

    Attributes:
        videos: source videos in the input.
        resumed: videos skipped because an earlier run finished them.
        processed: videos cut and scored by this run.
        failed: ``(video, reason)`` of the videos that could not be decoded.
        clips: clips cut by this run.
        pairs: clip-caption pairs scored.
        kept: pairs kept (written to shards and the JSONL).
        shards: shard files written by this run.
        jsonl: the InternVid-format JSONL (all runs' kept pairs).
        scores: the score of every pair this run scored.
        threshold: the threshold pairs had to reach.
        summary_failures: clips whose fine caption could not be fused (the summarizer failed).
        seconds: wall seconds per stage: ``shots`` (PySceneDetect), ``decode`` (frames for the
            captioners), ``caption``, ``summarize``, ``score`` (frames for the model and its
            encoders), ``write`` (clip encoding).
    """

    videos: int = 0
    resumed: int = 0
    processed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    clips: int = 0
    pairs: int = 0
    kept: int = 0
    shards: list[str] = field(default_factory=list)
    jsonl: Path | str | None = None
    scores: list[float] = field(default_factory=list, repr=False)
    threshold: float = 0.0
    summary_failures: int = 0
    seconds: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(
            ("shots", "decode", "caption", "summarize", "score", "write"), 0.0
        )
    )

    def __str__(self) -> str:
        return (
            f"{self.videos} source videos: {self.processed} processed, {self.resumed} finished earlier, "
            f"{len(self.failed)} unreadable; {self.clips} clips, {self.kept} of {self.pairs} clip-caption "
            f"pairs kept, {len(self.shards)} shards written"
        )

    def score_distribution(self) -> str:
        """``min -0.12, p10 ..., p25, p50, p75, p90 ..., max 0.21`` of this run's pair scores."""
        if not self.scores:
            return "no pair was scored"
        values = np.asarray(self.scores)
        points = [("min", values.min())]
        points += [(f"p{q}", np.percentile(values, q)) for q in (10, 25, 50, 75, 90)]
        points.append(("max", values.max()))
        return ", ".join(f"{name} {value:.3f}" for name, value in points)


class _CaptionPlan:
    """Which captioner frames a clip needs (InternVid's two scales); no models, so it travels to
    the decoding workers."""

    def __init__(self, scales: tuple[str, ...], frames: int, fps: float | None):
        self.scales, self.frames, self.fps = scales, frames, fps

    def count(self, length: int, video_fps: float) -> int:
        """Fine-scale frames of a clip of ``length`` frames: ``fine_frames``, or with ``fine_fps``
        one per ``1 / fine_fps`` seconds, at least 1 and at most ``fine_frames``."""
        if self.fps is None:
            return self.frames
        return min(self.frames, max(1, round(length / video_fps * self.fps)))

    def decode(self, reader: Any, clips: Sequence[tuple[int, int]]) -> dict[str, Any]:
        """The captioners' frames of ``clips``: the middle frames (coarse) and each clip's fine
        frames, concatenated (``counts`` per clip)."""
        counts = [self.count(end - first, reader.fps) for first, end in clips]
        coarse = fine = None
        if not clips:
            pass
        elif "coarse" in self.scales:
            coarse = reader.get_frames(np.asarray([first + (end - first) // 2 for first, end in clips]))
        if clips and "fine" in self.scales:
            fine = reader.get_frames(
                np.concatenate(
                    [
                        first + uniform_segments(end - first, n, train=False)
                        for (first, end), n in zip(clips, counts)
                    ]
                )
            )
        return {"coarse_frames": coarse, "fine_frames": fine, "fine_counts": counts}


class _Captioning:
    """InternVid's two caption scales for the clips of one video (see :func:`curate`'s ``caption``)."""

    def __init__(self, plan: _CaptionPlan, captioner: Any, fine_captioner: Any, summarizer: Any):
        self.plan, self.scales = plan, plan.scales
        self.captioner, self.fine_captioner, self.summarizer = captioner, fine_captioner, summarizer

    def settings(self) -> dict[str, Any]:
        """What the manifest records: a rerun with other models or another prompt is refused."""
        fine = "fine" in self.scales
        return {
            "caption": list(self.scales),
            "captioner": self.captioner.name if "coarse" in self.scales else None,
            "fine_captioner": self.fine_captioner.name if fine else None,
            "fine_frames": self.plan.frames if fine else None,
            "fine_fps": self.plan.fps if fine else None,
            "summarizer": self.summarizer.name if fine else None,
            "summarizer_url": getattr(self.summarizer, "url", None) if fine else None,
            "summary_prompt": self.summarizer.prompt if fine else None,
        }

    def run(self, group: dict[str, Any], offset: int, seconds: dict[str, float]) -> list[dict[str, Any]]:
        """Per clip of a decoded group: ``Coarse_caption`` / ``Fine_caption`` (+ ``Frame_captions``)
        and the model names; ``Summary_error`` where the summarizer failed (``Fine_caption`` None)."""
        coarse_frames, fine_frames = group["coarse_frames"], group["fine_frames"]
        results: list[dict[str, Any]] = [{} for _ in group["clips"]]
        bounds = np.cumsum([0, *group["fine_counts"]])
        tick = time.perf_counter()
        if coarse_frames is not None and fine_frames is not None and self.captioner is self.fine_captioner:
            # one model for both scales: one stream of batches
            everything = self.captioner.caption(torch.cat([coarse_frames, fine_frames]))
            coarse, per_frame = everything[: len(results)], everything[len(results) :]
        else:
            coarse = self.captioner.caption(coarse_frames) if coarse_frames is not None else None
            per_frame = self.fine_captioner.caption(fine_frames) if fine_frames is not None else None
        seconds["caption"] = seconds.get("caption", 0.0) + time.perf_counter() - tick
        for i, result in enumerate(results):
            if coarse is not None:
                result.update(Coarse_caption=coarse[i], Coarse_captioner=self.captioner.name)
            if per_frame is None:
                continue
            frame_captions = per_frame[bounds[i] : bounds[i + 1]]
            result.update(Frame_captions=frame_captions, Fine_captioner=self.fine_captioner.name)
            result.update(Summarizer=self.summarizer.name, Fine_caption=None)
            tick = time.perf_counter()
            try:
                result["Fine_caption"] = self.summarizer.summarize(frame_captions)
            except SummarizerError as e:
                log.warning("clip %d: no fine caption: %s", offset + i, e)
                result["Summary_error"] = str(e)
            seconds["summarize"] = seconds.get("summarize", 0.0) + time.perf_counter() - tick
        return results


def _captioning(
    caption: Sequence[str] | str,
    captioner: Any,
    fine_captioner: Any,
    summarizer: Any,
    frames: int,
    fps: float | None = None,
) -> _Captioning | None:
    """Check the captioning arguments of :func:`curate`; None when no scale is asked for."""
    scales = (
        tuple(s.strip() for s in caption.split(",") if s.strip())
        if isinstance(caption, str)
        else tuple(caption)
    )
    unknown = [s for s in scales if s not in CAPTION_SCALES]
    if unknown or len(set(scales)) != len(scales):
        raise ValueError(f"caption: scales are {CAPTION_SCALES}, each at most once; got {list(scales)}")
    if not scales:
        return None
    fine_captioner = fine_captioner or captioner
    if "coarse" in scales and captioner is None:
        raise ValueError("caption 'coarse' needs a captioner (--captioner)")
    if "fine" in scales and (fine_captioner is None or summarizer is None):
        raise ValueError(
            "caption 'fine' needs a captioner (--captioner / --fine_captioner) and a summarizer "
            "(--summarizer or --summarizer_url, with --summary_prompt)"
        )
    if frames < 1 or (fps is not None and not fps > 0):
        raise ValueError(f"fine_frames and fine_fps must be positive, got {frames} and {fps}")
    order = tuple(s for s in CAPTION_SCALES if s in scales)
    return _Captioning(_CaptionPlan(order, frames, fps), captioner, fine_captioner, summarizer)


# -- the stages of one source video (both engines run these) ------------------------------------


@dataclass(frozen=True)
class _Cut:
    """The settings the CPU stages need (they travel to Ray workers)."""

    num_frames: int
    size: int
    detector: str
    detector_threshold: float | None
    min_shot_frames: int
    min_clip_seconds: float
    max_clip_seconds: float | None
    clip_short_side: int | None
    backend: str
    threshold: float
    keep: str
    captions: _CaptionPlan | None


def _decode_video(cut: _Cut, video: SourceVideo) -> Iterator[dict[str, Any]]:
    """CPU stage: shots, clips, and the frames the models need, ``CAPTION_GROUP`` clips per row
    (so a long video's frames are never all in memory). An unreadable video: an ``error`` row, the
    last, possibly after good ones when decoding fails part way (the video then fails whole)."""
    try:
        with open_video(video.path, cut.backend, resize=cut.clip_short_side) as reader:
            length, fps = len(reader), reader.fps
            seconds = {"shots": 0.0, "decode": 0.0}
            tick = time.perf_counter()
            shots = detect_shots(video.path, cut.detector, cut.detector_threshold, cut.min_shot_frames)
            seconds["shots"] = time.perf_counter() - tick
            shots = [(a, min(b, length)) for a, b in shots if a < length]
            clips = split_shots(shots, fps, cut.min_clip_seconds, cut.max_clip_seconds)
            for offset in range(0, max(len(clips), 1), CAPTION_GROUP):
                group = clips[offset : offset + CAPTION_GROUP]
                tick = time.perf_counter()
                row = cut.captions.decode(reader, group) if cut.captions else {}
                frames = []
                for first, end in group:
                    has_candidates = cut.captions is not None or any(
                        c.overlaps(first / fps, end / fps) for c in video.captions
                    )
                    if not has_candidates:
                        frames.append(None)
                        continue
                    sampled = reader.get_frames(
                        first + uniform_segments(end - first, cut.num_frames, train=False)
                    )
                    # short side to ``size`` as the readers resize, then (model stage) the eval centre crop
                    frames.append(
                        _resize_frames(sampled, output_size(sampled.shape[1], sampled.shape[2], cut.size))
                    )
                seconds["decode"] = seconds.get("decode", 0.0) + time.perf_counter() - tick
                yield {
                    **row,
                    "video": video,
                    "fps": fps,
                    "shots": len(shots),
                    "num_clips": len(clips),
                    "offset": offset,
                    "clips": group,
                    "frames": frames,
                    "seconds": seconds,
                }
                seconds = {}
    except VideoDecodeError as e:
        yield {"video": video, "error": e.reason}


class _ScoreClips:
    """Model stage: caption (when asked) and score each clip of a row with the video-text model.

    Built once per model worker (:class:`~vidlit.engines.partitions.Pipeline`'s ``model``).
    """

    def __init__(
        self,
        model: nn.Module,
        captioning: _Captioning | None,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: str | torch.device,
    ):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.captioning = captioning
        self.transform = VideoBatchTransform(size, train=False, mean=mean, std=std)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if "error" in row:
            return row
        video, fps, seconds = row["video"], row["fps"], row["seconds"]
        generated = (
            self.captioning.run(row, row["offset"], seconds)
            if self.captioning
            else [{} for _ in row["clips"]]
        )
        text_cache: dict[str, Tensor] = {}
        scored, all_scores = [], []
        for k, (first, end) in enumerate(row["clips"]):
            tick = time.perf_counter()
            candidates: list[tuple[int | str, Caption]] = [
                (scale, Caption(generated[k][f"{scale.title()}_caption"]))
                for scale in CAPTION_SCALES
                if generated[k].get(f"{scale.title()}_caption")  # an empty generation is no candidate
            ]
            candidates += [(j, c) for j, c in enumerate(video.captions) if c.overlaps(first / fps, end / fps)]
            if not candidates:
                continue
            clip = self.transform(row["frames"][k][None].to(self.device))  # 1 c t s s
            video_embedding = self.model.encode_video(clip)[0]
            missing = [c.text for _, c in candidates if c.text not in text_cache]
            if missing:
                text_cache.update(zip(missing, self.model.encode_text(missing)))
            scores = [float(video_embedding @ text_cache[c.text]) for _, c in candidates]
            all_scores.extend(scores)
            seconds["score"] = seconds.get("score", 0.0) + time.perf_counter() - tick
            scored.append((k, [(s, j, c) for s, (j, c) in zip(scores, candidates)]))
        out = {k: v for k, v in row.items() if k not in ("frames", "coarse_frames", "fine_frames")}
        return {**out, "generated": generated, "scored": scored, "scores": all_scores}


def _encode_kept(cut: _Cut, row: dict[str, Any]) -> dict[str, Any]:
    """CPU stage after the model: the threshold, and the kept clips re-encoded as MP4 samples."""
    if "error" in row:
        return row
    video, fps, seconds, generated = row["video"], row["fps"], row["seconds"], row["generated"]
    base = sample_key_prefix(video.video_id)
    kept: list[dict[str, Any]] = []
    reader = None
    try:
        for k, pairs in row["scored"]:
            passing = [p for p in pairs if p[0] >= cut.threshold]
            if cut.keep == "best" and passing:
                passing = [max(passing, key=lambda p: p[0])]
            if not passing:
                continue
            index = row["offset"] + k
            first, end = row["clips"][k]
            start_s, end_s = first / fps, end / fps
            tick = time.perf_counter()
            reader = reader or open_video(video.path, cut.backend, resize=cut.clip_short_side)
            chunks = (
                reader.get_frames(np.arange(a, min(a + 32, end))).numpy() for a in range(first, end, 32)
            )
            mp4 = encode_mp4(chunks, fps)
            seconds["write"] = seconds.get("write", 0.0) + time.perf_counter() - tick
            for score, j, caption in passing:
                key = f"{base}_{index:04d}_{j:03d}" if isinstance(j, int) else f"{base}_{index:04d}_{j}"
                line = {
                    "YoutubeID": video.video_id,
                    "Start_timestamp": format_timestamp(start_s),
                    "End_timestamp": format_timestamp(end_s),
                    "Caption": caption.text,
                    "UMT_Score": round(score, 6),
                    "Key": key,
                }
                if cut.captions:  # which scale this caption is, both scales' captions and the models
                    line["Caption_scale"] = j if isinstance(j, str) else "input"
                    line.update(generated[k])
                metadata = {
                    "video_id": video.video_id,
                    "source": video.name,
                    "start": round(start_s, 6),
                    "end": round(end_s, 6),
                    "fps": fps,
                    "score": score,
                    "clip_index": index,
                    "caption_index": j,
                    **({"captions": generated[k]} if cut.captions else {}),
                }
                kept.append({"key": key, "mp4": mp4, "caption": caption.text, "json": metadata, "line": line})
    except VideoDecodeError as e:  # a kept clip's frames the model stage did not need fail to decode
        return {"video": video, "error": e.reason}
    finally:
        if reader is not None:
            reader.close()
    failures = [
        {"clip": row["offset"] + k, "error": g["Summary_error"]}
        for k, g in enumerate(generated)
        if "Summary_error" in g
    ]
    pairs = sum(len(p) for _, p in row["scored"])
    out = {k: v for k, v in row.items() if k not in ("scored", "generated")}
    return {**out, "kept": kept, "pairs": pairs, "summary_failures": failures}


def _video_result(cut: _Cut, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One video's rows (in order) as its manifest record, kept samples, scores and stage seconds."""
    first = rows[0]
    # an error row may follow good ones (a video that fails part way): the whole video fails
    error = next((r["error"] for r in rows if "error" in r), None)
    if error is not None:
        return {
            "record": {"status": "failed", "reason": error},
            "kept": [],
            "scores": [],
            "seconds": {},
        }
    record: dict[str, Any] = {
        "id": first["video"].video_id,
        "shots": first["shots"],
        "clips": first["num_clips"],
        "pairs": sum(r["pairs"] for r in rows),
        "kept": sum(len(r["kept"]) for r in rows),
    }
    if cut.captions:
        record["summary_failures"] = [f for r in rows for f in r["summary_failures"]]
    seconds: dict[str, float] = {}
    for r in rows:
        for stage, value in r["seconds"].items():
            seconds[stage] = seconds.get(stage, 0.0) + value
    return {
        "record": record,
        "kept": [s for r in rows for s in r["kept"]],
        "scores": [s for r in rows for s in r["scores"]],
        "seconds": seconds,
    }


class _CurateOutput:
    """The output folder: the manifest (settings, shards, videos), shards, their JSONL, markers."""

    def __init__(self, folder: OutputFolder, settings: dict[str, Any], jsonl_name: str, overwrite: bool):
        self.folder, self.settings, self.jsonl_name = folder, settings, jsonl_name
        if overwrite:
            for name in (MANIFEST, jsonl_name, *folder.list("shards"), *folder.list(MARKERS)):
                folder.remove(name)
        # a manifest of these settings: the folder is this curation's own (its stale files go)
        self.own = folder.exists(MANIFEST)
        if self.own:
            state = folder.read_json(MANIFEST, "curate manifest")  # corrupt: one line with line and column
            changes = settings_changes(state.get("settings") or {}, settings)
            if changes:
                raise ValueError(
                    f"{folder.url_of(MANIFEST)}: this folder was curated otherwise ({'; '.join(changes)}); "
                    "curate into another folder, or pass --overwrite to start it over"
                )
        folder.makedirs("shards")
        folder.makedirs(MARKERS)
        self.markers: dict[int, dict[str, Any]] = {}
        self.shards: set[str] | None = None  # the shards folder's listing, read once on resume
        self.save()  # the settings first: a second run into the folder is checked against them

    def remove_stale(self, partitions: Sequence[Partition]) -> None:
        """Remove the shards, their JSONL and the done markers that no partition of this input
        names (an earlier run of a longer input list), so that the shards folder holds only this
        input's pairs; in a folder without a manifest (not known to be curate's), only name them."""
        named = {p.marker for p in partitions}
        named |= {f"shards/{name}" for p in partitions for name in _shard_names(p.index)}
        ours = re.compile(rf"(shards/shard-\d{{6}}\.(tar|jsonl)|{MARKERS}/part-\d{{6}}\.json)")
        for name in (*self.folder.list("shards"), *self.folder.list(MARKERS)):
            if name in named or not ours.fullmatch(name):
                continue
            if self.own:
                log.warning("%s: removing it, no partition of this input names it", self.folder.url_of(name))
                self.folder.remove(name)
            else:
                log.warning(
                    "%s: no partition of this input names it; left alone (the folder has no %s)",
                    self.folder.url_of(name),
                    MANIFEST,
                )
        self.shards = None

    def complete(self, partition: Partition, marker: dict[str, Any]) -> bool:
        """Done: no video failed (a rerun retries them) and the shard and its JSONL are there."""
        if any(v.get("status") != "done" for v in (marker.get("videos") or {}).values()):
            return False
        shard = marker.get("shard")
        if self.shards is None:  # one listing, not two requests per partition (object stores)
            self.shards = set(self.folder.list("shards"))
        return shard is None or {f"shards/{shard}", f"shards/{_jsonl_of(shard)}"} <= self.shards

    def write_partition(self, partition: Partition, results: list[dict[str, Any]]) -> str | None:
        """The partition's shard and JSONL (when it kept any pair), then its done marker; the URL
        of the shard written."""
        samples = [s for r in results for s in r["kept"]]
        shard = url = None
        if not samples:  # a redone partition that keeps nothing now: no earlier attempt's shard stays
            for name in _shard_names(partition.index):
                self.folder.remove(f"shards/{name}")
        else:
            shard = SHARD_PATTERN % partition.index
            (url,) = write_shards(
                ({k: s[k] for k in ("key", "mp4", "caption", "json")} for s in samples),
                self.folder.url_of(f"shards/{SHARD_PATTERN}"),
                maxcount=len(samples),
                start_index=partition.index,
            )
            lines = "".join(
                json.dumps({**s["line"], "Shard": shard}, ensure_ascii=False) + "\n" for s in samples
            )
            self.folder.write(f"shards/{_jsonl_of(shard)}", lines)
        videos = {}
        for name, result in zip(partition.names, results):
            record = result["record"]
            if record.get("status") != "failed":
                record = {**record, "status": "done", "shard": shard if record["kept"] else None}
            videos[name] = record
        marker = {
            "partition": partition.index,
            "items": partition.marker_items,
            "shard": shard,
            "videos": videos,
        }
        self.folder.write_json(partition.marker, marker)
        # the markers are the resume state: the manifest is written at the start and the end only,
        # not after every partition (rewriting every video's record each time is quadratic)
        self.markers[partition.index] = marker
        return url

    def save(self) -> None:
        """The manifest, from the markers in partition order (so both engines write the same one)."""
        markers = [self.markers[p] for p in sorted(self.markers)]
        self.folder.write_json(
            MANIFEST,
            {
                "settings": self.settings,
                "shards": [m["shard"] for m in markers if m["shard"]],
                "videos": {name: record for m in markers for name, record in m["videos"].items()},
            },
        )

    def merge_jsonl(self) -> str:
        """The InternVid-format JSONL of every shard in the manifest, written atomically."""
        shards = [m["shard"] for _, m in sorted(self.markers.items()) if m["shard"]]
        parts = [self.folder.read_bytes(f"shards/{_jsonl_of(s)}").decode("utf-8") for s in shards]
        return self.folder.write(self.jsonl_name, "".join(parts))


def _input_row(video: SourceVideo) -> dict[str, Any]:
    """The input line a video was read from, canonically (its done marker records the digest, so
    that edited captions or another id under the same video name redo its partition)."""
    return {
        "video": video.name,
        "id": video.video_id,
        "captions": [{"text": c.text, "start": c.start, "end": c.end} for c in video.captions],
    }


def _jsonl_of(shard: str) -> str:
    return shard.replace(".tar", ".jsonl")


def _shard_names(index: int) -> tuple[str, str]:
    """Partition ``index``'s shard and its JSONL, in ``shards/``."""
    shard = SHARD_PATTERN % index
    return shard, _jsonl_of(shard)


def curate(
    model: nn.Module,
    source: str | Path | Sequence[SourceVideo],
    out: str | Path,
    threshold: float = 0.0,
    keep: str = "all",
    num_frames: int | None = None,
    size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    detector: str = "content",
    detector_threshold: float | None = None,
    min_shot_frames: int = 15,
    min_clip_seconds: float = 1.0,
    max_clip_seconds: float | None = 10.0,
    clip_short_side: int | None = None,
    videos_per_partition: int = 16,
    jsonl_name: str = "curated.jsonl",
    backend: str = "auto",
    device: str | torch.device = "cpu",
    progress: bool = True,
    overwrite: bool = False,
    caption: Sequence[str] = (),
    captioner: Any = None,
    fine_captioner: Any = None,
    summarizer: Any = None,
    fine_frames: int = 8,
    fine_fps: float | None = None,
    engine: str = "local",
    ray: RayOptions | None = None,
) -> CurateSummary:
    """Cut, score, filter and write video-text pairs (see the module docstring).

    Args:
        model: a :class:`~vidlit.backbones.video_text.VideoTextModel` (anything with
            ``encode_video([b, 3, t, h, w]) -> [b, d]`` and ``encode_text(list[str]) -> [b, d]``,
            both L2-normalized).
        source: the input JSONL, or its parsed rows.
        out: output folder (created): a local path or any fsspec URL (``s3://bucket/curated``).
        threshold: keep pairs whose cosine similarity is at least this.
        keep: ``"all"`` passing pairs, or only each clip's ``"best"`` caption.
        num_frames: frames per clip the model sees; defaults to the video tower's ``num_frames``.
        size: square input side; defaults to the video tower's ``img_size``.
        mean: normalization mean of ``x / 255`` the model was trained with.
        std: normalization standard deviation.
        detector: ``"content"`` or ``"adaptive"`` (PySceneDetect).
        detector_threshold: its threshold; None for PySceneDetect's default.
        min_shot_frames: shortest shot PySceneDetect reports.
        min_clip_seconds: drop shorter clips.
        max_clip_seconds: split longer shots; None never splits.
        clip_short_side: resize stored clips to this short side; None keeps the source size.
        videos_per_partition: source videos per partition: partition ``p`` (input lines
            ``p * n`` to ``p * n + n - 1``) writes ``shards/shard-{p:06d}.tar`` and its done marker.
        jsonl_name: file name of the InternVid-format JSONL in ``out``.
        backend: video backend for decoding clips.
        device: where the model runs (``"auto"``: CUDA when available; on Ray, in each actor).
        progress: show a progress bar.
        overwrite: delete the folder's manifest, shards, markers and JSONL first, instead of
            refusing a folder curated with other settings or another model.
        caption: scales to caption each clip at (InternVid's multi-scale captioning): ``"coarse"``
            (the middle frame, by ``captioner``) and / or ``"fine"`` (``fine_frames`` frames through
            the clip, each by ``fine_captioner``, fused in order by ``summarizer``). The generated
            captions are candidates of the clip beside the input's own (a video may list none).
        captioner: a :class:`~vidlit.captioning.ImageCaptioner` (anything with ``name`` and
            ``caption(uint8 [n, h, w, c]) -> list[str]``).
        fine_captioner: the fine scale's captioner; defaults to ``captioner``.
        summarizer: a :class:`~vidlit.captioning.LMSummarizer` or
            :class:`~vidlit.captioning.HTTPSummarizer` (``name``, ``prompt``,
            ``summarize(list[str]) -> str``). A :class:`~vidlit.captioning.SummarizerError` is
            recorded on the clip (``Summary_error``) and in the manifest; the run goes on.
        fine_frames: frames captioned per clip at the fine scale (with ``fine_fps``: at most).
        fine_fps: caption ``fine_fps`` frames per second of the clip instead (InternVid: 1),
            at least one and at most ``fine_frames``.
        engine: ``"local"`` (this process) or ``"ray"`` (Ray Data: shots and decoding in CPU
            tasks, the models in a pool of actors); both write the same files.
        ray: the Ray cluster address and pool sizes (``engine="ray"``).

    Returns:
        The run's :class:`CurateSummary`.

    Raises:
        ValueError: bad settings, a bad input line, or an output folder curated with other
            settings or another model (see the module docstring).
    """
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {KEEP}, got {keep!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if videos_per_partition < 1:
        raise ValueError(f"videos_per_partition must be positive, got {videos_per_partition}")
    if max_clip_seconds is not None and max_clip_seconds <= 0:
        raise ValueError(f"max_clip_seconds must be positive or None, got {max_clip_seconds}")
    tower = getattr(model, "video", None)
    num_frames = num_frames or getattr(tower, "num_frames", None)
    img_size = getattr(tower, "img_size", None)
    size = size or (img_size[0] if isinstance(img_size, tuple) else img_size)
    if not num_frames or not size:
        raise ValueError("cannot tell the model's clip length and input size; pass num_frames and size")
    captioning = _captioning(caption, captioner, fine_captioner, summarizer, fine_frames, fine_fps)
    videos = read_curation_input(source) if isinstance(source, (str, Path)) else list(source)
    settings = {
        "model_sha256": weights_fingerprint(model),
        "threshold": threshold,
        "keep": keep,
        "detector": detector,
        "detector_threshold": detector_threshold,
        "min_shot_frames": min_shot_frames,
        "min_clip_seconds": min_clip_seconds,
        "max_clip_seconds": max_clip_seconds,
        "clip_short_side": clip_short_side,
        "num_frames": num_frames,
        "size": size,
        "mean": [float(m) for m in mean],
        "std": [float(v) for v in std],
        "videos_per_partition": videos_per_partition,
        **(captioning.settings() if captioning else {}),
    }
    output = _CurateOutput(OutputFolder(out), settings, jsonl_name, overwrite)
    partitions = split_partitions(
        videos, [v.name for v in videos], videos_per_partition, [_input_row(v) for v in videos]
    )
    output.remove_stale(partitions)
    todo, done = pending_partitions(output.folder, partitions, output.complete)
    output.markers.update(done)
    summary = CurateSummary(videos=len(videos), threshold=threshold)
    summary.resumed = sum(len(p.items) for p in partitions if p.index in done)
    cut = _Cut(
        num_frames, size, detector, detector_threshold, min_shot_frames, min_clip_seconds,
        max_clip_seconds, clip_short_side, backend, threshold, keep, captioning.plan if captioning else None,
    )  # fmt: skip
    pipeline = Pipeline(
        decode=partial(_decode_video, cut),
        model=partial(
            _ScoreClips,
            model,
            captioning,
            size,
            tuple(mean),
            tuple(std),
            device if engine == "ray" else resolve_device(device),
        ),
        finish=partial(_encode_kept, cut),
    )
    started = time.perf_counter()
    with progress_bar("curating", sum(len(p.items) for p in todo), progress) as advance:

        def on_item(partition: Partition, position: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
            result = _video_result(cut, rows)
            video, record = partition.items[position], result["record"]
            if record.get("status") == "failed":
                log.warning(
                    "skipping unreadable source video %s (%s): %s", video.name, video.where, record["reason"]
                )
                summary.failed.append((str(video.path), record["reason"]))
            else:
                summary.processed += 1
                summary.clips += record["clips"]
                summary.pairs += record["pairs"]
                summary.kept += record["kept"]
                summary.scores.extend(result["scores"])
                summary.summary_failures += len(record.get("summary_failures", ()))
                for stage, value in result["seconds"].items():
                    summary.seconds[stage] = summary.seconds.get(stage, 0.0) + value
            rate = summary.clips / max(time.perf_counter() - started, 1e-9)
            advance(description=f"curating ({summary.clips} clips, {rate:.2f} clips/s)")
            return result

        def on_partition(partition: Partition, results: list[dict[str, Any]]) -> None:
            url = output.write_partition(partition, results)
            if url is not None:
                summary.shards.append(url)

        if engine == "ray":
            from vidlit.engines.ray_data import run_ray

            run_ray(todo, pipeline, on_item, on_partition, ray)
        else:
            run_local(todo, pipeline, on_item, on_partition)
    summary.shards.sort()
    output.save()
    jsonl = output.merge_jsonl()
    summary.jsonl = Path(jsonl) if output.folder.local else jsonl
    return summary


# -- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``vidlit curate`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="vidlit curate",
        description=(
            "Cut source videos at shots, score clip-caption pairs with a trained VideoTextModel (ViCLIP) "
            "and keep those above a threshold: WebDataset shards + an InternVid-format JSONL. Resumable: "
            "the manifest records the settings and the model's SHA-256, and a rerun with other ones is "
            "refused (or --overwrite)."
        ),
    )
    parser.add_argument(
        "input", type=Path, help="JSONL: {video, id?, captions: [text | {text, start?, end?}]}"
    )
    parser.add_argument(
        "--ckpt_path", required=True, type=Path, help="VideoTextPretrain Lightning checkpoint"
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder (shards, JSONL, manifest): a path or an fsspec URL (s3://...)",
    )
    parser.add_argument("--threshold", type=float, default=0.0, help="keep pairs with cosine >= this")
    parser.add_argument(
        "--keep", choices=KEEP, default="all", help="all passing captions, or each clip's best"
    )
    parser.add_argument("--detector", choices=DETECTORS, default="content", help="PySceneDetect detector")
    parser.add_argument("--detector_threshold", type=float, default=None, help="default: PySceneDetect's")
    parser.add_argument("--min_shot_frames", type=int, default=15)
    parser.add_argument("--min_clip_seconds", type=float, default=1.0)
    parser.add_argument("--max_clip_seconds", type=float, default=10.0)
    parser.add_argument("--clip_short_side", type=int, default=None, help="resize stored clips")
    add_engine_arguments(parser, 16, "one shard")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, ...")
    group = parser.add_argument_group("captioning (InternVid's coarse and fine scales)")
    group.add_argument(
        "--caption",
        default="",
        help="scales to caption each clip at: coarse, fine or coarse,fine (default: none)",
    )
    group.add_argument(
        "--captioner", help="transformers image-to-text model (hub id or folder): BLIP, BLIP-2, GIT"
    )
    group.add_argument("--fine_captioner", help="the fine scale's captioner (default: --captioner)")
    group.add_argument("--fine_frames", type=int, default=8, help="frames captioned per clip (fine scale)")
    group.add_argument(
        "--fine_fps",
        type=float,
        default=None,
        help="or frames per second of the clip (InternVid: 1), at most --fine_frames",
    )
    group.add_argument("--caption_batch_size", type=int, default=8, help="frames per generate() call")
    group.add_argument("--caption_max_new_tokens", type=int, default=30)
    group.add_argument("--caption_min_new_tokens", type=int, default=0)
    group.add_argument(
        "--caption_dtype", choices=tuple(DTYPES), default="float32", help="captioner/LM weights"
    )
    group.add_argument("--summarizer", help="local transformers causal or seq2seq LM (hub id or folder)")
    group.add_argument("--summarizer_url", help="or an OpenAI-compatible API base, e.g. http://host:8000/v1")
    group.add_argument("--summarizer_model", help="the served model's name (with --summarizer_url)")
    group.add_argument("--summary_prompt", help="the LM prompt; {captions} is replaced by the frame captions")
    group.add_argument("--summary_prompt_file", type=Path, help="or a text file holding it")
    group.add_argument("--summary_max_new_tokens", type=int, default=60)
    group.add_argument("--summary_min_new_tokens", type=int, default=0)
    group.add_argument("--summarizer_timeout", type=float, default=60.0, help="seconds per HTTP request")
    group.add_argument(
        "--summarizer_retries", type=int, default=2, help="further tries after a failed request"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the folder's manifest, shards and JSONL first (else a folder curated with other "
        "settings or another model is refused)",
    )
    return parser


def load_curation_model(ckpt_path: Path) -> tuple[nn.Module, Sequence[float] | None, Sequence[float] | None]:
    """``(VideoTextModel, pixel_mean, pixel_std)`` of a VideoTextPretrain checkpoint (``weights_only``).

    Raises:
        FileNotFoundError: no such checkpoint.
        ValueError: the file is no checkpoint, or not a VideoTextPretrain one.
    """
    from vidlit.checkpoint_io import AtomicCheckpointIO
    from vidlit.tasks.video_text import VideoTextPretrain

    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: checkpoint not found")
    try:
        task = VideoTextPretrain.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, TypeError, KeyError) as e:
        # one line, not Lightning's traceback: a file that is no checkpoint at all (a video passed by
        # mistake) says so here; another model's checkpoint (a classifier's) below
        AtomicCheckpointIO().load_checkpoint(ckpt_path)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"{ckpt_path}: cannot load it as a VideoTextPretrain checkpoint (curation scores pairs with a "
            f"video-text model, e.g. one `vidlit fit --config recipes/pretrain_viclip.yaml` trains): {first}"
        ) from e
    return task.model, task.pixel_mean, task.pixel_std


def build_captioning(options: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(captioner, fine_captioner, summarizer)`` the ``--caption*`` / ``--summar*`` flags ask for."""
    from vidlit.captioning import HTTPSummarizer, ImageCaptioner, LMSummarizer

    scales = {s.strip() for s in options.caption.split(",") if s.strip()}
    if not scales:
        return None, None, None
    device = resolve_device(options.device)
    kwargs = {
        "device": device,
        "dtype": options.caption_dtype,
        "batch_size": options.caption_batch_size,
        "max_new_tokens": options.caption_max_new_tokens,
        "min_new_tokens": options.caption_min_new_tokens,
    }
    if not options.captioner and not options.fine_captioner:
        raise ValueError("--caption needs --captioner (a transformers image-to-text model)")
    captioner = ImageCaptioner(options.captioner, **kwargs) if options.captioner else None
    fine_captioner = None
    if "fine" in scales and options.fine_captioner and options.fine_captioner != options.captioner:
        fine_captioner = ImageCaptioner(options.fine_captioner, **kwargs)
    summarizer = None
    if "fine" in scales:
        prompt = options.summary_prompt
        if options.summary_prompt_file is not None:
            if not options.summary_prompt_file.is_file():
                raise FileNotFoundError(f"{options.summary_prompt_file}: --summary_prompt_file not found")
            prompt = options.summary_prompt_file.read_text(encoding="utf-8")
        if not prompt:
            raise ValueError(
                "--caption fine needs --summary_prompt or --summary_prompt_file (with {captions})"
            )
        if options.summarizer_url:
            summarizer = HTTPSummarizer(
                options.summarizer_url,
                options.summarizer_model or options.summarizer or "default",
                prompt,
                timeout=options.summarizer_timeout,
                retries=options.summarizer_retries,
                max_tokens=options.summary_max_new_tokens,
                api_key=os.environ.get("OPENAI_API_KEY"),
            )
        elif options.summarizer:
            summarizer = LMSummarizer(
                options.summarizer,
                prompt,
                device=device,
                dtype=options.caption_dtype,
                max_new_tokens=options.summary_max_new_tokens,
                min_new_tokens=options.summary_min_new_tokens,
            )
        else:
            raise ValueError("--caption fine needs --summarizer (a local LM) or --summarizer_url")
    return captioner, fine_captioner, summarizer


def curate_main(args: list[str]) -> CurateSummary:
    """``vidlit curate ...``: parse ``args``, load the model, curate, print the summary.

    When no pair reaches the threshold, the score distribution is printed to choose one from.
    """
    parser = build_parser()
    options = parser.parse_args(args)
    if Path(options.out).is_file():  # else "Not a directory: .../shards" after loading the model
        parser.error(f"{options.out}: is a file; --out is the folder to write the corpus into")
    try:
        model, mean, std = load_curation_model(options.ckpt_path)
        captioner, fine_captioner, summarizer = build_captioning(options)
        summary = curate(
            model,
            options.input,
            options.out,
            threshold=options.threshold,
            keep=options.keep,
            mean=mean or IMAGENET_MEAN,
            std=std or IMAGENET_STD,
            detector=options.detector,
            detector_threshold=options.detector_threshold,
            min_shot_frames=options.min_shot_frames,
            min_clip_seconds=options.min_clip_seconds,
            max_clip_seconds=options.max_clip_seconds,
            clip_short_side=options.clip_short_side,
            videos_per_partition=options.videos_per_partition,
            device=resolve_device(options.device),
            overwrite=options.overwrite,
            engine=options.engine,
            ray=ray_options(options),
            caption=options.caption,
            captioner=captioner,
            fine_captioner=fine_captioner,
            summarizer=summarizer,
            fine_frames=options.fine_frames,
            fine_fps=options.fine_fps,
        )
    except (FileNotFoundError, ValueError, OSError) as e:
        parser.error(str(e))
    print(f"{options.out}: {summary}")
    print(f"annotations: {summary.jsonl}; shards: {options.out.rstrip('/')}/shards")
    if summary.summary_failures:
        print(f"{summary.summary_failures} clips have no fine caption (summarizer failed; see Summary_error)")
    if summary.clips and not summary.pairs:  # else "0 of 0 pairs kept" leaves the user guessing why
        print(
            "no clip had a candidate caption: no caption of the input overlaps a clip"
            + ("" if options.caption.strip() else " (and no --caption coarse,fine to write them)")
        )
    if summary.pairs and not summary.kept:
        print(
            f"no pair reached --threshold {summary.threshold:g}; scores of the {summary.pairs} pairs: "
            f"{summary.score_distribution()}"
        )
    for path, reason in summary.failed:
        print(f"  skipped unreadable video {path}: {reason}")
    if summary.failed and not summary.processed and not summary.resumed:  # a script must not go on
        sys.stderr.write(f"vidlit curate: error: no source video of {options.input} could be read\n")
        sys.exit(1)
    return summary
