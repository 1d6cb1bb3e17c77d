"""Ego4D episodic memory: Moment Queries annotations, clip features and submissions.

The official annotation files (``moments_train.json``, ``moments_val.json``,
``moments_test_unannotated.json``) nest ``videos -> clips -> annotations -> labels``; each label
has ``start_time`` / ``end_time`` in seconds relative to its clip, a ``label`` name and a
``primary`` flag (schema and rules: :mod:`vidlit.formats.ego4d_mq`). Features are one
``<clip_uid>.pt`` or ``.npy`` of shape ``[T, C]`` per clip,
one step every ``feature_stride`` frames at ``fps`` (the official SlowFast features: C = 2304,
stride 16 at 30 fps).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from vidlit.core.io import ListedFiles, as_path, read_json, write_json_atomic
from vidlit.data.base import EpochSeeded, InferenceInput, global_seed, missing_files
from vidlit.data.ego4d import Ego4DFeatureDataModule
from vidlit.data.features import feature_timing, find_feature_files, load_feature_file, pad_sequences
from vidlit.formats._ego4d import confine
from vidlit.formats._schema import validate
from vidlit.formats.ego4d_mq import (
    CHALLENGE,
    FEATURE_DIM,
    FEATURE_STRIDE,
    FEATURE_WINDOW,
    FPS,
    SPLIT_FILES,
    VERSION,
    FeatureClock,
    MQFile,
    MQSubmission,
    SegmentPrediction,
    TemporalFeatureBatch,
    seconds_to_steps,
    steps_to_seconds,
)

log = logging.getLogger(__name__)


@dataclass
class MomentClip:
    """One annotated clip: its moments as ``(start_sec, end_sec, label_name)``.

    ``where`` is the clip's place in its file (``moments_val.json: videos[0].clips[3]``), for
    messages about it.
    """

    clip_uid: str
    video_uid: str
    duration: float
    moments: list[tuple[float, float, str]] = field(default_factory=list)
    where: str = ""


def read_moment_annotations(
    path: str | Path,
    primary_only: bool = False,
    class_names: Sequence[str] | None = None,
    taxonomy_file: str | Path | None = None,
) -> list[MomentClip]:
    """Parse and validate an official Ego4D MQ annotation JSON (:class:`~vidlit.formats.ego4d_mq.MQFile`).

    A label shared by several annotators of one clip is kept once. Clips without
    ``annotations`` (the unannotated test split) come back with no moments.

    Args:
        path: ``moments_{train,val,test_unannotated}.json``.
        primary_only: keep only labels flagged ``primary``.
        class_names: the taxonomy; a label outside it is an error (None accepts any label).
        taxonomy_file: where ``class_names`` came from, for that error.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid JSON (with line and column), or one line naming the record and key
            that breaks a rule of the schema.
    """
    path = as_path(path)
    context = {}
    if class_names is not None:
        context = {"classes": set(class_names), "taxonomy_file": str(taxonomy_file or "class_names")}
    document = validate(MQFile, read_json(path), path, context=context)
    clips = []
    for v, video in enumerate(document.videos):
        for c, clip in enumerate(video.clips):
            moments = {
                (label.start_time, label.end_time, label.label)
                for annotation in clip.annotations or []
                for label in annotation.labels
                if label.primary or not primary_only
            }
            clips.append(
                MomentClip(
                    clip.clip_uid,
                    video.video_uid,
                    clip.duration,
                    sorted(moments),
                    f"{path}: videos[{v}].clips[{c}]",
                )
            )
    return clips


def write_moment_submission(
    predictions: list[SegmentPrediction], class_names: list[str], path: str | Path
) -> Path:
    """Write predictions as an Ego4D MQ challenge submission (:class:`~vidlit.formats.ego4d_mq.MQSubmission`).

    The layout is ``{"version": "1.0", "challenge": "ego4d_moment_queries", "detect_results":
    {clip_uid: [{"label", "score", "segment": [start, end]}, ...]}}``, segments in seconds.
    The file is written to a temporary name and renamed, so a crash never leaves half a file.
    """
    results = {}
    for pred in predictions:
        results[pred["video_id"]] = [
            {"label": class_names[int(label)], "score": float(score), "segment": [float(s), float(e)]}
            for (s, e), label, score in zip(pred["segments"].tolist(), pred["labels"], pred["scores"])
        ]
    submission = MQSubmission(version=VERSION, challenge=CHALLENGE, detect_results=results)
    return write_json_atomic(submission, path)


@dataclass
class Truncation:
    """A training crop of a clip: feature steps ``[start, end)`` and the moments it keeps."""

    start: int
    end: int
    segments: Tensor  # [n', 2] kept moments in feature steps, relative to ``start``
    keep: Tensor  # [n] bool, which input moments were kept


def truncate_moments(
    num_steps: int,
    segments: Tensor,
    max_steps: int,
    trunc_thresh: float,
    offset: float,
    rng: np.random.Generator,
    crop_ratio: Sequence[float] | None = None,
    max_trials: int = 200,
) -> Truncation | None:
    """ActionFormer's training crop (``truncate_feats``, ``libs/datasets/data_utils.py``).

    A clip longer than ``max_steps`` is cut to a random window of ``max_steps`` steps; with
    ``crop_ratio = (lo, hi)`` a shorter clip is also cut, to a random length in
    ``[round(lo * T), round(hi * T)]`` steps. Moments are intersected with the window widened
    by ``offset`` steps on each side (half a feature's receptive field); a moment survives when
    that intersection covers at least ``trunc_thresh`` of the moment (intersection over the
    ACTION, not IoU). The window is re-drawn, up to ``max_trials`` times, until at least one
    moment survives; the last draw is kept otherwise. Draws come from ``rng`` only
    (``rng.integers(a, b + 1)`` where upstream calls ``random.randint(a, b)``).

    Args:
        num_steps: ``T``, the clip's feature steps.
        segments: ``[n, 2]`` moments in feature steps (step ``i`` centred at ``i``).
        max_steps: the longest window.
        trunc_thresh: the least intersection-over-moment a kept moment has.
        offset: window widening in steps (ActionFormer: ``0.5 * num_frames / feat_stride``).
        rng: the source of randomness.
        crop_ratio: ``(lo, hi)`` crop fractions for clips of at most ``max_steps``; None
            leaves them whole.
        max_trials: the most windows drawn.

    Returns:
        The crop, or None when the clip is kept whole.
    """
    if num_steps <= max_steps:
        if crop_ratio is None:
            return None
        lo, hi = crop_ratio
        # Python's round (half to even), as upstream
        max_steps = int(
            rng.integers(max(round(lo * num_steps), 1), min(round(hi * num_steps), num_steps) + 1)
        )
        if max_steps == num_steps:
            return None
    segments = segments.float().reshape(-1, 2)
    lengths = (segments[:, 1] - segments[:, 0]).abs()
    for _ in range(max_trials if len(segments) else 1):
        start = int(rng.integers(0, num_steps - max_steps + 1))
        end = start + max_steps
        left = torch.clamp(segments[:, 0], min=start - offset)
        right = torch.clamp(segments[:, 1], max=end + offset)
        # a zero-length moment gives 0 / 0: NaN, never kept (as upstream)
        keep = (right - left).clamp(min=0) / lengths >= trunc_thresh
        if keep.any():
            break
    kept = torch.stack((left[keep], right[keep]), dim=1) - start
    return Truncation(start, end, kept, keep)


class MomentQueriesDataset(EpochSeeded, Dataset):
    """Clips of one split with their feature sequences and ground-truth moments.

    Args:
        clips: parsed annotations.
        feature_dir: folder of ``<clip_uid>.pt`` / ``.npy`` files.
        class_names: label name for each class id.
        feature_dim: expected C.
        step_sec: seconds between feature steps.
        offset_sec: time of the centre of feature step 0.
        max_steps: longer sequences are cropped to this many steps (a random window during
            training, as ActionFormer does; evaluation clips are never cropped).
        train: crop randomly (:func:`truncate_moments`) and drop the moments the crop cuts.
        trunc_thresh: a cropped moment is kept when at least this fraction of it stays.
        crop_ratio: ``(lo, hi)``: training clips of at most ``max_steps`` are cropped to a
            random fraction in that range of their length; None keeps them whole.
        seed: base seed of the crops; a crop is a function of ``(seed, epoch, index)``.
        listed: the feature folder's listing to share (a data module's, for all its splits); None
            lists a URL folder afresh.
    """

    def __init__(
        self,
        clips: list[MomentClip],
        feature_dir: Path | str,
        class_names: list[str],
        feature_dim: int,
        step_sec: float,
        offset_sec: float,
        max_steps: int | None = None,
        train: bool = False,
        trunc_thresh: float = 0.3,
        crop_ratio: Sequence[float] | None = None,
        seed: int = 0,
        listed: ListedFiles | None = None,
    ):
        super().__init__(seed)
        self.clips = clips
        self.feature_dir = feature_dir
        self.class_index = {name: i for i, name in enumerate(class_names)}
        self.feature_dim = feature_dim
        self.step_sec = step_sec
        self.offset_sec = offset_sec
        self.max_steps = max_steps
        self.train = train
        self.trunc_thresh = trunc_thresh
        self.crop_ratio = crop_ratio
        self.paths = find_feature_files(feature_dir, [clip.clip_uid for clip in clips], listed)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self.clips[index]
        path = self.paths[index]
        if path is None:
            raise FileNotFoundError(
                f"{self.feature_dir}/{clip.clip_uid}.pt|.npy (clip {clip.clip_uid}): not found"
            )
        features = load_feature_file(path, self.feature_dim, what=f"clip {clip.clip_uid}")
        segments = torch.tensor([[s, e] for s, e, _ in clip.moments], dtype=torch.float32).reshape(-1, 2)
        labels = torch.tensor([self.class_index[name] for *_, name in clip.moments], dtype=torch.long)
        duration = clip.duration
        crop = None
        if self.train and (self.max_steps or self.crop_ratio):
            crop = truncate_moments(
                features.shape[0],
                seconds_to_steps(segments, self.step_sec, self.offset_sec),
                self.max_steps or features.shape[0],
                self.trunc_thresh,
                self.offset_sec / self.step_sec,
                self.rng(index),
                self.crop_ratio,
            )
        if crop is not None:
            # moments are re-expressed relative to the window start, so the feature clock
            # (offset_sec) is unchanged; they may reach 2 * offset_sec past the window's end,
            # the receptive field of its last step (ActionFormer's widening)
            features = features[crop.start : crop.end]
            segments = steps_to_seconds(crop.segments, self.step_sec, self.offset_sec)
            labels = labels[crop.keep]
            duration = (crop.end - crop.start) * self.step_sec
        return {
            "features": features,
            "video_id": clip.clip_uid,
            "duration": duration,
            "step_sec": self.step_sec,
            "offset_sec": self.offset_sec,
            "segments": segments,
            "labels": labels,
        }


def collate_temporal_features(samples: list[dict[str, Any]]) -> TemporalFeatureBatch:
    """Collate per-clip samples into a :class:`~vidlit.formats._temporal.TemporalFeatureBatch`."""
    features, mask = pad_sequences([s["features"] for s in samples])
    return TemporalFeatureBatch(
        features=features,
        mask=mask,
        video_ids=[s["video_id"] for s in samples],
        duration=torch.tensor([s["duration"] for s in samples], dtype=torch.float32),
        step_sec=torch.tensor([s["step_sec"] for s in samples], dtype=torch.float32),
        offset_sec=torch.tensor([s["offset_sec"] for s in samples], dtype=torch.float32),
        targets=[
            {"video_id": s["video_id"], "segments": s["segments"], "labels": s["labels"]} for s in samples
        ],
    )


class Ego4DMQ(Ego4DFeatureDataModule):
    """Ego4D Moment Queries on pre-extracted clip features.

    Annotation files are validated against :mod:`vidlit.formats.ego4d_mq` when first read (in
    ``setup()``, or when the class list is first asked for): one line names the file, the record
    and the key at fault. The class list is the train file's labels (or ``class_names``); a val or
    test label outside it is an error, not a new class.

    Training clips are cropped as ActionFormer's Ego4D configs do (:func:`truncate_moments`:
    ``max_seq_len`` 1024, ``trunc_thresh`` 0.3, ``crop_ratio`` [0.9, 1.0]); the crop of a clip
    is a function of ``(seed_everything seed, epoch, index)``.

    Args:
        root: dataset folder; relative file arguments below resolve against it.
        train_annotations: official train annotation JSON.
        val_annotations: official val annotation JSON (also the default test set).
        test_annotations: annotations evaluated by ``vidlit test``; defaults to ``val_annotations``.
        predict_split: the clips ``vidlit predict`` runs on: ``"val"`` (the default:
            ``val_annotations``, to inspect predictions against ground truth) or ``"test"``
            (``moments_test_unannotated.json``, the challenge submission:
            ``vidlit predict ... --data.init_args.predict_split test``).
        predict_annotations: a file for ``vidlit predict`` that overrides ``predict_split``.
        feature_dir: folder of ``<clip_uid>.pt`` / ``.npy`` features.
        feature_dim: C of the features (official SlowFast features: 2304).
        fps: frame rate the features were extracted at; None (also for the next two): read from
            ``feature_dir/extraction.json`` (``vidlit extract``), else Ego4D's 30 / 16 / 32.
        feature_stride: frames between consecutive feature steps.
        feature_window: frames each feature step sees; step ``i`` is centred at
            ``(i * feature_stride + feature_window / 2) / fps`` seconds.
        max_steps: training crop length in feature steps (ActionFormer's ``max_seq_len``).
        trunc_thresh: a moment the training crop cuts is kept when at least this fraction of it
            stays in the crop (ActionFormer's ``trunc_thresh``; 0.3 in its Ego4D configs).
        crop_ratio: ``(lo, hi)``: training clips of at most ``max_steps`` steps are cropped to a
            random fraction in that range of their length (ActionFormer's ``crop_ratio``);
            None keeps them whole.
        class_names: fixed class list; by default the sorted label names of the train file.
        primary_only: keep only ``primary`` labels.
        synthetic: when ``root`` does not exist, generate the synthetic sample dataset there
            (``vidlit data synth ego4d_mq``) and say so. Leave False for real data.
        strict: a missing feature file raises; when False, such clips are skipped with a warning.
        batch_size: clips per batch.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        root: str = "data/ego4d_mq",
        train_annotations: str = SPLIT_FILES["train"],
        val_annotations: str = SPLIT_FILES["val"],
        test_annotations: str | None = None,
        predict_split: Literal["val", "test"] = "val",
        predict_annotations: str | None = None,
        feature_dir: str = "features",
        feature_dim: int = FEATURE_DIM,
        fps: float | None = None,
        feature_stride: int | None = None,
        feature_window: int | None = None,
        max_steps: int | None = 1024,
        trunc_thresh: float = 0.3,
        crop_ratio: tuple[float, float] | None = (0.9, 1.0),
        class_names: list[str] | None = None,
        primary_only: bool = False,
        synthetic: bool = False,
        strict: bool = True,
        batch_size: int = 2,
        num_workers: int = 0,
    ):
        def write_synthetic(root: Path) -> None:
            from vidlit.data.synth.ego4d_mq import write_ego4d_mq

            write_ego4d_mq(root, feature_dim=feature_dim)

        if predict_split not in ("val", "test"):
            raise ValueError(f"predict_split must be 'val' or 'test', got {predict_split!r}")
        if predict_annotations is None and predict_split == "test":
            predict_annotations = SPLIT_FILES["test"]
        super().__init__(
            root, train_annotations, val_annotations, test_annotations, predict_annotations,
            feature_dir, feature_dim, write_synthetic if synthetic else None, strict, batch_size, num_workers,
        )  # fmt: skip
        if crop_ratio is not None and (len(crop_ratio) != 2 or not 0 < crop_ratio[0] <= crop_ratio[1] <= 1):
            raise ValueError(f"crop_ratio must be (lo, hi) with 0 < lo <= hi <= 1, got {crop_ratio}")
        self.predict_split = predict_split
        # None: from the feature folder's extraction.json, else the official 30 fps / 16 / 32
        self.clock = FeatureClock(
            *feature_timing(
                self.feature_dir, fps, feature_stride, feature_window, (FPS, FEATURE_STRIDE, FEATURE_WINDOW)
            )
        )
        self.step_sec = self.clock.step_sec
        self.offset_sec = self.clock.offset_sec
        self.max_steps = max_steps
        self.trunc_thresh = trunc_thresh
        self.crop_ratio = None if crop_ratio is None else tuple(float(r) for r in crop_ratio)
        self.primary_only = primary_only
        self._class_names = list(class_names) if class_names else None
        self._listed = ListedFiles()  # a URL feature folder listed once, for all splits

    @property
    def class_names(self) -> list[str]:
        """The class list: ``class_names`` as given, else the sorted labels of the train file."""
        if self._class_names is None:
            names = sorted({name for clip in self.clips("train") for *_, name in clip.moments})
            if not names:
                raise ValueError(
                    f"{self.files['train']}: no labelled moments found, cannot build the class list"
                )
            self._class_names = names
        return self._class_names

    @property
    def num_classes(self) -> int:
        """Number of moment classes (linked into the head's ``num_classes``)."""
        return len(self.class_names)

    def clips(self, split: str) -> list[MomentClip]:
        """Validated annotations of ``split`` (train, val, test or predict), read once.

        Every label must be a class of the taxonomy: the train file's own labels, unless
        ``class_names`` was given.
        """

        def read(path: Path | str) -> list[MomentClip]:
            if self._class_names is not None:
                return read_moment_annotations(path, self.primary_only, self._class_names, "class_names")
            if split == "train":
                return read_moment_annotations(path, self.primary_only)
            return read_moment_annotations(path, self.primary_only, self.class_names, self.files["train"])

        return self.read_split(split, read)

    def dataset(self, split: str) -> MomentQueriesDataset:
        """The dataset of one split, with missing feature files reported before training starts."""
        clips = self.clips(split)
        for clip in clips:
            confine(self.feature_dir, clip.clip_uid, f"{clip.where}: key 'clip_uid'")
        dataset = MomentQueriesDataset(
            clips,
            self.feature_dir,
            self.class_names,
            self.feature_dim,
            self.step_sec,
            self.offset_sec,
            max_steps=self.max_steps,
            train=split == "train",
            trunc_thresh=self.trunc_thresh,
            crop_ratio=self.crop_ratio,
            seed=global_seed(),
            listed=self._listed,
        )
        missing = [clip.clip_uid for clip, path in zip(clips, dataset.paths) if path is None]
        if missing:
            missing_files(
                f"{self.feature_dir}: no feature file (.pt or .npy) for {len(missing)} of {len(clips)} "
                f"{split} clips, e.g. clip {missing[0]}",
                self.strict,
            )
            keep = [i for i, path in enumerate(dataset.paths) if path is not None]
            dataset.clips = [clips[i] for i in keep]
            dataset.paths = [dataset.paths[i] for i in keep]
        return dataset

    def _collate(self) -> Callable:
        return collate_temporal_features

    def inference_inputs(self, path: Path, video_id: str) -> InferenceInput:
        """``vidlit infer``: ``path`` is one clip's ``[T, C]`` features, named ``<clip_uid>``.

        The clip's duration is the annotated one where a predict / val file lists the clip (as
        ``vidlit predict`` has it), else the span its features cover. The file is read once.
        """
        uid = path.stem
        known = {}
        for split in ("predict", "val"):
            try:
                known.update({c.clip_uid: c.duration for c in self.clips(split)})
            except (FileNotFoundError, ValueError, KeyError):
                pass  # no annotation files at hand: the features' own span
        dataset = MomentQueriesDataset(
            [MomentClip(uid, uid, 0.0, [])], path.parent, self.class_names, self.feature_dim,
            self.step_sec, self.offset_sec, max_steps=self.max_steps, train=False,
        )  # fmt: skip
        dataset.paths = [path]
        item = dataset[0]
        item["duration"] = known.get(uid, item["features"].shape[0] * self.step_sec)
        return InferenceInput(collate_temporal_features([item]), uid)

    def write_submission(self, predictions: list[SegmentPrediction], path: str | Path) -> Path:
        """Write ``vidlit predict`` output as an Ego4D MQ challenge submission JSON."""
        return write_moment_submission(predictions, self.class_names, path)
