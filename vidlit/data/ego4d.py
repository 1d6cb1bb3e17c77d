"""Ego4D episodic memory: Moment Queries annotations, clip features and submissions.

The official annotation files (``moments_train.json``, ``moments_val.json``,
``moments_test_unannotated.json``) nest ``videos -> clips -> annotations -> labels``; each label
has ``start_time`` / ``end_time`` in seconds relative to its clip, a ``label`` name and a
``primary`` flag. Features are one ``<clip_uid>.pt`` or ``.npy`` of shape ``[T, C]`` per clip,
one step every ``feature_stride`` frames at ``fps`` (the official SlowFast features: C = 2304,
stride 16 at 30 fps).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from vidlit.core.io import read_json, require, write_json_atomic
from vidlit.core.types import SegmentPrediction, TemporalFeatureBatch
from vidlit.data.base import VidlitDataModule
from vidlit.data.features import find_feature_file, load_feature_file, pad_sequences

log = logging.getLogger(__name__)

MQ_CHALLENGE = "ego4d_moment_queries"


@dataclass
class MomentClip:
    """One annotated clip: its moments as ``(start_sec, end_sec, label_name)``."""

    clip_uid: str
    video_uid: str
    duration: float
    moments: list[tuple[float, float, str]] = field(default_factory=list)


def read_moment_annotations(path: str | Path, primary_only: bool = False) -> list[MomentClip]:
    """Parse an official Ego4D MQ annotation JSON into clips.

    A label shared by several annotators of one clip is kept once. Clips without
    ``annotations`` (the unannotated test split) come back with no moments.

    Args:
        path: ``moments_{train,val,test_unannotated}.json``.
        primary_only: keep only labels flagged ``primary``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid JSON (with line and column) or a missing key (with its location).
    """
    path = Path(path)
    data = read_json(path)
    clips = []
    for v, video in enumerate(require(data, "videos", "top level", path)):
        for c, clip in enumerate(require(video, "clips", f"videos[{v}]", path)):
            where = f"videos[{v}].clips[{c}]"
            uid = require(clip, "clip_uid", where, path)
            where = f"{where} (clip_uid {uid})"
            start = require(clip, "video_start_sec", where, path)
            end = require(clip, "video_end_sec", where, path)
            moments: set[tuple[float, float, str]] = set()
            for a, annotation in enumerate(clip.get("annotations", [])):
                for n, label in enumerate(require(annotation, "labels", f"{where}.annotations[{a}]", path)):
                    at = f"{where}.annotations[{a}].labels[{n}]"
                    s, e = (float(require(label, k, at, path)) for k in ("start_time", "end_time"))
                    name = require(label, "label", at, path)
                    if e < s:
                        raise ValueError(f"{path}: {at}: end_time {e} is before start_time {s}")
                    if primary_only and not label.get("primary", False):
                        continue
                    moments.add((s, e, name))
            clips.append(
                MomentClip(uid, video.get("video_uid", ""), float(end) - float(start), sorted(moments))
            )
    return clips


def write_moment_submission(
    predictions: list[SegmentPrediction], class_names: list[str], path: str | Path
) -> Path:
    """Write predictions as an Ego4D MQ challenge submission JSON.

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
    return write_json_atomic({"version": "1.0", "challenge": MQ_CHALLENGE, "detect_results": results}, path)


class MomentQueriesDataset(Dataset):
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
        train: crop randomly and drop moments outside the crop.
    """

    def __init__(
        self,
        clips: list[MomentClip],
        feature_dir: Path,
        class_names: list[str],
        feature_dim: int,
        step_sec: float,
        offset_sec: float,
        max_steps: int | None = None,
        train: bool = False,
    ):
        self.clips = clips
        self.feature_dir = feature_dir
        self.class_index = {name: i for i, name in enumerate(class_names)}
        self.feature_dim = feature_dim
        self.step_sec = step_sec
        self.offset_sec = offset_sec
        self.max_steps = max_steps
        self.train = train
        self.paths = [find_feature_file(feature_dir, clip.clip_uid) for clip in clips]

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
        if self.train and self.max_steps and features.shape[0] > self.max_steps:
            # a random window, as ActionFormer trains on long clips; moments are re-expressed
            # relative to the window start, so the feature clock (offset_sec) is unchanged
            start = int(torch.randint(0, features.shape[0] - self.max_steps + 1, ()).item())
            features = features[start : start + self.max_steps]
            shift, duration = start * self.step_sec, self.max_steps * self.step_sec
            keep = (segments[:, 1] > shift) & (segments[:, 0] < shift + duration)
            segments = (segments[keep] - shift).clamp(min=0, max=duration)
            labels = labels[keep]
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
    """Collate per-clip samples into a :class:`~vidlit.core.types.TemporalFeatureBatch`."""
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


class Ego4DMomentQueries(VidlitDataModule):
    """Ego4D Moment Queries on pre-extracted clip features.

    Args:
        root: dataset folder; relative file arguments below resolve against it.
        train_annotations: official train annotation JSON.
        val_annotations: official val annotation JSON (also the default test set).
        test_annotations: annotations evaluated by ``vidlit test``; defaults to ``val_annotations``.
        predict_annotations: clips ``vidlit predict`` runs on (e.g. ``moments_test_unannotated.json``);
            defaults to ``val_annotations``.
        feature_dir: folder of ``<clip_uid>.pt`` / ``.npy`` features.
        feature_dim: C of the features (official SlowFast features: 2304).
        fps: frame rate the features were extracted at.
        feature_stride: frames between consecutive feature steps.
        feature_window: frames each feature step sees; step ``i`` is centred at
            ``(i * feature_stride + feature_window / 2) / fps`` seconds.
        max_steps: training crop length in feature steps.
        class_names: fixed class list; by default the sorted label names found in the train
            and val annotations.
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
        train_annotations: str = "moments_train.json",
        val_annotations: str = "moments_val.json",
        test_annotations: str | None = None,
        predict_annotations: str | None = None,
        feature_dir: str = "features",
        feature_dim: int = 2304,
        fps: float = 30.0,
        feature_stride: int = 16,
        feature_window: int = 32,
        max_steps: int | None = 1024,
        class_names: list[str] | None = None,
        primary_only: bool = False,
        synthetic: bool = False,
        strict: bool = True,
        batch_size: int = 2,
        num_workers: int = 0,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.root = Path(root)
        if synthetic and not self.root.exists():
            from vidlit.data.synth.ego4d_mq import write_ego4d_mq

            log.warning("%s does not exist: writing the SYNTHETIC Ego4D MQ sample dataset there", self.root)
            write_ego4d_mq(self.root, feature_dim=feature_dim)
        self.feature_dir = self.root / feature_dir
        self.feature_dim = feature_dim
        self.step_sec = feature_stride / fps
        self.offset_sec = 0.5 * feature_window / fps
        self.max_steps = max_steps
        self.strict = strict
        self.primary_only = primary_only
        self.files = {
            "train": self.root / train_annotations,
            "val": self.root / val_annotations,
            "test": self.root / (test_annotations or val_annotations),
            "predict": self.root / (predict_annotations or val_annotations),
        }
        self._clips: dict[str, list[MomentClip]] = {}
        self.class_names = class_names or sorted(
            {name for split in ("train", "val") for clip in self.clips(split) for *_, name in clip.moments}
        )
        if not self.class_names:
            raise ValueError(f"{self.files['train']}: no labelled moments found, cannot build the class list")

    @property
    def num_classes(self) -> int:
        """Number of moment classes (linked into the head's ``num_classes``)."""
        return len(self.class_names)

    def clips(self, split: str) -> list[MomentClip]:
        """Parsed annotations of ``split`` (train, val, test or predict), read once."""
        if split not in self._clips:
            self._clips[split] = read_moment_annotations(self.files[split], self.primary_only)
        return self._clips[split]

    def dataset(self, split: str) -> MomentQueriesDataset:
        """The dataset of one split, with missing feature files reported before training starts."""
        clips = self.clips(split)
        known = set(self.class_names)
        for clip in clips:
            for *_, name in clip.moments:
                if name not in known:
                    raise ValueError(
                        f"{self.files[split]}: clip {clip.clip_uid}: label {name!r} not in class_names"
                    )
        dataset = MomentQueriesDataset(
            clips,
            self.feature_dir,
            self.class_names,
            self.feature_dim,
            self.step_sec,
            self.offset_sec,
            max_steps=self.max_steps,
            train=split == "train",
        )
        missing = [clip.clip_uid for clip, path in zip(clips, dataset.paths) if path is None]
        if missing:
            message = (
                f"{self.feature_dir}: no feature file (.pt or .npy) for {len(missing)} of {len(clips)} "
                f"{split} clips, e.g. clip {missing[0]}"
            )
            if self.strict:
                raise FileNotFoundError(message)
            log.warning("%s; skipping them (strict=False)", message)
            keep = [i for i, path in enumerate(dataset.paths) if path is not None]
            dataset.clips = [clips[i] for i in keep]
            dataset.paths = [dataset.paths[i] for i in keep]
        return dataset

    def _collate(self) -> Callable:
        return collate_temporal_features

    def write_submission(self, predictions: list[SegmentPrediction], path: str | Path) -> Path:
        """Write ``vidlit predict`` output as an Ego4D MQ challenge submission JSON."""
        return write_moment_submission(predictions, self.class_names, path)
