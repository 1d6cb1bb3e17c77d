"""AVE (Audio-Visual Event) localization: the official annotation text files and feature h5 files.

Tian et al., "Audio-Visual Event Localization in Unconstrained Videos" (ECCV 2018). The
official release (``YapengTian/AVE-ECCV18``) lays a dataset root out as:

- ``Annotations.txt``: one line per event, ``Category&VideoID&Quality&StartTime&EndTime``
  (integer seconds in ``[0, 10]``, end exclusive; an optional header line naming these fields).
  The order of the *distinct* video ids is the row order of every ``.h5`` file below.
  ``trainSet.txt`` / ``valSet.txt`` / ``testSet.txt`` list the videos of each split in the same format.
- ``audio_feature.h5`` (``[N, 10, 128]`` VGGish), ``visual_feature.h5`` (``[N, 10, 7, 7, 512]``
  VGG-19 pool5 maps), ``labels.h5`` (``[N, 10, 29]`` one-hot, background last): each under the
  dataset key ``avadataset``.
- ``train_order.h5`` / ``val_order.h5`` / ``test_order.h5``: key ``order``, the row indices of
  each split.
- Weak supervision: ``mil_labels.h5`` (``[N, 29]`` video-level multi-hot) and the extra
  background-only training videos ``audio_feature_noisy.h5`` / ``visual_feature_noisy.h5`` /
  ``labels_noisy.h5`` (``[M, 29]``), appended to the training split as the official
  ``AVE_weak_Dataset`` does.

The reader takes features from the h5 files; segment labels from ``labels.h5`` or, without it,
derived from the annotation text (segment ``t`` covers second ``[t, t + 1)`` and is an event
when ``start <= t < end``); splits from the order files or, without them, from the split text
files. Weak supervision hands the loss only video-level labels (``mil_labels.h5`` or the classes
present in the segment labels); the metric still reads every segment's label from ``targets``.

The dataset folder may be an fsspec URL (``s3://bucket/ave``, ``memory://x``): the text files are
then read through :func:`fsspec.open`, and the h5 files are opened by h5py on :func:`fsspec.open`'s
file objects, so a row is read with ranged reads, not the whole file.

Batch (:class:`AVEBatch`), shape legend ``b`` videos, ``t`` segments (10), ``h w`` grid (7 x 7),
``c`` visual channels, ``k`` classes incl. background (29).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from vidlit.core.io import (
    ListedFiles,
    as_folder,
    as_path,
    is_url,
    join_path,
    path_name,
    read_bytes,
)
from vidlit.data.base import InferenceInput, VidlitDataModule
from vidlit.data.features import load_array_file
from vidlit.formats._schema import AnnotationError, validate
from vidlit.formats.ave import (  # noqa: F401  (the family's names, re-exported)
    AVE_CATEGORIES,
    BACKGROUND,
    H5_KEY,
    HEADER,
    NUM_SEGMENTS,
    ORDER_KEY,
    SPLIT_FILES,
    AVEBatch,
    AVEEvent,
)


def read_ave_annotations(path: str | Path, class_names: list[str] | None = None) -> list[AVEEvent]:
    """Parse an AVE annotation file (``Annotations.txt``, ``trainSet.txt``, ...).

    Each line is validated against :class:`~vidlit.formats.ave.AVEEvent`.

    Args:
        path: the file.
        class_names: event categories a line's ``Category`` must be one of; None accepts any.

    Raises:
        FileNotFoundError: the file is missing.
        AnnotationError: one line naming file, line and key: a line without 5 ``&``-separated
            fields, non-integer or out-of-range times, an empty VideoID, an unknown category, or a
            file without any event.
    """
    path = as_path(path)
    text = read_bytes(path, "AVE annotation file").decode("utf-8")  # one request at a URL: no exists first
    context = {"classes": None if class_names is None else set(class_names)}
    events = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or (number == 1 and line.replace(" ", "").lower() == HEADER.lower()):
            continue
        fields = [f.strip() for f in line.split("&")]
        if len(fields) != 5:
            raise AnnotationError(f"{path}: line {number}: expected '{HEADER}', got {raw!r}")
        document = dict(zip(("category", "video_id", "quality", "start", "end"), fields), line=number)
        events.append(validate(AVEEvent, document, path, where=f"line {number}", context=context))
    if not events:
        raise AnnotationError(f"{path}: no event line (expected '{HEADER}' lines)")
    return events


def video_order(events: list[AVEEvent]) -> list[str]:
    """Distinct video ids in order of first appearance: the row order of the official h5 files."""
    return list(dict.fromkeys(e.video_id for e in events))


def segment_labels_from_events(
    events: list[AVEEvent], class_names: list[str], path: str | Path = "annotations"
) -> dict[str, np.ndarray]:
    """Per-video ``[10]`` int64 segment labels: the event class on covered seconds, else background.

    Raises:
        ValueError: an unknown category, or two events of different categories on one segment.
    """
    index = {name: i for i, name in enumerate(class_names)}
    background = len(class_names) - 1
    labels: dict[str, np.ndarray] = {}
    for e in events:
        if e.category not in index or index[e.category] == background:
            raise AnnotationError(
                f"{path}: line {e.line}: key 'category': unknown event category {e.category!r}"
            )
        seg = labels.setdefault(e.video_id, np.full(NUM_SEGMENTS, background, dtype=np.int64))
        span = seg[e.start : e.end]
        clash = (span != background) & (span != index[e.category])
        if clash.any():
            raise AnnotationError(
                f"{path}: line {e.line}: video {e.video_id} has two different events on second(s) "
                f"{(np.nonzero(clash)[0] + e.start).tolist()}"
            )
        span[:] = index[e.category]
    return labels


def _open_h5(path: Path | str, closing: contextlib.ExitStack | None = None) -> h5py.File:
    """An h5 file opened for reading; a URL through a :func:`fsspec.open` file object (h5py reads
    file-like objects: a row costs ranged reads, not the whole file).

    Args:
        path: the file, local or an fsspec URL.
        closing: the file (and its fsspec file object) close with this stack; None leaves it open
            for the caller (a dataset keeps its files open).

    Raises:
        FileNotFoundError: ``{path}: not found`` (the open is the existence check: no extra request).
        AnnotationError: a file h5py cannot open (not HDF5, truncated, a folder), in one line.
    """
    opened = None  # a URL's fsspec file object
    try:
        if is_url(path):
            import fsspec

            opened = fsspec.open(path, "rb").open()
        f = h5py.File(path if opened is None else opened, "r")
    except OSError as e:
        if opened is not None:
            opened.close()
        if isinstance(e, FileNotFoundError):
            raise FileNotFoundError(f"{path}: not found") from None
        if isinstance(e, ConnectionError | TimeoutError):  # the store's trouble, not the file's
            raise
        # h5py's "file signature not found", a folder, a truncated file; its messages span lines
        reason = " ".join(str(e).split())
        raise AnnotationError(f"{path}: not a readable HDF5 file ({reason})") from None
    if closing is not None:
        if opened is not None:
            closing.callback(opened.close)  # after the h5 file, which the stack closes first
        closing.enter_context(f)
    return f


@contextlib.contextmanager
def _h5_dataset(path: Path | str, key: str = H5_KEY) -> Iterator[h5py.Dataset]:
    """The dataset ``key`` of an h5 file (local or URL), the file closed afterwards."""
    with contextlib.ExitStack() as stack:
        f = _open_h5(path, stack)
        if key not in f:
            raise ValueError(f"{path}: no dataset {key!r} (found {sorted(f.keys())})")
        yield f[key]


def _read_h5(path: Path | str, key: str = H5_KEY) -> np.ndarray:
    with _h5_dataset(path, key) as dataset:
        return dataset[()]


def _h5_shape(path: Path | str, key: str = H5_KEY) -> tuple[int, ...]:
    with _h5_dataset(path, key) as dataset:
        return tuple(dataset.shape)


class AVEDataset(Dataset):
    """AVE videos of one split, features read lazily from the h5 files.

    Args:
        audio_path: ``audio_feature.h5``-style file, ``[N, 10, A]`` under ``avadataset``.
        visual_path: ``visual_feature.h5``-style file, ``[N, 10, 7, 7, C]`` (or ``[N, 10, C]``).
        rows: the rows of this split.
        segment_labels: ``[N', 10]`` int64 labels indexed like the files (None for
            background-only extra videos, given ``video_labels`` only).
        video_labels: ``[N', K]`` video-level multi-hot labels.
        video_ids: id of every row.
    """

    def __init__(
        self,
        audio_path: Path | str,
        visual_path: Path | str,
        rows: np.ndarray,
        segment_labels: np.ndarray,
        video_labels: np.ndarray,
        video_ids: list[str],
    ):
        self.audio_path, self.visual_path = audio_path, visual_path
        self.rows = np.asarray(rows, dtype=np.int64)
        self.segment_labels = segment_labels
        self.video_labels = video_labels
        self.video_ids = video_ids
        self._files: tuple[h5py.Dataset, h5py.Dataset] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        # h5py handles do not pickle; each DataLoader worker opens its own
        return {**self.__dict__, "_files": None}

    def _open(self) -> tuple[h5py.Dataset, h5py.Dataset]:
        if self._files is None:
            self._files = (_open_h5(self.audio_path)[H5_KEY], _open_h5(self.visual_path)[H5_KEY])
        return self._files

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = int(self.rows[index])
        audio, visual = self._open()
        a = torch.from_numpy(np.asarray(audio[row], dtype=np.float32))
        v = torch.from_numpy(np.asarray(visual[row], dtype=np.float32))
        if not (torch.isfinite(a).all() and torch.isfinite(v).all()):
            raise ValueError(f"{self.audio_path} / {self.visual_path}: row {row} has NaN or Inf features")
        return {
            "audio": a,
            "visual": v,
            "segment_labels": torch.from_numpy(self.segment_labels[row].astype(np.int64)),
            "video_labels": torch.from_numpy(self.video_labels[row].astype(np.float32)),
            "video_id": self.video_ids[row],
        }


def collate_ave(samples: list[dict[str, Any]], weak: bool = False) -> AVEBatch:
    """Stack samples into an :class:`AVEBatch`; ``weak`` leaves ``segment_labels`` out of the batch."""
    batch = AVEBatch(
        audio=torch.stack([s["audio"] for s in samples]),
        visual=torch.stack([s["visual"] for s in samples]),
        video_labels=torch.stack([s["video_labels"] for s in samples]),
        video_ids=[s["video_id"] for s in samples],
        targets=[{"video_id": s["video_id"], "labels": s["segment_labels"]} for s in samples],
    )
    if not weak:
        batch["segment_labels"] = torch.stack([s["segment_labels"] for s in samples])
    return batch


def _collate_full(samples: list[dict[str, Any]]) -> AVEBatch:
    return collate_ave(samples, weak=False)


def _collate_weak(samples: list[dict[str, Any]]) -> AVEBatch:
    return collate_ave(samples, weak=True)


class AVEDataModule(VidlitDataModule):
    """AVE event localization on the official pre-extracted features, fully or weakly supervised.

    ``supervision="full"`` trains on per-segment labels (``labels.h5``); ``"weak"`` follows the
    official weakly-supervised setting: the training split gets the extra background-only
    videos (``*_noisy.h5``, when present) and every batch carries only ``video_labels`` for the
    loss (``mil_labels.h5``, else the classes present in a video's segments), never
    ``segment_labels``; val/test ``targets`` keep the segment labels the metric needs.

    Args:
        root: dataset folder (layout in the module docstring), or an fsspec URL of one
            (``s3://bucket/ave``, ``memory://x``).
        synthetic: write the synthetic sample dataset (``vidlit data synth ave``) into ``root``
            when ``root`` has no ``audio_feature.h5``; local folders only (a URL root must hold
            the data already).
        supervision: ``"full"`` or ``"weak"``.
        feature_dim: visual channels (512 for the official VGG-19 maps); checked against the
            file, and the head's ``in_dim``.
        audio_dim: audio channels (128 for VGGish); checked against the file.
        class_names: event categories in label-column order (default: the 28 AVE categories);
            background is appended as the last class.
        noisy_background: under weak supervision, add the ``*_noisy.h5`` background videos to training.
        batch_size: videos per batch.
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        root: str = "data/ave_synth",
        synthetic: bool = True,
        supervision: Literal["full", "weak"] = "full",
        feature_dim: int = 512,
        audio_dim: int = 128,
        class_names: list[str] | None = None,
        noisy_background: bool = True,
        batch_size: int = 16,
        num_workers: int = 0,
    ):
        super().__init__(batch_size, num_workers)
        if supervision not in ("full", "weak"):
            raise ValueError(f"supervision must be 'full' or 'weak', got {supervision!r}")
        self.root: Path | str = as_folder(root)
        self.synthetic = synthetic
        self.supervision = supervision
        self.feature_dim = feature_dim
        self.audio_dim = audio_dim
        self.class_names = [*(class_names or AVE_CATEGORIES), BACKGROUND]
        self.noisy_background = noisy_background
        self._datasets: dict[str, AVEDataset] = {}
        self._loaded = False
        # which of the optional files the root holds: a URL root is listed once (after prepare_data
        # wrote the sample), not asked per file
        self._listed = ListedFiles()

    @property
    def num_classes(self) -> int:
        """Event categories plus background (29 for AVE)."""
        return len(self.class_names)

    def prepare_data(self) -> None:
        if self.synthetic and is_url(self.root):
            from vidlit.data.synth import require_complete

            require_complete(self.root, "audio_feature.h5", "ave")
        elif self.synthetic and not (self.root / "audio_feature.h5").is_file():
            from vidlit.data.synth.ave import write_ave

            write_ave(self.root)

    def _load(self) -> None:
        if self._loaded:
            return
        self.prepare_data()
        root = self.root
        audio_path, visual_path = join_path(root, "audio_feature.h5"), join_path(root, "visual_feature.h5")
        n_audio, n_visual = _h5_shape(audio_path), _h5_shape(visual_path)
        n = n_audio[0]
        if n_audio[1:] != (NUM_SEGMENTS, self.audio_dim):
            raise ValueError(
                f"{audio_path}: expected [N, {NUM_SEGMENTS}, {self.audio_dim}], got {list(n_audio)}"
            )
        if n_visual[0] != n or n_visual[1] != NUM_SEGMENTS or n_visual[-1] != self.feature_dim:
            raise ValueError(
                f"{visual_path}: expected [{n}, {NUM_SEGMENTS}, 7, 7, {self.feature_dim}] (feature_dim), "
                f"got {list(n_visual)}"
            )
        annotations = join_path(root, "Annotations.txt")
        events = read_ave_annotations(annotations) if self._listed.exists(annotations) else None
        video_ids = video_order(events) if events is not None else [f"row{i}" for i in range(n)]
        if len(video_ids) != n:
            raise ValueError(
                f"{annotations}: lists {len(video_ids)} distinct videos but {audio_path} has {n} rows"
            )
        segment = self._segment_labels(root, events, video_ids, n)
        video = self._video_labels(root, segment, n)
        for split in ("train", "val", "test"):
            rows = self._split_rows(root, split, video_ids)
            self._datasets[split] = AVEDataset(audio_path, visual_path, rows, segment, video, video_ids)
        if self.supervision == "weak" and self.noisy_background:
            self._add_noisy_background(root)
        self._loaded = True

    def _segment_labels(
        self, root: Path | str, events: list[AVEEvent] | None, video_ids: list[str], n: int
    ) -> np.ndarray:
        labels_path = join_path(root, "labels.h5")
        k = self.num_classes
        if self._listed.exists(labels_path):
            onehot = _read_h5(labels_path)
            if onehot.shape != (n, NUM_SEGMENTS, k):
                raise ValueError(
                    f"{labels_path}: expected [{n}, {NUM_SEGMENTS}, {k}], got {list(onehot.shape)}"
                )
            empty = np.argwhere(onehot.max(axis=-1) <= 0)
            if len(empty):
                row, seg = empty[0]
                raise ValueError(f"{labels_path}: row {row} ({video_ids[row]}) segment {seg} has no label")
            labels = onehot.argmax(axis=-1).astype(np.int64)
            if events is not None:
                self._check_agreement(
                    join_path(root, "Annotations.txt"), labels_path, events, video_ids, labels
                )
            return labels
        if events is None:
            raise FileNotFoundError(f"{root}: neither labels.h5 nor Annotations.txt to read labels from")
        per_video = segment_labels_from_events(events, self.class_names, join_path(root, "Annotations.txt"))
        return np.stack([per_video[v] for v in video_ids])

    def _check_agreement(
        self,
        text: Path | str,
        labels_path: Path | str,
        events: list[AVEEvent],
        video_ids: list[str],
        labels: np.ndarray,
    ) -> None:
        """The category text of every event must be what ``labels.h5`` says on the event's seconds."""
        index = {name: i for i, name in enumerate(self.class_names)}
        row = {v: i for i, v in enumerate(video_ids)}
        for e in events:
            if e.category not in index or index[e.category] == self.num_classes - 1:
                raise AnnotationError(
                    f"{text}: line {e.line}: key 'category': unknown event category {e.category!r} "
                    f"(not in the {self.num_classes - 1}-category list)"
                )
            span = labels[row[e.video_id], e.start : e.end]
            wrong = np.nonzero(span != index[e.category])[0]
            if len(wrong):
                second = int(wrong[0]) + e.start
                found = self.class_names[int(span[wrong[0]])]
                raise AnnotationError(
                    f"{text}: line {e.line}: key 'category': {e.category!r} but {path_name(labels_path)} row "
                    f"{row[e.video_id]} ({e.video_id}) says {found!r} on second {second}"
                )

    def _video_labels(self, root: Path | str, segment: np.ndarray, n: int) -> np.ndarray:
        mil_path = join_path(root, "mil_labels.h5")
        if self._listed.exists(mil_path):
            mil = _read_h5(mil_path).astype(np.float32)
            if mil.shape != (n, self.num_classes):
                raise ValueError(f"{mil_path}: expected [{n}, {self.num_classes}], got {list(mil.shape)}")
            return mil
        video = np.zeros((n, self.num_classes), dtype=np.float32)
        np.put_along_axis(video, segment, 1.0, axis=1)
        return video

    def _split_rows(self, root: Path | str, split: str, video_ids: list[str]) -> np.ndarray:
        order_path = join_path(root, f"{split}_order.h5")
        if self._listed.exists(order_path):
            rows = _read_h5(order_path, ORDER_KEY).astype(np.int64).reshape(-1)
            bad = rows[(rows < 0) | (rows >= len(video_ids))]
            if len(bad):
                raise ValueError(f"{order_path}: row index {int(bad[0])} outside [0, {len(video_ids)})")
            return rows
        split_path = join_path(root, SPLIT_FILES[split])
        if not self._listed.exists(split_path):
            raise FileNotFoundError(
                f"{root}: neither {path_name(order_path)} nor {path_name(split_path)} for the {split} split"
            )
        index = {v: i for i, v in enumerate(video_ids)}
        rows = []
        for event in read_ave_annotations(split_path):
            if event.video_id not in index:
                raise ValueError(
                    f"{split_path}:{event.line}: video {event.video_id} is not in Annotations.txt"
                )
            rows.append(index[event.video_id])
        return np.asarray(list(dict.fromkeys(rows)), dtype=np.int64)

    def _add_noisy_background(self, root: Path | str) -> None:
        paths = [
            join_path(root, f"{name}_noisy.h5") for name in ("audio_feature", "visual_feature", "labels")
        ]
        if not all(self._listed.exists(p) for p in paths):
            return
        audio_path, visual_path, labels_path = paths
        m = _h5_shape(audio_path)[0]
        labels = _read_h5(labels_path).astype(np.float32)
        if labels.shape != (m, self.num_classes) or _h5_shape(visual_path)[0] != m:
            raise ValueError(
                f"{root}: *_noisy.h5 files disagree: {m} audio rows, labels {list(labels.shape)}, "
                f"expected [{m}, {self.num_classes}]"
            )
        background = np.full((m, NUM_SEGMENTS), self.num_classes - 1, dtype=np.int64)
        noisy = AVEDataset(
            audio_path, visual_path, np.arange(m), background, labels, [f"noisy{i}" for i in range(m)]
        )
        self._datasets["train"] = torch.utils.data.ConcatDataset([self._datasets["train"], noisy])

    def dataset(self, split: str) -> Dataset:
        """The dataset of ``"train"``, ``"val"`` or ``"test"`` (``"predict"`` is the test split)."""
        self._load()
        return self._datasets["test" if split == "predict" else split]

    def _split(self, split: str) -> Dataset:
        # built on first use, so a loader works without setup()
        return self.dataset(split)

    def _collate(self):
        return _collate_weak if self.supervision == "weak" else _collate_full

    def inference_inputs(self, path: Path, video_id: str, audio: Path | None = None) -> InferenceInput:
        """``vidlit infer``: an event label for each second of one video, from its features.

        ``path`` holds the video's visual features (a row of ``visual_feature.h5``: ``[10, 7, 7,
        C]`` or ``[10, C]``), ``audio`` (``--audio``) its VGGish features (``[10, audio_dim]``), as
        ``.npy`` / ``.pt``.
        """
        if audio is None:
            raise ValueError(
                f"{video_id}: an AVE model hears too: pass the video's VGGish features (--audio)"
            )
        v = load_array_file(path, "visual features", f"[{NUM_SEGMENTS}, 7, 7, {self.feature_dim}]").float()
        a = load_array_file(audio, "audio features", f"[{NUM_SEGMENTS}, {self.audio_dim}]").float()
        if v.shape[0] != NUM_SEGMENTS or v.shape[-1] != self.feature_dim or v.ndim not in (2, 4):
            raise ValueError(
                f"{path}: visual features must be [{NUM_SEGMENTS}, 7, 7, {self.feature_dim}] or "
                f"[{NUM_SEGMENTS}, {self.feature_dim}] (feature_dim), got {list(v.shape)}"
            )
        if tuple(a.shape) != (NUM_SEGMENTS, self.audio_dim):
            raise ValueError(
                f"{audio}: audio features must be [{NUM_SEGMENTS}, {self.audio_dim}], got {list(a.shape)}"
            )
        if not (torch.isfinite(a).all() and torch.isfinite(v).all()):
            raise ValueError(f"{path} / {audio}: NaN or Inf features")
        item = {
            "audio": a,
            "visual": v,
            # unlabelled: background everywhere (the head's predict reads no label)
            "segment_labels": torch.full((NUM_SEGMENTS,), self.num_classes - 1, dtype=torch.long),
            "video_labels": torch.zeros(self.num_classes),
            "video_id": path.stem,
        }
        return InferenceInput(self._collate()([item]), path.stem)
