"""Video classification from a list file (Kinetics-style CSV or JSONL) over raw video files.

A list names one video per row. CSV, with a header row, as ``vidlit data synth videos`` writes and
Kinetics-style lists use::

    path,label
    videos/abseiling/0347ZoDXyP0_000095_000105.mp4,abseiling
    /data/k400/val/zumba/zzzz.mp4,zumba

or JSONL (``.jsonl``, ``.ndjson`` or ``.json``), one object per line with the same keys::

    {"path": "videos/000001.mp4", "label": 3, "start": 2.5, "end": 7.0}

- ``path``: relative to the list file's folder, or absolute.
- ``label`` (optional): a class name from the class list, or an integer class index. A CSV value
  is a name when the class list has it, else an index if it is a whole number.
- ``start`` / ``end`` (optional, seconds): frames are sampled inside ``[start, end)`` only, for
  lists that cut clips out of longer videos.

Other columns / keys are ignored. The public benchmarks' lists are read as published
(``list_format``, detected by :func:`detect_list_format`): the official Kinetics CSV,
Something-Something v2's JSON, UCF101's ``trainlist0N.txt`` / ``testlist0N.txt`` and HMDB51's
``<class>_test_split<N>.txt`` (see :mod:`vidlit.formats.video_cls`); the ids they hold become
files under ``video_dir`` and may not point outside it. Every row is checked when the list is
read: errors name the file and the line (and the key of a malformed field). Unreadable videos
(missing, zero-byte, truncated, corrupt) are found while loading: they are skipped and counted
(see :class:`VideoListDataModule`), or raise :class:`~vidlit.data.video.VideoDecodeError` in
strict mode. ``vidlit data check LIST`` finds them
all up front.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from vidlit.core.errors import ConfigurationError
from vidlit.core.io import write_json_atomic
from vidlit.data.base import EpochSeeded, global_seed
from vidlit.data.lists import (  # noqa: F401  (re-exported: the list readers live there, Lightning-free)
    VideoEntry,
    detect_list_format,
    infer_class_names,
    read_class_names,
    read_csv_rows,
    read_video_list,
)

# re-exported: the Ego4D raw-video modules and older code import the base from here
from vidlit.data.raw_video import RawVideoDataModule, SkippedVideosReport  # noqa: F401
from vidlit.data.sampling import (
    dense_clip,
    multi_view_clips,
    multi_view_segments,
    sample_in_window,
    uniform_segments,
)

# the sample writer moved to synth; the name stays importable from here
from vidlit.data.synth.videos import write_synthetic_video_list  # noqa: F401
from vidlit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, VideoBatchTransform, bound_aspect
from vidlit.data.video import ReaderCache, VideoDecodeError
from vidlit.formats.video_cls import (  # noqa: F401  (the family's names, re-exported)
    HMDB_MARKS,
    JSONL_SUFFIXES,
    LIST_FORMATS,
    SAMPLINGS,
    HMDBSplitLine,
    KineticsRow,
    SSv2Record,
    UCFListLine,
    VideoClsBatch,
    VideoListRow,
    kinetics_clip_name,
)

log = logging.getLogger(__name__)


class VideoListDataset(EpochSeeded, Dataset):
    """Clips decoded from the videos of a list, for classification.

    Each item opens its video (one decode thread: a DataLoader worker runs one reader), samples
    frames and resizes them at decode time so the short side is ``short_side``:

    - ``sampling="dense"``: ``num_frames`` frames ``frame_stride`` apart, from a random start in
      training (I3D / SlowFast / VideoMAE); evaluation takes ``num_clips`` evenly spaced clips
      (:func:`~vidlit.data.sampling.multi_view_clips`, the centre clip when ``num_clips=1``).
    - ``sampling="segments"``: TSN's one frame from each of ``num_frames`` equal segments, random
      in training (from segments of ``n // num_frames`` whole frames, as VideoMAE's SSv2 loader);
      evaluation takes ``num_clips`` views at evenly spaced offsets inside the
      segments (:func:`~vidlit.data.sampling.multi_view_segments`: the centres for one view,
      VideoMAE's SSv2 starts and centres for two).

    With ``repeated_aug > 1`` a training item holds that many independently sampled clips of its
    video: repeated augmentation (Hoffer et al., "Augment Your Batch", CVPR 2020), which
    MAE-ST and VideoMAE v2 fine-tuning use because one decode then feeds several clips (the
    batch transform gives each its own crop). A list row with ``start`` / ``end`` is sampled
    inside that window only. Training randomness
    is a function of ``(seed, epoch, index)`` (``epoch`` lives in shared memory, so persistent
    DataLoader workers see it change), never of the worker that loads the item.

    Args:
        entries: the list's rows.
        num_frames: frames per clip.
        frame_stride: frames between consecutive clip frames (dense sampling).
        sampling: ``"dense"`` or ``"segments"``.
        num_clips: evaluation views per video.
        repeated_aug: training clips per video and item.
        train: random (True) or deterministic (False) sampling.
        short_side: decode-time resize of the short side; None keeps the stored size.
        backend: video backend for :func:`~vidlit.data.video.open_video`.
        strict: raise on an unreadable video instead of returning a failure marker.
        seed: base seed of the training randomness.

    Items are ``{"video": uint8 [t, h, w, 3] ([v, t, h, w, 3] for v > 1 clips), "label": int
    (-1 unlabelled), "video_id": str, "path": str}``, or for an unreadable video
    ``{"error": path, "reason": str, "video_id": str}``, which :func:`collate_video_clips` drops
    and counts.
    """

    def __init__(
        self,
        entries: Sequence[VideoEntry],
        num_frames: int = 8,
        frame_stride: int = 2,
        sampling: str = "dense",
        num_clips: int = 1,
        repeated_aug: int = 1,
        train: bool = False,
        short_side: int | None = None,
        backend: str = "auto",
        strict: bool = False,
        seed: int = 0,
    ):
        check_sampling(num_frames, frame_stride, sampling, num_clips, repeated_aug)
        super().__init__(seed)
        self.entries = list(entries)
        self.num_frames = num_frames
        self.frame_stride = frame_stride
        self.sampling = sampling
        self.num_clips = num_clips
        self.repeated_aug = repeated_aug
        self.train = train
        self.short_side = short_side
        self.backend = backend
        self.strict = strict
        self._readers = ReaderCache(size=1, workers_only=True)  # rows that are windows of one video

    def __len__(self) -> int:
        return len(self.entries)

    def frame_indices(self, entry: VideoEntry, num_frames: int, fps: float, index: int) -> np.ndarray:
        """``[v, t]`` frame indices of item ``index`` in a video of ``num_frames`` frames."""

        def sample(sampler: Any, **kwargs: Any) -> np.ndarray:
            if entry.start is None and entry.end is None:
                return sampler(num_frames, **kwargs)
            return sample_in_window(sampler, num_frames, fps, entry.start or 0.0, entry.end, **kwargs)

        clip = {"clip_len": self.num_frames, "stride": self.frame_stride}
        if self.train:
            rng = self.rng(index)
            if self.sampling == "segments":
                # VideoMAE's SSv2 training draw: segments of n // k whole frames
                sampler, kwargs = uniform_segments, {"k": self.num_frames, "whole_frames": True}
            else:
                sampler, kwargs = dense_clip, clip
            return np.stack(
                [sample(sampler, **kwargs, train=True, rng=rng) for _ in range(self.repeated_aug)]
            )
        if self.sampling == "segments":
            return sample(multi_view_segments, k=self.num_frames, num_clips=self.num_clips)
        return sample(multi_view_clips, **clip, num_clips=self.num_clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        try:
            with self._readers.reading(entry.path, self.backend, self.short_side, 1) as reader:
                try:
                    indices = self.frame_indices(entry, len(reader), reader.fps, index)
                except ValueError as e:  # a time window outside the video
                    raise VideoDecodeError(entry.path, f"line {entry.line}: {e}") from e
                frames = reader.get_frames(indices.reshape(-1))
        except VideoDecodeError as e:
            if self.strict:
                raise
            return {"error": str(entry.path), "reason": e.reason, "video_id": entry.video_id}
        # per clip, before batching: the batch's size follows the configuration, not the files
        frames = bound_aspect(frames.reshape(*indices.shape, *frames.shape[1:]), self.short_side)
        return {
            "video": frames[0] if len(indices) == 1 else frames,
            "label": -1 if entry.label is None else entry.label,
            "video_id": entry.video_id,
            "path": str(entry.path),
        }


def check_sampling(
    num_frames: int, frame_stride: int, sampling: str, num_clips: int, repeated_aug: int = 1
) -> None:
    """Reject sampling settings that cannot work, naming the argument."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    for name, value in (
        ("num_frames", num_frames),
        ("frame_stride", frame_stride),
        ("num_clips", num_clips),
        ("repeated_aug", repeated_aug),
    ):
        if value < 1:
            raise ValueError(f"{name} must be positive, got {value}")


def collate_video_clips(
    samples: Sequence[dict[str, Any]], num_frames: int = 1, empty_size: int = 1
) -> dict[str, Any]:
    """Batch the items of :class:`VideoListDataset`, dropping and listing unreadable videos.

    The views of a multi-view item become consecutive batch entries sharing its ``video_id``.
    Clips whose frames differ in size (videos of different aspect ratios) are zero-padded to the
    largest; ``frame_size`` keeps each clip's true size, which the batch transform crops inside.

    Args:
        samples: dataset items.
        num_frames: frames per clip, to shape a batch in which every video failed.
        empty_size: frame side of such a batch.

    Returns:
        ``{"video": uint8 [b, t, h, w, 3], "frame_size": int64 [b, 2], "labels": int64 [b],
        "video_ids": [str], "targets": [{"video_id", "label", "view"}], "skipped": [path],
        "skip_reasons": [str]}``; ``view`` is the clip's index among its video's clips.
    """
    good = [s for s in samples if "error" not in s]
    failed = [s for s in samples if "error" in s]
    clips, video_ids, labels, view_ids = [], [], [], []
    for sample in good:
        views = sample["video"] if sample["video"].ndim == 5 else sample["video"][None]
        clips.extend(views)
        video_ids.extend([sample["video_id"]] * len(views))
        labels.extend([sample["label"]] * len(views))
        view_ids.extend(range(len(views)))
    if clips:
        height = max(clip.shape[1] for clip in clips)
        width = max(clip.shape[2] for clip in clips)
        video = torch.zeros((len(clips), clips[0].shape[0], height, width, 3), dtype=torch.uint8)
        for i, clip in enumerate(clips):
            video[i, :, : clip.shape[1], : clip.shape[2]] = clip
        frame_size = torch.tensor([clip.shape[1:3] for clip in clips], dtype=torch.long)
    else:
        video = torch.zeros((0, num_frames, empty_size, empty_size, 3), dtype=torch.uint8)
        frame_size = torch.zeros((0, 2), dtype=torch.long)
    return {
        "video": video,
        "frame_size": frame_size,
        "labels": torch.tensor(labels, dtype=torch.long),
        "video_ids": video_ids,
        "targets": [
            {"video_id": v, "label": label, "view": view}
            for v, label, view in zip(video_ids, labels, view_ids)
        ],
        "skipped": [s["error"] for s in failed],
        "skip_reasons": [s["reason"] for s in failed],
    }


class VideoListDataModule(RawVideoDataModule):
    """Video classification on raw videos named by list files (Kinetics-style CSV, or JSONL).

    Batches (after :meth:`on_after_batch_transfer`, on the training device)::

        {"video": float [b, 3, t, size, size] normalized, "labels": int64 [b], "video_ids": [str],
         "targets": [{"video_id": str, "label": int}], "skipped": [path],
         "skip_reasons": [str]}

    Decoding and frame sampling run in the DataLoader workers; cropping, flipping and
    normalizing run on the whole batch after it reaches the device
    (:class:`~vidlit.data.transforms.VideoBatchTransform`), so on a GPU they cost next to nothing.
    With ``num_clips > 1`` every evaluation video contributes that many consecutive batch entries
    with one ``video_id``; the metric averages them. Likewise ``repeated_aug > 1`` makes every
    training video give that many differently sampled and cropped clips per decode, so a training
    batch holds ``batch_size * repeated_aug`` clips.

    Unreadable videos (missing, zero-byte, truncated, corrupt) are skipped and counted: the
    batch lists them under ``skipped``, :attr:`skipped_videos` accumulates them per stage (in the
    main process, so counts are right with any ``num_workers``), and every epoch ends with a
    warning giving the count and the first paths. With ``strict=True`` the first one raises
    :class:`~vidlit.data.video.VideoDecodeError` (:class:`~vidlit.data.video.VideoNotFoundError`
    for a missing file) naming it, from the main process, whatever ``num_workers``. The lists
    themselves are checked before training starts: a malformed row or an unknown label is an
    error naming the file and the line.

    Args:
        root: dataset folder; relative list and class-file paths resolve against it.
        train_list: training list.
        val_list: validation list (also the default test and predict list).
        test_list: list ``vidlit test`` evaluates; defaults to ``val_list``.
        predict_list: list ``vidlit predict`` runs on (labels optional); defaults to the test list.
        classes: a class-name file (one per line, line order = class index), the names
            themselves, or None to use the sorted label names of the train list (a val label
            outside them is an error, not a new class). Unused with ``labels: false``.
        labels: False reads lists without labels (a ``path`` column is enough; a label column is
            still checked for form but not used) for self-supervised pretraining such as
            ``recipes/pretrain_mvm.yaml``: batches carry label -1 and the module has no classes
            (:attr:`class_names` is empty), so a head that needs them is refused.
        num_frames: frames per clip.
        frame_stride: frames between consecutive clip frames (dense sampling).
        sampling: ``"dense"`` (one clip of ``num_frames`` frames, ``frame_stride`` apart) or
            ``"segments"`` (TSN: one frame from each of ``num_frames`` segments).
        num_clips: evaluation views per video; 1 is the centre clip (dense) or the segment
            centres (segments).
        repeated_aug: training clips per decoded video (repeated augmentation); 2 halves the
            decoding per training clip.
        size: side of the square crops the model sees (224 for real data).
        short_side: short side frames are resized to while decoding; defaults to
            ``round(size * 256 / 224)``, the usual 256 for 224 crops.
        eval_short_side: evaluation resizes the short side to this, then takes the centre crop;
            defaults to ``size``.
        crop_scale: training random-resized-crop area range, as a fraction of the frame.
        crop_ratio: training random-resized-crop aspect-ratio range.
        hflip: training horizontal-flip probability; 0 where left and right matter
            (Something-Something, the synthetic motion labels).
        mean: per-channel normalization mean (ImageNet's by default).
        std: per-channel normalization standard deviation.
        backend: video backend: ``"auto"``, ``"decord"``, ``"pyav"`` or ``"torchcodec"``.
        strict: raise on the first unreadable video instead of skipping it.
        synthetic: when ``root`` does not exist, write the synthetic sample dataset there
            (128 clips of shapes moving in 4 directions, labelled by direction; ``train.csv``,
            ``val.csv`` and ``classes.txt``) and say so; a ``vidlit data synth`` name writes that
            sample instead (``"kinetics"``: the official Kinetics CSV layout; ``"pans"``: camera
            pans over a colour texture in the same layout). Leave False for real data.
        list_format: the lists' format, one of ``"auto"`` (from each list's name and header),
            ``"csv"`` / ``"jsonl"`` (vidlit's ``path,label`` lists), ``"kinetics"`` (the official
            CSV), ``"ssv2"`` (Something-Something v2 JSON; ``classes`` is then
            ``something-something-v2-labels.json``), ``"ucf101"`` (``trainlist0N.txt`` /
            ``testlist0N.txt``; ``classes: classInd.txt``) or ``"hmdb51"`` (a glob of the split
            files, ``splits/*_test_split1.txt``: the train list reads their 1 lines, the others
            their 2 lines; ``classes: null`` gives the sorted class names).
        video_dir: folder (under ``root``) of the videos the lists name; defaults to each list's
            folder. A Kinetics list may use its ``split`` column: ``videos/{split}``.
        video_ext: video suffix for Kinetics (default ``.mp4``) and SSv2 (``.webm``) ids.
        num_crops: spatial test views per clip: 1 (the centre crop) or 3 (both ends and the centre
            of the long side, after the short side is resized to ``eval_short_side``); a test video
            gives ``num_clips * num_crops`` views, averaged by the metric.
        batch_size: videos per batch.
        num_workers: DataLoader worker processes.

    Attributes:
        class_names: label name of each class index.
        skipped_videos: per stage (``"train"``, ``"val"``, ``"test"``, ``"predict"``), every
            path skipped so far while attached to a trainer, once per time it was skipped
            (sanity-check batches excluded).
    """

    def __init__(
        self,
        root: str = "data/videos",
        train_list: str = "train.csv",
        val_list: str = "val.csv",
        test_list: str | None = None,
        predict_list: str | None = None,
        classes: str | list[str] | None = "classes.txt",
        labels: bool = True,
        num_frames: int = 8,
        frame_stride: int = 2,
        sampling: str = "dense",
        num_clips: int = 1,
        repeated_aug: int = 1,
        size: int = 224,
        short_side: int | None = None,
        eval_short_side: int | None = None,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        backend: str = "auto",
        strict: bool = False,
        synthetic: bool | str = False,
        list_format: str = "auto",
        video_dir: str | None = None,
        video_ext: str | None = None,
        num_crops: int = 1,
        batch_size: int = 8,
        num_workers: int = 0,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        check_sampling(num_frames, frame_stride, sampling, num_clips, repeated_aug)
        if list_format not in LIST_FORMATS:
            raise ValueError(f"list_format must be one of {LIST_FORMATS}, got {list_format!r}")
        self.list_format = list_format
        self.video_dir = video_dir
        self.video_ext = video_ext
        self.num_crops = num_crops
        self.root = Path(root)
        # a name picks another `vidlit data synth` sample (e.g. "kinetics", the official CSV layout)
        sample = synthetic if isinstance(synthetic, str) else "videos"
        if synthetic:
            from vidlit.data.synth import synthesize, write_sample_if_missing

            # write_synthetic_video_list's samples write train.csv last; the official Kinetics layout
            # its val / test list
            marker = train_list if sample in ("videos", "pans") else test_list or val_list
            write = functools.partial(synthesize, sample)
            write_sample_if_missing(self.root, write, f"{sample} sample", marker=marker, task=sample, log=log)
        self.files = {
            "train": self.root / train_list,
            "val": self.root / val_list,
            "test": self.root / (test_list or val_list),
            "predict": self.root / (predict_list or test_list or val_list),
        }
        self.num_frames = num_frames
        self.frame_stride = frame_stride
        self.sampling = sampling
        self.num_clips = num_clips
        self.repeated_aug = repeated_aug
        self.size = size
        self.short_side = short_side or round(size * 256 / 224)
        self.backend = backend
        self.strict = strict
        self.train_transform = VideoBatchTransform(
            size, train=True, scale=crop_scale, ratio=crop_ratio, hflip=hflip, mean=mean, std=std
        )
        self.eval_transform = VideoBatchTransform(
            size, train=False, eval_short_side=eval_short_side, mean=mean, std=std, num_crops=num_crops
        )
        if not isinstance(classes, (str, type(None))):
            if not classes or len(set(classes)) != len(classes):
                raise ValueError(f"classes must be distinct names, got {classes}")
        self._classes = classes
        self.labels = labels
        self._class_names: list[str] | None = None
        self.datasets: dict[str, VideoListDataset] = {}
        self._init_skip_counts()

    @property
    def class_names(self) -> list[str]:
        """Label name of each class index: the class file, the given names, or the train list's labels.

        Read on first use (the CLI asks for :attr:`num_classes` to size the head). Inferred from
        the train list only: a val / test label outside the train taxonomy is an error naming the
        line, never a new class. Empty with ``labels: false`` (no classes: :attr:`num_classes`
        refuses to size a head).
        """
        if not self.labels:
            return []
        if self._class_names is None:
            classes = self._classes
            if isinstance(classes, str):
                classes_file = self.root / classes
                if not classes_file.is_file():
                    raise FileNotFoundError(
                        f"{classes_file}: class list not found (set classes: null to use the sorted labels "
                        "of the train list)"
                    )
                self._class_names = read_class_names(classes_file)
            elif classes is None:
                train = self._read(self.files["train"], None, "train")
                if all(entry.label_name is None for entry in train):
                    raise ConfigurationError(
                        f"{self.files['train']}: no labels to infer the class list from (a list without "
                        "labels is for self-supervised pretraining: data.init_args.labels false)"
                    )
                self._class_names = infer_class_names(train)
            else:
                self._class_names = list(classes)
        return self._class_names

    @property
    def num_classes(self) -> int:
        """Number of classes (linked into the head's ``num_classes``).

        Raises:
            ConfigurationError: ``labels: false`` (a head that needs classes needs labels).
        """
        if not self.labels:
            raise ConfigurationError(
                "data.init_args.labels is false: the lists are read without labels, so there are no "
                "classes (a head that needs num_classes needs labels: true and a class list)"
            )
        return len(self.class_names)

    def entries(self, split: str) -> list[VideoEntry]:
        """The checked rows of a split's list (``train``, ``val``, ``test`` or ``predict``).

        Raises:
            FileNotFoundError: no such list.
            ValueError: a malformed row, an unknown label, or (except for predict) a row without
                a label; the message names the file and the line.
        """
        entries = self._read(self.files[split], self.class_names if self.labels else None, split)
        if not entries:
            raise ValueError(f"{self.files[split]}: the {split} list names no videos")
        if not self.labels:
            # a label column, if any, is not used: every entry's label is None (-1 in batches)
            return [replace(entry, label=None, label_name=None) for entry in entries]
        if split != "predict":
            for entry in entries:
                if entry.label is None:
                    raise ValueError(
                        f"{self.files[split]}:{entry.line}: no label (every {split} video needs one)"
                    )
        return entries

    def _read(self, path: Path, class_names: list[str] | None, split: str) -> list[VideoEntry]:
        video_dir = None if self.video_dir is None else self.root / self.video_dir
        return read_video_list(path, class_names, self.list_format, video_dir, self.video_ext, split)

    def dataset(self, split: str) -> VideoListDataset:
        """The dataset of one split, its list checked first."""
        return VideoListDataset(
            self.entries(split),
            num_frames=self.num_frames,
            frame_stride=self.frame_stride,
            sampling=self.sampling,
            num_clips=self.num_clips,
            repeated_aug=self.repeated_aug,
            train=split == "train",
            short_side=self.short_side,
            backend=self.backend,
            # strictness is enforced in the main process (on_after_batch_transfer): an error
            # raised in a worker would reach the trainer as a RuntimeError
            strict=False,
            seed=global_seed(),
        )

    def setup(self, stage: str) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
        for split in splits[stage]:
            self.datasets[split] = self.dataset(split)
        self._attach_skip_report()

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Crop, flip and normalize on the device; with ``num_crops > 1`` every evaluation clip
        becomes that many consecutive crops, and the labels, ids and targets follow.

        Shape legend: ``b`` clips as collated, ``n`` crops per clip. A target's ``view`` becomes
        ``clip * n + crop``, so the metric can tell the views of a video from padding copies.
        """
        clips = len(batch["video_ids"])
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        n = batch["video"].shape[0] // clips if clips else 1
        if n > 1:
            batch["labels"] = batch["labels"].repeat_interleave(n)
            batch["video_ids"] = [video_id for video_id in batch["video_ids"] for _ in range(n)]
            batch["targets"] = [
                {**target, "view": target.get("view", 0) * n + crop}
                for target in batch["targets"]
                for crop in range(n)
            ]
        return batch

    def _collate(self) -> functools.partial:
        return functools.partial(collate_video_clips, num_frames=self.num_frames, empty_size=self.short_side)

    def write_submission(self, predictions: list[dict[str, Any]], path: str | Path) -> Path:
        """Write ``vidlit predict`` output in the ActivityNet Kinetics challenge layout.

        ``{"version": "1.0", "results": {video_id: [{"label": name, "score": p}, ...]},
        "external_data": {"used": false, "details": ""}}`` with each video's top 5 classes, the
        scores of its views averaged. Written to a temporary name and renamed.

        Raises:
            ConfigurationError: ``labels: false``: there are no class names to write.
        """
        names = self.class_names
        if not names:
            raise ConfigurationError(
                "data.init_args.labels is false: no class names to write a submission with"
            )
        totals: dict[str, Tensor] = {}
        counts: dict[str, int] = {}
        for pred in predictions:
            scores = torch.as_tensor(pred["scores"]).detach().double().cpu()
            video_id = pred["video_id"]
            totals[video_id] = totals[video_id] + scores if video_id in totals else scores
            counts[video_id] = counts.get(video_id, 0) + 1
        results = {}
        for video_id, total in totals.items():
            mean = total / counts[video_id]
            top = mean.topk(min(5, len(mean)))
            results[video_id] = [
                {"label": names[int(i)], "score": float(s)}
                for s, i in zip(top.values.tolist(), top.indices.tolist())
            ]
        doc = {"version": "1.0", "results": results, "external_data": {"used": False, "details": ""}}
        return write_json_atomic(doc, path)
