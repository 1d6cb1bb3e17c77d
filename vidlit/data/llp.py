"""LLP (Look, Listen and Parse): audio-visual video parsing annotations and features.

The official files of Tian et al., "Unified Multisensory Perception: Weakly-Supervised
Audio-Visual Video Parsing" (ECCV 2020; YapengTian/AVVP-ECCV20), all tab-separated with a
header row:

- ``AVVP_train.csv``, ``AVVP_val_pd.csv``, ``AVVP_test_pd.csv``: ``filename event_labels``,
  the video-level labels (comma-joined category names) of each 10-second video. Training
  sees only these (weak supervision).
- ``AVVP_eval_audio.csv``, ``AVVP_eval_visual.csv``: ``filename onset offset event_labels``,
  one row per audio (visual) event, onset and offset in whole seconds; segment ``t`` (second
  ``t`` to ``t + 1``) is positive for rows with ``int(onset) <= t < int(offset)``. They cover
  the val and test videos; a video without rows has no event of that modality.

``filename`` is ``<YouTube id>_<start>_<end>``. Features are one ``.npy`` per video in three
folders, named by the first 11 characters of ``filename`` as the official loader does
(``row[0][:11]``; a file named by the whole ``filename`` is accepted too):
``feats/vggish`` (``[10, 128]``, VGGish per second), ``feats/res152`` (``[80, 2048]``,
ResNet-152 at 8 fps) and ``feats/r2plus1d_18`` (``[10, 512]``, R(2+1)D-18 per second).

The dataset folder may be an fsspec URL (``s3://bucket/llp``, ``memory://x``): the CSVs and feature
files are then read through :func:`fsspec.open`, each feature folder listed once.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from vidlit.core.io import (
    ListedFiles,
    as_folder,
    as_path,
    confined_path,
    file_exists,
    is_url,
    join_path,
    read_bytes,
)
from vidlit.data.base import InferenceInput, VidlitDataModule, missing_files, split_files
from vidlit.data.features import load_feature_file, pad_sequences
from vidlit.formats._schema import AnnotationError, validate
from vidlit.formats.llp import (  # noqa: F401  (the family's names, re-exported)
    LLP_CATEGORIES,
    NUM_SEGMENTS,
    EventRow,
    LLPBatch,
    WeakLabelRow,
)

log = logging.getLogger(__name__)


@dataclass
class LLPVideo:
    """One video of a split: its video-level labels and, where annotated, its events.

    Attributes:
        filename: ``<YouTube id>_<start>_<end>``.
        labels: video-level category names.
        audio_events: ``(onset, offset, name)`` rows of ``AVVP_eval_audio.csv``.
        visual_events: ``(onset, offset, name)`` rows of ``AVVP_eval_visual.csv``.
    """

    filename: str
    labels: list[str]
    audio_events: list[tuple[int, int, str]] = field(default_factory=list)
    visual_events: list[tuple[int, int, str]] = field(default_factory=list)


def _read_tsv(path: Path | str, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if is_url(path):
        text = read_bytes(path, "annotation file").decode("utf-8")
        return _parse_tsv(io.StringIO(text, newline=""), path, columns)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found")
    with path.open(newline="") as f:
        return _parse_tsv(f, path, columns)


def _parse_tsv(f: Any, path: Path | str, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(f, delimiter="\t")
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise AnnotationError(
            f"{path}: line 1: missing column(s) {missing} in the tab-separated header "
            f"{reader.fieldnames} (expected {list(columns)})"
        )
    return [(reader.line_num, {k: v for k, v in row.items() if k is not None}) for row in reader]


def read_weak_labels(
    path: str | Path, class_names: tuple[str, ...] | list[str] | None = None
) -> list[LLPVideo]:
    """Parse ``AVVP_{train,val_pd,test_pd}.csv`` (``filename event_labels``) in file order.

    Each row is validated against :class:`~vidlit.formats.llp.WeakLabelRow`.

    Args:
        path: the CSV.
        class_names: known categories; an unknown label raises. None accepts any.

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: one line naming file, line and key: a missing column, an empty field, an
            unknown category, a video listed twice, or a file without any video (a header-only
            split would train or evaluate nothing).
    """
    path = as_path(path)
    context = {"classes": None if class_names is None else set(class_names)}
    videos, seen = [], {}
    for line, row in _read_tsv(path, ("filename", "event_labels")):
        record = validate(WeakLabelRow, row, path, where=f"line {line}", context=context)
        if record.filename in seen:
            raise AnnotationError(
                f"{path}: line {line}: key 'filename': {record.filename!r} is already listed on line "
                f"{seen[record.filename]}"
            )
        seen[record.filename] = line
        videos.append(LLPVideo(record.filename, list(record.event_labels)))
    if not videos:
        raise AnnotationError(f"{path}: no video after the header row (the split would have nothing to use)")
    return videos


def read_event_annotations(
    path: str | Path, class_names: tuple[str, ...] | list[str] | None = None, duration: float = NUM_SEGMENTS
) -> dict[str, list[tuple[int, int, str]]]:
    """Parse ``AVVP_eval_{audio,visual}.csv`` into ``filename -> [(onset, offset, name)]``.

    Each row is validated against :class:`~vidlit.formats.llp.EventRow`. Onsets and offsets are
    truncated to whole seconds (the official ``int(onset)``); rows with ``onset == offset`` (they
    occur in the official files) are kept and mark no segment.

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: one line naming file, line and key: a missing column, a non-numeric,
            reversed or out-of-video time, or an unknown category.
    """
    path = as_path(path)
    context = {"classes": None if class_names is None else set(class_names), "duration": duration}
    events: dict[str, list[tuple[int, int, str]]] = {}
    for line, row in _read_tsv(path, ("filename", "onset", "offset", "event_labels")):
        record = validate(EventRow, row, path, where=f"line {line}", context=context)
        events.setdefault(record.filename, []).append(
            (int(record.onset), int(record.offset), record.event_labels)
        )
    return events


def segment_labels(
    events: list[tuple[int, int, str]], class_index: dict[str, int], num_segments: int = 10
) -> Tensor:
    """``[num_segments, K]`` binary ground truth: ``GT[onset:offset, class] = 1`` per event.

    As the official ``GT_a[idx, x1:x2] = 1``, offsets past the last segment are clipped.
    """
    gt = torch.zeros(num_segments, len(class_index), dtype=torch.uint8)
    for onset, offset, name in events:
        gt[onset:offset, class_index[name]] = 1
    return gt


def find_llp_feature(
    folder: Path | str, filename: str, exists: Callable[[Path | str], bool] = file_exists
) -> Path | str | None:
    """``<filename[:11]>.npy`` (the official naming), else ``<filename>.npy``; None if neither.

    Args:
        folder: the feature folder, local or an fsspec URL.
        filename: the video's ``filename``.
        exists: asks whether a file exists; :meth:`~vidlit.core.io.ListedFiles.exists` lists a
            URL folder once instead of asking once per file.

    Raises:
        ValueError: a ``filename`` that would point outside ``folder`` (``../../x``).
    """
    for key in (filename[:11], filename):
        path = confined_path(folder, f"{key}.npy", f"video {filename!r}")
        if exists(path):
            return path
    return None


class LLPDataset(Dataset):
    """Videos of one split with their audio and visual feature sequences.

    Each sample holds ``audio`` ``[T, audio_dim]``, ``visual`` ``[T, feature_dim]`` (the
    ResNet-152 frames averaged over each segment, concatenated with the R(2+1)D segment
    features), ``labels`` ``[K]`` (video level) and ``target``. Averaging the frames here is
    what the official model does after its first linear layer (``fc_v`` then an 8-frame average
    pool); a linear layer commutes with the average.

    Args:
        videos: parsed split.
        folders: ``(audio, visual, motion)`` feature folders; motion None to go without.
        class_names: category of each class id.
        audio_dim: expected audio width.
        visual_dim: expected appearance width (ResNet-152: 2048).
        motion_dim: expected motion width (R(2+1)D-18: 512), 0 without motion features.
        num_segments: segments per video (10).
        segment_truth: put the segment-level ground truth in ``target`` (eval splits).
        listed: the lookup that lists each URL feature folder once, shared by the splits of a
            data module; None starts one.
    """

    def __init__(
        self,
        videos: list[LLPVideo],
        folders: tuple[Path | str, Path | str, Path | str | None],
        class_names: list[str],
        audio_dim: int,
        visual_dim: int,
        motion_dim: int,
        num_segments: int = 10,
        segment_truth: bool = False,
        listed: ListedFiles | None = None,
    ):
        self.videos = videos
        self.folders = folders
        self.class_index = {name: i for i, name in enumerate(class_names)}
        self.audio_dim, self.visual_dim, self.motion_dim = audio_dim, visual_dim, motion_dim
        self.num_segments = num_segments
        self.segment_truth = segment_truth
        # each feature file is looked up once (missing() at setup fills this before workers fork)
        self._found: dict[tuple[Path | str, str], Path | str | None] = {}
        self._listed = listed if listed is not None else ListedFiles()

    def _find(self, folder: Path | str, filename: str) -> Path | str | None:
        key = (folder, filename)
        if key not in self._found:
            self._found[key] = find_llp_feature(folder, filename, self._listed.exists)
        return self._found[key]

    def missing(self) -> list[tuple[int, Path | str]]:
        """``(index, expected path)`` of every video lacking one of its feature files."""
        out = []
        for i, video in enumerate(self.videos):
            for folder in self.folders:
                if folder is not None and self._find(folder, video.filename) is None:
                    out.append((i, join_path(folder, f"{video.filename[:11]}.npy")))
                    break
        return out

    def __len__(self) -> int:
        return len(self.videos)

    def _load(self, folder: Path | str, video: LLPVideo, dim: int, what: str) -> Tensor:
        path = self._find(folder, video.filename)
        if path is None:
            raise FileNotFoundError(
                f"{folder}/{video.filename[:11]}.npy ({what} of {video.filename}): not found"
            )
        features = load_feature_file(path, dim, what=f"{what} of {video.filename}")
        steps = features.shape[0]
        if steps % self.num_segments:
            raise ValueError(
                f"{path} ({what} of {video.filename}): {steps} steps is not a multiple of "
                f"{self.num_segments} segments"
            )
        # e.g. 80 ResNet frames at 8 fps -> 10 one-second segments
        return features.reshape(self.num_segments, steps // self.num_segments, dim).mean(1)

    def __getitem__(self, index: int) -> dict[str, Any]:
        video = self.videos[index]
        audio_dir, visual_dir, motion_dir = self.folders
        audio = self._load(audio_dir, video, self.audio_dim, "audio features")
        visual = self._load(visual_dir, video, self.visual_dim, "appearance features")
        if motion_dir is not None:
            visual = torch.cat(
                (visual, self._load(motion_dir, video, self.motion_dim, "motion features")), dim=-1
            )
        labels = torch.zeros(len(self.class_index))
        labels[[self.class_index[n] for n in video.labels]] = 1.0
        target: dict[str, Any] = {"video_id": video.filename, "labels": labels}
        if self.segment_truth:
            target["audio"] = segment_labels(video.audio_events, self.class_index, self.num_segments)
            target["visual"] = segment_labels(video.visual_events, self.class_index, self.num_segments)
        return {
            "audio": audio,
            "visual": visual,
            "labels": labels,
            "video_id": video.filename,
            "target": target,
        }


def collate_llp(samples: list[dict[str, Any]]) -> LLPBatch:
    """Batch LLP samples.

    Shape legend: ``b`` videos, ``t`` segments, ``k`` classes.

    Returns:
        ``{"audio": [b, t, Ca], "visual": [b, t, Cv], "mask": [b, t] bool, "labels": [b, k]
        video-level, "video_ids", "targets"}``; ``targets`` are the metric's per-video dicts.
    """
    audio, mask = pad_sequences([s["audio"] for s in samples])
    visual, _ = pad_sequences([s["visual"] for s in samples])
    return LLPBatch(
        audio=audio,
        visual=visual,
        mask=mask,
        labels=torch.stack([s["labels"] for s in samples]),
        video_ids=[s["video_id"] for s in samples],
        targets=[s["target"] for s in samples],
    )


class LLPVideoParsing(VidlitDataModule):
    """LLP audio-visual video parsing on the official pre-extracted features.

    Training reads only the video-level labels of ``train_csv``; validation and test videos
    get their segment-level ground truth from the eval CSVs, for
    :class:`vidlit.metrics.avvp.AVVPMetrics`.

    Args:
        root: dataset folder, or an fsspec URL of one (``s3://bucket/llp``, ``memory://x``);
            relative paths below resolve against it.
        train_csv: weak labels of the training videos.
        val_csv: videos evaluated during ``fit`` and ``validate``.
        test_csv: videos ``vidlit test`` evaluates.
        predict_csv: videos ``vidlit predict`` runs on; defaults to ``test_csv``.
        eval_audio_csv: audio events of the val and test videos.
        eval_visual_csv: visual events of the val and test videos.
        audio_dir: VGGish features, ``[T, audio_dim]`` per video.
        visual_dir: ResNet-152 frame features, ``[T * frames, visual width]`` per video.
        motion_dir: R(2+1)D-18 features, ``[T, motion_dim]`` per video; None to leave them out.
        audio_dim: audio width (VGGish: 128).
        feature_dim: width of the visual stream the head gets: appearance width plus
            ``motion_dim`` (2048 + 512).
        motion_dim: motion width (512); 0 with ``motion_dir: null``.
        num_segments: one-second segments per video (10).
        class_names: categories in label order; defaults to the 25 LLP categories.
        synthetic: when ``root`` does not exist, write the synthetic sample dataset there
            (``vidlit data synth llp``, with these feature widths) and say so; local folders
            only (a URL root must hold the data already).
        strict: a missing feature file raises; when False the video is skipped with a warning.
        batch_size: videos per batch (official: 16).
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        root: str = "data/llp",
        train_csv: str = "AVVP_train.csv",
        val_csv: str = "AVVP_val_pd.csv",
        test_csv: str = "AVVP_test_pd.csv",
        predict_csv: str | None = None,
        eval_audio_csv: str = "AVVP_eval_audio.csv",
        eval_visual_csv: str = "AVVP_eval_visual.csv",
        audio_dir: str = "feats/vggish",
        visual_dir: str = "feats/res152",
        motion_dir: str | None = "feats/r2plus1d_18",
        audio_dim: int = 128,
        feature_dim: int = 2560,
        motion_dim: int = 512,
        num_segments: int = 10,
        class_names: list[str] | None = None,
        synthetic: bool = False,
        strict: bool = True,
        batch_size: int = 16,
        num_workers: int = 0,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        if motion_dir is None:
            motion_dim = 0
        if not 0 <= motion_dim < feature_dim:
            raise ValueError(f"motion_dim {motion_dim} must lie in [0, feature_dim={feature_dim})")
        self.root: Path | str = as_folder(root)
        if synthetic:
            from vidlit.data.synth import write_sample_if_missing
            from vidlit.data.synth.llp import write_llp

            sample = functools.partial(
                write_llp, audio_dim=audio_dim, visual_dim=feature_dim - motion_dim,
                motion_dim=motion_dim or 1, num_segments=num_segments,
            )  # fmt: skip
            write_sample_if_missing(
                self.root, sample, "LLP sample dataset", marker=train_csv, task="llp", log=log
            )
        self.audio_dim, self.feature_dim, self.motion_dim = audio_dim, feature_dim, motion_dim
        self.num_segments = num_segments
        self.strict = strict
        self.class_names = list(class_names) if class_names is not None else list(LLP_CATEGORIES)
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names has duplicates: {self.class_names}")
        self.folders = (
            join_path(self.root, audio_dir),
            join_path(self.root, visual_dir),
            join_path(self.root, motion_dir) if motion_dir is not None else None,
        )
        self.files = split_files(self.root, train_csv, val_csv, test_csv, predict_csv or test_csv)
        self.eval_files = (join_path(self.root, eval_audio_csv), join_path(self.root, eval_visual_csv))
        self._events: tuple[dict, dict] | None = None
        self._listed = ListedFiles()  # each URL feature folder listed once, for all splits

    @property
    def num_classes(self) -> int:
        """Number of event categories (linked into the head's ``num_classes``)."""
        return len(self.class_names)

    def events(self) -> tuple[dict, dict]:
        """Audio and visual ``filename -> [(onset, offset, name)]`` of the eval CSVs, read once."""
        if self._events is None:
            audio, visual = (
                read_event_annotations(p, self.class_names, self.num_segments) for p in self.eval_files
            )
            self._events = (audio, visual)
        return self._events

    def videos(self, split: str) -> list[LLPVideo]:
        """Videos of ``split`` (train, val, test or predict); eval splits carry their events."""
        videos = read_weak_labels(self.files[split], self.class_names)
        if split != "train":
            audio, visual = self.events()
            for video in videos:
                video.audio_events = audio.get(video.filename, [])
                video.visual_events = visual.get(video.filename, [])
        return videos

    def dataset(self, split: str) -> LLPDataset:
        """The dataset of one split, with missing feature files reported before training starts."""
        videos = self.videos(split)
        dataset = LLPDataset(
            videos,
            self.folders,
            self.class_names,
            self.audio_dim,
            self.feature_dim - self.motion_dim,
            self.motion_dim,
            self.num_segments,
            segment_truth=split != "train",
            listed=self._listed,
        )
        missing = dataset.missing()
        if missing:
            missing_files(
                f"no feature file for {len(missing)} of {len(videos)} {split} videos "
                f"({self.files[split]}), e.g. {missing[0][1]}",
                self.strict,
            )
            drop = {i for i, _ in missing}
            dataset.videos = [v for i, v in enumerate(videos) if i not in drop]
        return dataset

    def _collate(self) -> Callable:
        return collate_llp

    def inference_inputs(
        self, path: Path, video_id: str, audio: Path | None = None, motion: Path | None = None
    ) -> InferenceInput:
        """``vidlit infer``: audio and visual events per second of one video, from its features.

        ``path`` holds its appearance features (ResNet-152 frames), ``audio`` (``--audio``) its
        VGGish features and ``motion`` (``--motion``) its R(2+1)D features.

        ``audio`` and ``motion`` default to the file of the same name in ``audio_dir`` /
        ``motion_dir`` (the official layout); the head parses each segment per modality.
        """
        audio_dir, _, motion_dir = self.folders
        audio = Path(audio) if audio is not None else join_path(audio_dir, path.name)
        files = {"audio": audio}
        if motion_dir is not None:
            files["motion"] = Path(motion) if motion is not None else join_path(motion_dir, path.name)
        elif motion is not None:
            raise ValueError(
                f"{video_id}: this model uses no motion features (motion_dir: null); drop --motion"
            )
        for kind, file in files.items():
            if not file_exists(file):
                raise FileNotFoundError(f"{file}: {kind} features of {video_id} not found (--{kind})")
        # the dataset finds a stream's file by (folder, name): the files given stand for their
        # folders, so each stream reads its own file, whatever its name and folder
        folders = (audio, path, files.get("motion"))
        dataset = LLPDataset(
            [LLPVideo(path.stem, [])], folders, self.class_names, self.audio_dim,
            self.feature_dim - self.motion_dim, self.motion_dim, self.num_segments,
        )  # fmt: skip
        dataset._found = {(file, path.stem): file for file in folders if file is not None}
        return InferenceInput(collate_llp([dataset[0]]), path.stem)
