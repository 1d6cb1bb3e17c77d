"""Text-video retrieval benchmarks: MSR-VTT 1k-A, DiDeMo and ActivityNet Captions paragraphs.

Reads each benchmark's annotation file as published (:mod:`vidlit.formats.retrieval`) into
:class:`RetrievalVideo` items, one caption (MSR-VTT) or one paragraph of all of a video's
sentences (DiDeMo, ActivityNet Captions) per video, and batches them like InternVid clips
(:func:`~vidlit.data.internvid.collate_video_text`: ``captions``, ``video_ids``) for
:class:`~vidlit.tasks.zero_shot.ZeroShotRetrieval` (``vidlit test --config
recipes/retrieval_eval.yaml``) or :class:`~vidlit.tasks.video_text.VideoTextPretrain`'s test step.

>>> dm = RetrievalDataModule("data/msrvtt", format="msrvtt", annotations="MSRVTT_JSFUSION_test.csv",
...                          video_dir="videos/all", size=224)
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidlit.core.errors import ConfigurationError
from vidlit.core.io import confined_path, read_json
from vidlit.data.base import global_seed
from vidlit.data.internvid import InternVidDataset, collate_video_text
from vidlit.data.lists import read_csv_rows
from vidlit.data.raw_video import RawVideoDataModule
from vidlit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, VideoBatchTransform
from vidlit.formats._schema import validate
from vidlit.formats.internvid import VIDEO_SUFFIXES
from vidlit.formats.retrieval import (
    DIDEMO_MAX_SECONDS,
    RETRIEVAL_FORMATS,
    ActivityNetCaptionsVideo,
    DiDeMoMoment,
    MSRVTTRow,
    paragraph,
)

__all__ = [
    "RetrievalDataModule",
    "RetrievalDataset",
    "RetrievalVideo",
    "read_activitynet_captions",
    "read_didemo",
    "read_msrvtt",
    "read_retrieval_annotations",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrievalVideo:
    """One query / gallery pair of a retrieval benchmark.

    Attributes:
        video_id: the id the annotation file gives the video (the gallery item).
        names: candidate file names of the video under the video folder, first existing wins.
        caption: the caption, or the paragraph of the video's sentences.
        start: window start in seconds.
        end: window end in seconds; None for the end of the video.
        where: where the annotation file has it, for messages (``MSRVTT_JSFUSION_test.csv: line 5``,
            ``val_1.json: video 'v_x'``, ``test_data.json: [12]``, DiDeMo's first record of the
            video); empty: ``video '<video_id>'``.
    """

    video_id: str
    names: tuple[str, ...]
    caption: str
    start: float = 0.0
    end: float | None = None
    where: str = ""

    def __post_init__(self) -> None:
        if not self.where:  # InternVidDataset names the item by it in decode errors
            object.__setattr__(self, "where", f"video {self.video_id!r}")

    @property
    def clip_id(self) -> str:
        """The gallery id the metric groups captions by (:class:`InternVidDataset` reads it)."""
        return self.video_id


def _candidates(stem: str, given: str | None = None) -> tuple[str, ...]:
    # the name as given first (DiDeMo's "<id>.mov"), then the stem with every common video suffix
    names = [given] if given else []
    return tuple(dict.fromkeys([*names, *(f"{stem}{suffix}" for suffix in VIDEO_SUFFIXES)]))


def read_msrvtt(path: str | Path) -> list[RetrievalVideo]:
    """The rows of an MSR-VTT test CSV (``MSRVTT_JSFUSION_test.csv``: ``key,vid_key,video_id,sentence``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file and line: a header without ``video_id`` and ``sentence`` (or
            with a column named twice), a row with another number of fields, an empty ``video_id`` or
            ``sentence``, a video listed twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MSR-VTT annotation file not found")
    videos: list[RetrievalVideo] = []
    seen: dict[str, int] = {}
    for line, row in read_csv_rows(path, keys=("video_id", "sentence")):
        record = validate(MSRVTTRow, row, path, where=f"line {line}")
        if record.video_id in seen:
            # 1k-A has one caption per video: a second one would be a second query of one video
            raise ValueError(
                f"{path}: line {line}: key 'video_id': {record.video_id!r} is already on line "
                f"{seen[record.video_id]} (the 1k-A test split has one caption per video)"
            )
        seen[record.video_id] = line
        videos.append(
            RetrievalVideo(
                record.video_id,
                _candidates(record.video_id),
                record.sentence,
                where=f"{path.name}: line {line}",
            )
        )
    return videos


def read_activitynet_captions(path: str | Path) -> list[RetrievalVideo]:
    """The videos of an ActivityNet Captions file (``val_1.json``), each with its sentences as one paragraph.

    The whole video is the gallery item (CLIP4Clip's paragraph-to-video protocol). A video id
    ``v_<YouTube id>`` is looked up as ``<YouTube id>.<ext>``, then as ``v_<YouTube id>.<ext>``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file, the video id and the key: not a JSON object, a missing key,
            a non-positive duration, no or empty sentences, or a timestamp count that differs from
            the sentence count.
    """
    path = Path(path)
    document = read_json(path, "ActivityNet Captions file")
    if not isinstance(document, dict) or not document:
        raise ValueError(f"{path}: expected a non-empty JSON object keyed by video id")
    videos = []
    for video_id, entry in document.items():
        where = f"video {video_id!r}"
        record = validate(ActivityNetCaptionsVideo, entry, path, where=where)
        youtube_id = video_id[2:] if video_id.startswith("v_") else video_id
        names = _candidates(youtube_id) + _candidates(video_id)
        videos.append(
            RetrievalVideo(
                video_id,
                tuple(dict.fromkeys(names)),
                paragraph(record.sentences),
                where=f"{path.name}: {where}",
            )
        )
    return videos


def read_didemo(path: str | Path) -> list[RetrievalVideo]:
    """The videos of a DiDeMo file (``test_data.json``), each with its descriptions as one paragraph.

    A video's descriptions are joined in file order; the gallery item is the video's first 30 s
    (:data:`~vidlit.formats.retrieval.DIDEMO_MAX_SECONDS`, the part that was annotated).

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file, the record index and the key: not a JSON list, a missing or
            empty ``video`` / ``description``, or ``times`` outside segments 0-5.
    """
    path = Path(path)
    document = read_json(path, "DiDeMo annotation file")
    if not isinstance(document, list) or not document:
        raise ValueError(f"{path}: expected a non-empty JSON list of moments")
    descriptions: dict[str, list[str]] = {}
    first: dict[str, int] = {}
    for index, entry in enumerate(document):
        record = validate(DiDeMoMoment, entry, path, where=f"[{index}]")
        descriptions.setdefault(record.video, []).append(record.description)
        first.setdefault(record.video, index)
    return [
        RetrievalVideo(
            video,
            _candidates(Path(video).stem, video),
            paragraph(texts),
            end=DIDEMO_MAX_SECONDS,
            where=f"{path.name}: [{first[video]}]",
        )
        for video, texts in descriptions.items()
    ]


_READERS = {"msrvtt": read_msrvtt, "didemo": read_didemo, "activitynet": read_activitynet_captions}


def read_retrieval_annotations(path: str | Path, format: str) -> list[RetrievalVideo]:
    """Read a benchmark file in one of :data:`~vidlit.formats.retrieval.RETRIEVAL_FORMATS`."""
    if format not in _READERS:
        raise ValueError(f"format must be one of {RETRIEVAL_FORMATS}, got {format!r}")
    return _READERS[format](path)


class RetrievalDataset(InternVidDataset):
    """Decoded clips of :class:`RetrievalVideo` items: ``{"video", "caption", "video_id"}``.

    :class:`~vidlit.data.internvid.InternVidDataset`'s sampling (``num_frames`` TSN segments of
    the item's window; centres in evaluation) and failure markers, with each item's file found
    among its candidate names under ``video_dir``.
    """

    def path(self, clip: RetrievalVideo) -> Path:  # type: ignore[override]
        """The first of the item's candidate files that exists (else the first, which then fails to open)."""
        if clip.video_id not in self._paths:
            candidates = [
                confined_path(self.video_dir, name, f"video {clip.video_id!r}") for name in clip.names
            ]
            self._paths[clip.video_id] = next((p for p in candidates if p.is_file()), candidates[0])
        return self._paths[clip.video_id]


class RetrievalDataModule(RawVideoDataModule):
    """Zero-shot retrieval evaluation on MSR-VTT, DiDeMo or ActivityNet Captions (``vidlit test``).

    Reads ``annotations`` in ``format`` when set up (errors name the file, the line or record,
    and the key) and serves every caption with its video, decoded as ``num_frames`` frames from
    equal segments of the video (the centre of each), resized and centre-cropped to ``size`` on
    the device. Batches::

        {"video": float [b, 3, t, size, size] normalized, "captions": [str], "video_ids": [str],
         "targets": [{"video_id", "caption"}], "skipped": [path], "skip_reasons": [str]}

    Unreadable or missing videos are skipped and counted (a warning at the epoch end), or raise
    with ``strict=True``; a skipped video leaves its caption out of the ranking, so figures on a
    partial download are not comparable to the paper's.

    Args:
        root: dataset folder; ``annotations`` and ``video_dir`` resolve against it.
        format: ``"msrvtt"`` (``MSRVTT_JSFUSION_test.csv``), ``"didemo"`` (``test_data.json``) or
            ``"activitynet"`` (``val_1.json``).
        annotations: the annotation file (``vidlit validate`` and ``vidlit test`` both read it).
        video_dir: folder of the videos.
        num_frames: frames per video (ViCLIP: 8).
        size: crop side the model sees (224 for ViCLIP).
        short_side: decode-time short-side resize; defaults to ``size``.
        mean: per-channel normalization mean; the model's training normalization (ImageNet's for
            ViCLIP and vidlit's pretrain_viclip recipe).
        std: per-channel normalization standard deviation.
        backend: video backend: ``"auto"``, ``"decord"``, ``"pyav"`` or ``"torchcodec"``.
        strict: raise on the first unreadable video instead of skipping it.
        synthetic: when ``root`` does not exist, write the synthetic sample of ``format`` there
            (``vidlit data synth msrvtt|didemo|activitynet``) and say so.
        batch_size: videos per batch.
        num_workers: DataLoader worker processes.
    """

    evaluation_only = True  # `vidlit fit` refuses it in one line (VidlitCLI.before_fit)

    def __init__(
        self,
        root: str = "data/msrvtt",
        format: str = "msrvtt",
        annotations: str = "MSRVTT_JSFUSION_test.csv",
        video_dir: str = "videos/all",
        num_frames: int = 8,
        size: int = 224,
        short_side: int | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        backend: str = "auto",
        strict: bool = False,
        synthetic: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        if format not in RETRIEVAL_FORMATS:
            raise ValueError(f"format must be one of {RETRIEVAL_FORMATS}, got {format!r}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        self.root = Path(root)
        self.format = format
        if synthetic:
            from vidlit.data.synth import synthesize, write_sample_if_missing

            write_sample_if_missing(
                self.root, functools.partial(synthesize, format), f"{format} sample", marker=annotations,
                task=format, log=log, announce=True,
            )  # fmt: skip
        self.annotations = self.root / annotations
        self.video_dir = self.root / video_dir
        self.num_frames = num_frames
        self.size = size
        self.short_side = short_side or size
        self.backend = backend
        self.strict = strict
        # evaluation only; the training transform is the evaluation one (no augmentation to apply)
        self.eval_transform = VideoBatchTransform(size, train=False, mean=mean, std=std)
        self.train_transform = self.eval_transform
        self.datasets: dict[str, RetrievalDataset] = {}
        self._videos: list[RetrievalVideo] | None = None
        self._init_skip_counts()

    def videos(self) -> list[RetrievalVideo]:
        """The checked annotation items (read once)."""
        if self._videos is None:
            videos = read_retrieval_annotations(self.annotations, self.format)
            for video in videos:  # an id names a file inside video_dir, never a way out of it
                for name in video.names:
                    confined_path(self.video_dir, name, f"{self.annotations}: video {video.video_id!r}")
            self._videos = videos
        return self._videos

    def dataset(self, split: str) -> RetrievalDataset:
        """The evaluation dataset (``val`` and ``test`` are the same file)."""
        return RetrievalDataset(
            self.videos(),
            self.video_dir,
            num_frames=self.num_frames,
            train=False,
            short_side=self.short_side,
            backend=self.backend,
            strict=False,  # enforced in the main process (on_after_batch_transfer)
            seed=global_seed(),
        )

    def setup(self, stage: str) -> None:
        splits = {"validate": ("val",), "test": ("test",)}
        if stage not in splits:
            raise ConfigurationError(
                f"RetrievalDataModule evaluates only (`vidlit test` / `vidlit validate`), not {stage!r}"
            )
        for split in splits[stage]:
            self.datasets[split] = self.dataset(split)
        self._attach_skip_report()

    def _collate(self) -> Any:
        return functools.partial(collate_video_text, num_frames=self.num_frames, empty_size=self.short_side)
