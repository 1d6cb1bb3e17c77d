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
5. **Output** (in ``out``):

   - ``shards/shard-000000.tar``, ...: WebDataset shards (:func:`~vidlit.data.shards.write_shards`)
     of the kept pairs: the clip re-encoded as H.264 MP4, its caption, and JSON metadata. A shard
     holds whole source videos and is closed once it reaches ``samples_per_shard`` samples.
     Train on them with :class:`~vidlit.data.shards.VideoTextShards` (``InternVidDataModule(shards=...)``).
   - ``curated.jsonl``: one line per kept pair in the InternVid-10M-FLT layout --
     ``YoutubeID`` (the ``id`` of the input row, by default the source file's name without its
     suffix, so :class:`~vidlit.data.internvid.InternVidDataModule` finds the source video in
     the input folder), ``Start_timestamp`` / ``End_timestamp`` (``HH:MM:SS.mmm`` in the source
     video), ``Caption`` and ``UMT_Score``. **``UMT_Score`` here holds the cosine similarity of
     the VideoTextModel that curated the file**, not UMT's: it is the column InternVid's readers
     filter on (``min_umt_score``), so curated files work with them unchanged. ``Shard`` and
     ``Key`` name the pair's shard and sample; readers ignore them.
   - ``curate_manifest.json``: the resume state, rewritten atomically after every shard: the
     shards written and, per source video, ``done`` (with its shard and counts) or ``failed``
     (with the reason).

Resumable: a rerun skips videos whose status is ``done`` (their pairs are in a shard already)
and retries ``failed`` ones (a re-downloaded file may work now). A run killed mid-way loses only
the videos of the shard it was filling. A source video that cannot be decoded is logged,
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
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vidlit.core.device import resolve_device
from vidlit.core.fingerprint import settings_changes, weights_fingerprint
from vidlit.core.io import read_jsonl, write_atomic, write_json_atomic
from vidlit.core.progress import progress_bar
from vidlit.data.internvid import format_timestamp
from vidlit.data.sampling import uniform_segments
from vidlit.data.shards import encode_mp4, write_shards
from vidlit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, VideoBatchTransform
from vidlit.data.video import VideoDecodeError, _resize_frames, open_video, output_size

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
    """

    videos: int = 0
    resumed: int = 0
    processed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    clips: int = 0
    pairs: int = 0
    kept: int = 0
    shards: list[str] = field(default_factory=list)
    jsonl: Path | None = None
    scores: list[float] = field(default_factory=list, repr=False)
    threshold: float = 0.0

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


class _Manifest:
    """The resume state (``curate_manifest.json``), rewritten atomically."""

    def __init__(self, path: Path, settings: dict[str, Any]):
        self.path = path
        if path.is_file():
            try:
                state = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: corrupt manifest ({e}); delete it to start over") from None
            changes = settings_changes(state.get("settings") or {}, settings)
            if changes:
                raise ValueError(
                    f"{path}: this folder was curated otherwise ({'; '.join(changes)}); curate into another "
                    "folder, or pass --overwrite to start it over"
                )
            self.shards: list[str] = state.get("shards", [])
            self.videos: dict[str, dict[str, Any]] = state.get("videos", {})
        else:
            self.shards, self.videos = [], {}
        self.settings = settings

    def done(self, name: str) -> bool:
        return self.videos.get(name, {}).get("status") == "done"

    def next_shard(self) -> int:
        numbers = [int(m.group(1)) for s in self.shards if (m := re.search(r"(\d+)\.tar$", s))]
        return max(numbers, default=-1) + 1

    def save(self) -> None:
        write_json_atomic(
            {"settings": self.settings, "shards": self.shards, "videos": self.videos}, self.path
        )


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
    samples_per_shard: int = 500,
    jsonl_name: str = "curated.jsonl",
    backend: str = "auto",
    device: str | torch.device = "cpu",
    progress: bool = True,
    overwrite: bool = False,
) -> CurateSummary:
    """Cut, score, filter and write video-text pairs (see the module docstring).

    Args:
        model: a :class:`~vidlit.backbones.video_text.VideoTextModel` (anything with
            ``encode_video([b, 3, t, h, w]) -> [b, d]`` and ``encode_text(list[str]) -> [b, d]``,
            both L2-normalized).
        source: the input JSONL, or its parsed rows.
        out: output folder (created).
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
        samples_per_shard: a shard is closed once it holds this many samples.
        jsonl_name: file name of the InternVid-format JSONL in ``out``.
        backend: video backend for decoding clips.
        device: where the model runs (``"auto"``: CUDA when available).
        progress: show a progress bar.
        overwrite: delete the folder's manifest, shards and JSONL first, instead of refusing a
            folder curated with other settings or another model.

    Returns:
        The run's :class:`CurateSummary`.

    Raises:
        ValueError: bad settings, a bad input line, or an output folder curated with other
            settings or another model (see the module docstring).
    """
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {KEEP}, got {keep!r}")
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be positive, got {samples_per_shard}")
    if max_clip_seconds is not None and max_clip_seconds <= 0:
        raise ValueError(f"max_clip_seconds must be positive or None, got {max_clip_seconds}")
    tower = getattr(model, "video", None)
    num_frames = num_frames or getattr(tower, "num_frames", None)
    img_size = getattr(tower, "img_size", None)
    size = size or (img_size[0] if isinstance(img_size, tuple) else img_size)
    if not num_frames or not size:
        raise ValueError("cannot tell the model's clip length and input size; pass num_frames and size")
    videos = read_curation_input(source) if isinstance(source, (str, Path)) else list(source)
    out = Path(out)
    if overwrite:
        for path in (out / MANIFEST, out / jsonl_name):
            path.unlink(missing_ok=True)
        for path in (out / "shards").glob("shard-*"):
            path.unlink()
    (out / "shards").mkdir(parents=True, exist_ok=True)
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
    }
    manifest = _Manifest(out / MANIFEST, settings)
    summary = CurateSummary(videos=len(videos), threshold=threshold)
    device = resolve_device(device)
    model = model.to(device).eval()
    transform = VideoBatchTransform(size, train=False, mean=mean, std=std)
    pending: list[tuple[SourceVideo, dict[str, Any], list[dict[str, Any]]]] = []

    def flush() -> None:
        samples = [s for _, _, kept in pending for s in kept]
        shard = None
        if samples:
            index = manifest.next_shard()
            name = SHARD_PATTERN % index
            (url,) = write_shards(
                ({k: s[k] for k in ("key", "mp4", "caption", "json")} for s in samples),
                str(out / "shards" / SHARD_PATTERN),
                maxcount=len(samples),
                start_index=index,
            )
            lines = "".join(
                json.dumps({**s["line"], "Shard": name}, ensure_ascii=False) + "\n" for s in samples
            )
            write_atomic(lines, out / "shards" / name.replace(".tar", ".jsonl"))
            manifest.shards.append(name)
            summary.shards.append(url)
            shard = name
        for video, record, _ in pending:
            manifest.videos[video.name] = {
                **record,
                "status": "done",
                "shard": shard if record["kept"] else None,
            }
        manifest.save()
        pending.clear()

    with progress_bar("curating", len(videos), progress) as advance, torch.inference_mode():
        for video in videos:
            if manifest.done(video.name):
                summary.resumed += 1
            else:
                try:
                    record, kept, scores = _curate_video(
                        video,
                        model,
                        transform,
                        num_frames,
                        size,
                        threshold,
                        keep,
                        detector,
                        detector_threshold,
                        min_shot_frames,
                        min_clip_seconds,
                        max_clip_seconds,
                        clip_short_side,
                        backend,
                        device,
                    )
                except VideoDecodeError as e:
                    log.warning(
                        "skipping unreadable source video %s (%s): %s", video.name, video.where, e.reason
                    )
                    summary.failed.append((str(video.path), e.reason))
                    manifest.videos[video.name] = {"status": "failed", "reason": e.reason}
                else:
                    summary.processed += 1
                    summary.clips += record["clips"]
                    summary.pairs += record["pairs"]
                    summary.kept += record["kept"]
                    summary.scores.extend(scores)
                    pending.append((video, record, kept))
                    if sum(len(k) for _, _, k in pending) >= samples_per_shard:
                        flush()
            advance()
    flush()
    summary.jsonl = _merge_jsonl(out, manifest.shards, jsonl_name)
    return summary


def _curate_video(
    video: SourceVideo,
    model: nn.Module,
    transform: VideoBatchTransform,
    num_frames: int,
    size: int,
    threshold: float,
    keep: str,
    detector: str,
    detector_threshold: float | None,
    min_shot_frames: int,
    min_clip_seconds: float,
    max_clip_seconds: float | None,
    clip_short_side: int | None,
    backend: str,
    device: torch.device,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[float]]:
    """Cut, score and filter one source video: ``(counts, kept samples, every pair's score)``."""
    with open_video(video.path, backend, resize=clip_short_side) as reader:
        length, fps = len(reader), reader.fps
        shots = detect_shots(video.path, detector, detector_threshold, min_shot_frames)
        shots = [(a, min(b, length)) for a, b in shots if a < length]
        clips = split_shots(shots, fps, min_clip_seconds, max_clip_seconds)
        record = {"id": video.video_id, "shots": len(shots), "clips": len(clips), "pairs": 0, "kept": 0}
        kept: list[dict[str, Any]] = []
        all_scores: list[float] = []
        text_cache: dict[str, Tensor] = {}
        base = sample_key_prefix(video.video_id)
        for index, (first, end) in enumerate(clips):
            start_s, end_s = first / fps, end / fps
            candidates = [(j, c) for j, c in enumerate(video.captions) if c.overlaps(start_s, end_s)]
            if not candidates:
                continue
            sampled = reader.get_frames(first + uniform_segments(end - first, num_frames, train=False))
            # short side to ``size`` as the readers resize, then the eval transform's centre crop
            sampled = _resize_frames(sampled, output_size(sampled.shape[1], sampled.shape[2], size))
            clip = transform(sampled[None].to(device))  # 1 c t s s
            video_embedding = model.encode_video(clip)[0]
            missing = [c.text for _, c in candidates if c.text not in text_cache]
            if missing:
                text_cache.update(zip(missing, model.encode_text(missing)))
            scores = [float(video_embedding @ text_cache[c.text]) for _, c in candidates]
            record["pairs"] += len(candidates)
            all_scores.extend(scores)
            passing = [(s, j, c) for s, (j, c) in zip(scores, candidates) if s >= threshold]
            if keep == "best" and passing:
                passing = [max(passing, key=lambda p: p[0])]
            if not passing:
                continue
            chunks = (
                reader.get_frames(np.arange(a, min(a + 32, end))).numpy() for a in range(first, end, 32)
            )
            mp4 = encode_mp4(chunks, fps)
            for score, j, caption in passing:
                key = f"{base}_{index:04d}_{j:03d}"
                line = {
                    "YoutubeID": video.video_id,
                    "Start_timestamp": format_timestamp(start_s),
                    "End_timestamp": format_timestamp(end_s),
                    "Caption": caption.text,
                    "UMT_Score": round(score, 6),
                    "Key": key,
                }
                metadata = {
                    "video_id": video.video_id,
                    "source": video.name,
                    "start": round(start_s, 6),
                    "end": round(end_s, 6),
                    "fps": fps,
                    "score": score,
                    "clip_index": index,
                    "caption_index": j,
                }
                kept.append({"key": key, "mp4": mp4, "caption": caption.text, "json": metadata, "line": line})
        record["kept"] = len(kept)
        return record, kept, all_scores


def _merge_jsonl(out: Path, shards: list[str], name: str) -> Path:
    """The InternVid-format JSONL of every shard in the manifest, written atomically."""
    parts = [(out / "shards" / s.replace(".tar", ".jsonl")).read_text(encoding="utf-8") for s in shards]
    return write_atomic("".join(parts), out / name)


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
    parser.add_argument("--out", required=True, type=Path, help="output folder (shards, JSONL, manifest)")
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
    parser.add_argument("--samples_per_shard", type=int, default=500)
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, ...")
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
    """
    from vidlit.tasks.video_text import VideoTextPretrain

    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: checkpoint not found")
    task = VideoTextPretrain.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    return task.model, task.pixel_mean, task.pixel_std


def curate_main(args: list[str]) -> CurateSummary:
    """``vidlit curate ...``: parse ``args``, load the model, curate, print the summary.

    When no pair reaches the threshold, the score distribution is printed to choose one from.
    """
    parser = build_parser()
    options = parser.parse_args(args)
    try:
        model, mean, std = load_curation_model(options.ckpt_path)
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
            samples_per_shard=options.samples_per_shard,
            device=resolve_device(options.device),
            overwrite=options.overwrite,
        )
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    print(f"{options.out}: {summary}")
    print(f"annotations: {summary.jsonl}; shards: {options.out / 'shards'}")
    if summary.pairs and not summary.kept:
        print(
            f"no pair reached --threshold {summary.threshold:g}; scores of the {summary.pairs} pairs: "
            f"{summary.score_distribution()}"
        )
    for path, reason in summary.failed:
        print(f"  skipped unreadable video {path}: {reason}")
    return summary
