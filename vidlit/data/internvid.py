"""InternVid video-text pairs: the official annotation JSONL over a folder of source videos.

InternVid (Wang et al., 2023, "InternVid: A Large-scale Video-Text Dataset for Multimodal
Understanding and Generation") releases its captions as JSON Lines, one clip per line, cut out
of a YouTube video by timestamps::

    {"YoutubeID": "-2CVJ-Nfi5E", "Start_timestamp": "00:07:33.689", "End_timestamp": "00:07:51.085",
     "Caption": "a man is cooking in the kitchen", "UMT_Score": 0.4301, "Aesthetic_Score": 4.87}

- ``YoutubeID``: the source video; its file is ``<video_dir>/<YoutubeID>.<ext>`` (``.mp4``,
  ``.mkv``, ``.webm``, ``.mov``, ``.avi`` or ``.m4v``, as ``yt-dlp`` saves it).
- ``Start_timestamp`` / ``End_timestamp``: the clip window, ``HH:MM:SS.mmm``.
- ``Caption``: the clip's caption.
- ``UMT_Score`` (optional): video-text similarity by UMT, which InternVid-10M-FLT filters on.
- ``Aesthetic_Score`` (optional): the LAION aesthetic predictor's score of the clip's frames.

Other keys are ignored. :func:`read_internvid_annotations` checks every line (errors name the
file and the line). :class:`InternVidDataset` samples ``num_frames`` frames inside each clip's
window (TSN segments, as ViCLIP samples 8 frames per clip); :class:`InternVidDataModule` batches
them for :class:`~vidlit.tasks.video_text.VideoTextPretrain`, or streams training pairs from
WebDataset tar shards (:class:`~vidlit.data.shards.VideoTextShards`) instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vidlit.core.io import confined_path, read_jsonl
from vidlit.data.base import EpochSeeded, global_seed
from vidlit.data.raw_video import RawVideoDataModule
from vidlit.data.sampling import sample_in_window, uniform_segments
from vidlit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, VideoBatchTransform, bound_aspect
from vidlit.data.video import VideoDecodeError, open_video
from vidlit.formats._schema import validate
from vidlit.formats.internvid import (  # noqa: F401  (the family's names, re-exported)
    VIDEO_SUFFIXES,
    InternVidRecord,
    VideoTextBatch,
    format_timestamp,
    parse_timestamp,
)

__all__ = [
    "InternVidClip",
    "InternVidDataModule",
    "InternVidDataset",
    "collate_video_text",
    "format_timestamp",
    "parse_timestamp",
    "read_internvid_annotations",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InternVidClip:
    """One annotation line.

    Attributes:
        youtube_id: the source video's ``YoutubeID``.
        start: window start in seconds.
        end: window end in seconds.
        caption: the caption.
        umt_score: ``UMT_Score``, None when absent.
        aesthetic_score: ``Aesthetic_Score``, None when absent.
        clip_id: ``"<YoutubeID>_<Start_timestamp>_<End_timestamp>"`` as written; several captions
            of one window share it (multi-caption retrieval).
        line: 1-based line number in the annotation file.
        where: where the annotation file has it, for messages; empty: ``annotation line <line>``.
    """

    youtube_id: str
    start: float
    end: float
    caption: str
    umt_score: float | None
    aesthetic_score: float | None
    clip_id: str
    line: int
    where: str = ""


def read_internvid_annotations(
    path: str | Path, min_umt_score: float | None = None, min_aesthetic_score: float | None = None
) -> list[InternVidClip]:
    """Parse and check an InternVid annotation JSONL file.

    Args:
        path: the ``.jsonl`` file.
        min_umt_score: keep only clips with ``UMT_Score`` at least this (clips without a score are
            dropped too), as InternVid-10M-FLT selects clips.
        min_aesthetic_score: keep only clips with ``Aesthetic_Score`` at least this.

    Returns:
        The kept clips in file order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file and line: invalid JSON, a missing or empty key, a malformed
            timestamp, ``End_timestamp <= Start_timestamp``, or a non-numeric score.
    """
    path = Path(path)
    clips = []
    for number, row in read_jsonl(path, "InternVid annotation file"):
        record = validate(InternVidRecord, row, path, where=f"line {number}")
        umt, aesthetic = record.umt_score, record.aesthetic_score
        if min_umt_score is not None and (umt is None or umt < min_umt_score):
            continue
        if min_aesthetic_score is not None and (aesthetic is None or aesthetic < min_aesthetic_score):
            continue
        clip_id = f"{record.youtube_id}_{record.start_timestamp}_{record.end_timestamp}"
        clips.append(
            InternVidClip(
                record.youtube_id, record.start, record.end, record.caption, umt, aesthetic, clip_id, number
            )
        )
    return clips


def find_source_video(video_dir: str | Path, youtube_id: str) -> Path:
    """``<video_dir>/<youtube_id><suffix>`` for the first suffix of :data:`VIDEO_SUFFIXES` that exists,
    else the ``.mp4`` path (which then fails to open and is skipped or raises)."""
    video_dir = Path(video_dir)
    for suffix in VIDEO_SUFFIXES:
        candidate = confined_path(video_dir, f"{youtube_id}{suffix}", f"YoutubeID {youtube_id!r}")
        if candidate.is_file():
            return candidate
    return video_dir / f"{youtube_id}.mp4"


class InternVidDataset(EpochSeeded, Dataset):
    """Clips of InternVid annotations, decoded from their source videos.

    Each item opens the clip's source video (one decode thread), takes ``num_frames`` frames from
    equal segments of the ``[start, end)`` window (random inside each segment in training, the
    centres in evaluation: TSN sampling, as ViCLIP's 8-frame clips) and resizes them at decode time
    so the short side is ``short_side``. Training randomness is a function of
    ``(seed, epoch, index)``, whatever DataLoader worker loads the item.

    Items are ``{"video": uint8 [t, h, w, 3], "caption": str, "video_id": str}``, the sample
    format of :class:`~vidlit.data.shards.VideoTextShards`, so :func:`collate_video_text` batches
    both; an unreadable video (missing, corrupt, or a window past its end) gives
    ``{"error": path, "reason": str, "video_id": str}`` instead, which the collate function drops
    and lists (or, with ``strict``, raises :class:`~vidlit.data.video.VideoDecodeError`).

    Args:
        clips: annotation lines (:func:`read_internvid_annotations`).
        video_dir: folder of the source videos.
        num_frames: frames per clip.
        train: random (True) or deterministic (False) sampling.
        short_side: decode-time resize of the short side; None keeps the stored size.
        backend: video backend for :func:`~vidlit.data.video.open_video`.
        strict: raise on an unreadable video instead of returning a failure marker.
        seed: base seed of the training randomness.
    """

    def __init__(
        self,
        clips: Sequence[InternVidClip],
        video_dir: str | Path,
        num_frames: int = 8,
        train: bool = False,
        short_side: int | None = None,
        backend: str = "auto",
        strict: bool = False,
        seed: int = 0,
    ):
        if num_frames < 1:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        super().__init__(seed)
        self.clips = list(clips)
        self.video_dir = Path(video_dir)
        self.num_frames = num_frames
        self.train = train
        self.short_side = short_side
        self.backend = backend
        self.strict = strict
        self._paths: dict[str, Path] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def path(self, clip: InternVidClip) -> Path:
        """The source video file of a clip."""
        if clip.youtube_id not in self._paths:
            self._paths[clip.youtube_id] = find_source_video(self.video_dir, clip.youtube_id)
        return self._paths[clip.youtube_id]

    def frame_indices(self, clip: InternVidClip, num_frames: int, fps: float, index: int) -> np.ndarray:
        """``[t]`` frame indices of item ``index`` in a source video of ``num_frames`` frames."""
        rng = self.rng(index) if self.train else None
        return sample_in_window(
            uniform_segments,
            num_frames,
            fps,
            clip.start,
            clip.end,
            k=self.num_frames,
            train=self.train,
            rng=rng,
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self.clips[index]
        path = self.path(clip)
        try:
            with open_video(path, self.backend, resize=self.short_side, num_threads=1) as reader:
                try:
                    indices = self.frame_indices(clip, len(reader), reader.fps, index)
                except ValueError as e:  # a window outside the video
                    where = clip.where or f"annotation line {clip.line}"
                    raise VideoDecodeError(path, f"{where}: {e}") from e
                frames = reader.get_frames(indices)
        except VideoDecodeError as e:
            if self.strict:
                raise
            return {"error": str(path), "reason": e.reason, "video_id": clip.clip_id}
        # per clip, before batching: the batch's size follows the configuration, not the files
        frames = bound_aspect(frames, self.short_side)
        return {"video": frames, "caption": clip.caption, "video_id": clip.clip_id}


def collate_video_text(
    samples: Sequence[dict[str, Any]], num_frames: int = 1, empty_size: int = 1
) -> dict[str, Any]:
    """Batch video-text samples (of :class:`InternVidDataset` or of ``VideoTextShards``).

    Failure markers (``{"error", "reason"}``) are dropped and listed. Clips whose frames differ in
    size are zero-padded to the largest; ``frame_size`` keeps each clip's true size, which the
    batch transform crops inside.

    Returns:
        ``{"video": uint8 [b, t, h, w, 3], "frame_size": int64 [b, 2], "captions": [str],
        "video_ids": [str], "targets": [{"video_id", "caption"}], "skipped": [path],
        "skip_reasons": [str]}``, plus ``"labels"`` (int64 ``[b]``, -1 where unknown) when any
        sample has a ``"label"``.
    """
    good = [s for s in samples if "error" not in s]
    failed = [s for s in samples if "error" in s]
    clips = [torch.as_tensor(s["video"]) for s in good]
    if clips:
        height = max(c.shape[1] for c in clips)
        width = max(c.shape[2] for c in clips)
        video = torch.zeros((len(clips), clips[0].shape[0], height, width, 3), dtype=torch.uint8)
        for i, c in enumerate(clips):
            video[i, :, : c.shape[1], : c.shape[2]] = c
        frame_size = torch.tensor([c.shape[1:3] for c in clips], dtype=torch.long)
    else:
        video = torch.zeros((0, num_frames, empty_size, empty_size, 3), dtype=torch.uint8)
        frame_size = torch.zeros((0, 2), dtype=torch.long)
    captions = [s["caption"] for s in good]
    video_ids = [s["video_id"] for s in good]
    batch = {
        "video": video,
        "frame_size": frame_size,
        "captions": captions,
        "video_ids": video_ids,
        "targets": [{"video_id": v, "caption": c} for v, c in zip(video_ids, captions)],
        "skipped": [s["error"] for s in failed],
        "skip_reasons": [s["reason"] for s in failed],
    }
    if any("label" in s for s in good):
        batch["labels"] = torch.tensor([int(s.get("label", -1)) for s in good], dtype=torch.long)
    return batch


class InternVidDataModule(RawVideoDataModule):
    """Video-text pairs from InternVid annotation files, or WebDataset shards, for contrastive training.

    Batches (after :meth:`on_after_batch_transfer`, on the training device)::

        {"video": float [b, 3, t, size, size] normalized, "captions": [str], "video_ids": [str],
         "targets": [{"video_id", "caption"}], "skipped": [path], "skip_reasons": [str]}

    Decoding and frame sampling run in DataLoader workers; cropping and normalizing run on the
    whole batch on the device (:class:`~vidlit.data.transforms.VideoBatchTransform`). Unreadable
    or missing source videos are skipped and counted (:attr:`skipped_videos`, and a warning at
    each epoch end naming the first ones), or raise with ``strict=True``, from the main process.
    Annotation files are checked when the data module is set up: errors name the file and line.

    With ``shards`` set, training streams ``{"video", "caption", "video_id"}`` samples from
    WebDataset tar shards (:class:`~vidlit.data.shards.VideoTextShards`; local paths or any fsspec
    URL, brace patterns expanded) and ``train_annotations`` is not read; validation still reads
    ``val_annotations``. Each epoch's shard and sample order is a function of the seed and the
    trainer's epoch (also with persistent workers and after a resume); a bad sample of a shard is
    skipped and counted like an unreadable video, or, with ``strict=True``, raises
    :class:`~vidlit.data.video.VideoDecodeError` naming the shard URL and the sample key.

    Args:
        root: dataset folder; relative annotation paths and ``video_dir`` resolve against it.
        train_annotations: training JSONL.
        val_annotations: validation JSONL (also the default test file).
        test_annotations: JSONL ``vidlit test`` evaluates; defaults to ``val_annotations``.
        video_dir: folder of source videos named by ``YoutubeID``.
        shards: WebDataset shard URLs for training (e.g. ``"s3://bucket/internvid-{000000..000999}.tar"``);
            None reads ``train_annotations``.
        shard_shuffle: shuffle buffer of the shard stream, in samples (0: no shuffling).
        num_frames: frames per clip (ViCLIP: 8).
        size: side of the square crops the model sees (224 for real data).
        short_side: decode-time short-side resize; defaults to ``round(size * 256 / 224)``.
        eval_short_side: evaluation resizes the short side to this before the centre crop;
            defaults to ``size``.
        crop_scale: training random-resized-crop area range.
        crop_ratio: training random-resized-crop aspect-ratio range.
        hflip: training horizontal-flip probability; keep 0 when captions say left or right.
        mean: per-channel normalization mean.
        std: per-channel normalization standard deviation.
        min_umt_score: drop clips below this ``UMT_Score`` (InternVid-10M-FLT's filter).
        min_aesthetic_score: drop clips below this ``Aesthetic_Score``.
        backend: video backend: ``"auto"``, ``"decord"``, ``"pyav"`` or ``"torchcodec"``.
        strict: raise on the first unreadable video instead of skipping it.
        synthetic: when ``root`` does not exist, write the synthetic sample
            (:func:`vidlit.data.synth.internvid.write_internvid`) there and say so.
        batch_size: pairs per batch.
        num_workers: DataLoader worker processes.

    Attributes:
        skipped_videos: per stage, every source-video path skipped so far (once per time).
    """

    def __init__(
        self,
        root: str = "data/internvid",
        train_annotations: str = "train.jsonl",
        val_annotations: str = "val.jsonl",
        test_annotations: str | None = None,
        video_dir: str = "videos",
        shards: str | None = None,
        shard_shuffle: int = 1000,
        num_frames: int = 8,
        size: int = 224,
        short_side: int | None = None,
        eval_short_side: int | None = None,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.0,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        min_umt_score: float | None = None,
        min_aesthetic_score: float | None = None,
        backend: str = "auto",
        strict: bool = False,
        synthetic: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        if num_frames < 1:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        self.root = Path(root)
        if synthetic:
            from vidlit.data.synth import write_sample_if_missing
            from vidlit.data.synth.internvid import write_internvid

            write_sample_if_missing(
                self.root, write_internvid, "InternVid sample", marker=train_annotations, task="internvid",
                log=log, announce=True,
            )  # fmt: skip
        self.files = {
            "train": self.root / train_annotations,
            "val": self.root / val_annotations,
            "test": self.root / (test_annotations or val_annotations),
        }
        self.video_dir = self.root / video_dir
        self.shards = shards
        self.shard_shuffle = shard_shuffle
        self.num_frames = num_frames
        self.size = size
        self.short_side = short_side or round(size * 256 / 224)
        self.min_umt_score = min_umt_score
        self.min_aesthetic_score = min_aesthetic_score
        self.backend = backend
        self.strict = strict
        self.train_transform = VideoBatchTransform(
            size, train=True, scale=crop_scale, ratio=crop_ratio, hflip=hflip, mean=mean, std=std
        )
        self.eval_transform = VideoBatchTransform(
            size, train=False, eval_short_side=eval_short_side, mean=mean, std=std
        )
        self.datasets: dict[str, Dataset] = {}
        self._init_skip_counts()

    def clips(self, split: str) -> list[InternVidClip]:
        """The checked, filtered annotation lines of ``train``, ``val`` or ``test``.

        Raises:
            FileNotFoundError: no such file.
            ValueError: a malformed line (naming file and line), or no clips left.
        """
        path = self.files[split]
        clips = read_internvid_annotations(path, self.min_umt_score, self.min_aesthetic_score)
        if not clips:
            raise ValueError(f"{path}: no {split} clips (after score filtering)")
        for clip in clips:  # an id is a file name inside video_dir, never a way out of it
            confined_path(self.video_dir, clip.youtube_id, f"{path}: line {clip.line}: key 'YoutubeID'")
        return clips

    def dataset(self, split: str) -> Dataset:
        """The dataset of one split: annotation clips, or the training shard stream."""
        seed = global_seed()
        if split == "train" and self.shards is not None:
            from vidlit.data.shards import VideoTextShards

            return VideoTextShards(
                self.shards,
                num_frames=self.num_frames,
                short_side=self.short_side,
                shuffle=self.shard_shuffle,
                seed=seed,
                # bad samples come back as failure markers, counted (or, when strict, raised)
                # in the main process like unreadable source videos
                failure_markers=True,
            )
        return InternVidDataset(
            self.clips(split),
            self.video_dir,
            num_frames=self.num_frames,
            train=split == "train",
            short_side=self.short_side,
            backend=self.backend,
            # strictness is enforced in the main process (on_after_batch_transfer)
            strict=False,
            seed=seed,
        )

    def setup(self, stage: str) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        if stage not in splits:
            raise ValueError(f"InternVidDataModule has no {stage!r} stage (fit, validate, test)")
        for split in splits[stage]:
            self.datasets[split] = self.dataset(split)
        self._attach_skip_report()

    def _collate(self) -> Any:
        import functools

        return functools.partial(collate_video_text, num_frames=self.num_frames, empty_size=self.short_side)

    _skip_unit = "clips"

    def _count_seen(self, batch: dict[str, Any]) -> int:
        # clips of one source video are separate samples
        return len(batch["video_ids"]) + len(batch["skipped"])
