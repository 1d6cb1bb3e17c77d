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

import csv
import difflib
import functools
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from vidlit.core.errors import ConfigurationError
from vidlit.core.io import confined_path, read_json, read_jsonl, write_json_atomic
from vidlit.data.base import EpochSeeded, global_seed

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
from vidlit.formats._schema import validate
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


@dataclass(frozen=True)
class VideoEntry:
    """One row of a video list.

    Attributes:
        path: the video file, resolved against the list file's folder.
        video_id: the path as the list writes it (plus ``@start-end`` for a time window); unique
            within a list. Predictions and metrics are keyed by it.
        label: class index; None for an unlabelled row, or when the list was read without a
            class list.
        label_name: the label as written (a class name or an index), None without one.
        start: window start in seconds; None for the start of the video.
        end: window end in seconds; None for the end of the video.
        line: line number in the list file (1-based).
    """

    path: Path
    video_id: str
    label: int | None
    label_name: str | None
    start: float | None
    end: float | None
    line: int


def read_csv_rows(path: Path, keys: Sequence[str] = ("path",)) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, {column: value})`` for each non-blank row of a UTF-8 CSV file with a header row.

    The one CSV reader of vidlit's data modules: video lists, Kinetics' official CSVs and MSR-VTT's
    test CSV (:func:`vidlit.data.retrieval.read_msrvtt`). Values are as written (the schema
    models validate and strip them); line numbers count physical lines, 1-based.

    Args:
        path: the CSV file.
        keys: the columns the header row must name.

    Raises:
        ValueError: one line ``file:line: problem``: a header row without one of ``keys`` or with a
            column named twice, a row with another number of fields than the header.
    """
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = None
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            if header is None:
                header = [field.strip() for field in row]
                if any(key not in header for key in keys):
                    named = (
                        f"a {keys[0]!r} column" if len(keys) == 1 else "columns " + ", ".join(map(repr, keys))
                    )
                    raise ValueError(f"{path}:{reader.line_num}: the header row must name {named}, got {row}")
                if len(set(header)) != len(header):
                    raise ValueError(f"{path}:{reader.line_num}: duplicate column names in {header}")
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}:{reader.line_num}: expected {len(header)} fields ({','.join(header)}), "
                    f"got {len(row)}"
                )
            yield reader.line_num, dict(zip(header, row))


def _resolve_label(raw: str | int, class_index: dict[str, int], where: str) -> int:
    # a JSON number is an index; a string is a class name first, an index if it is a whole number
    name = str(raw).strip()
    if isinstance(raw, str) and name in class_index:
        return class_index[name]
    num_classes = len(class_index)
    if isinstance(raw, int) or name.lstrip("-").isdigit():
        index = int(name)
        if 0 <= index < num_classes:
            return index
        raise ValueError(f"{where}: label index {index} is out of range for {num_classes} classes")
    close = difflib.get_close_matches(name, class_index, n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"{where}: unknown label {name!r} (not in the {num_classes}-class list){hint}")


_UCF_LIST = re.compile(r"(train|test)list\d+\.txt", re.IGNORECASE)
_HMDB_SPLIT = re.compile(r"(.+)_test_split(\d+)\.txt", re.IGNORECASE)
# the video suffix of the id-based formats when ``video_ext`` is not given
_DEFAULT_EXT = {"kinetics": ".mp4", "ssv2": ".webm"}


def detect_list_format(path: str | Path) -> str:
    """The list format of a file, from its name and, for ``.json`` / ``.csv``, its first bytes.

    ``*_test_split<N>.txt`` (or a glob of them) is HMDB51; ``trainlist0N.txt`` / ``testlist0N.txt``
    UCF101; a ``.json`` holding a JSON array (``something-something-v2-*.json``) SSv2; other
    ``.json`` / ``.jsonl`` / ``.ndjson`` files JSON Lines; a CSV whose header has ``youtube_id`` and
    no ``path`` column the official Kinetics CSV; any other file vidlit's ``path,label`` CSV.

    Raises:
        ValueError: a ``.txt`` list that is neither UCF101 nor HMDB51 (set ``list_format``).
    """
    path = Path(path)
    name = path.name
    if _HMDB_SPLIT.fullmatch(name) or ("*" in name and "_test_split" in name):
        return "hmdb51"
    if _UCF_LIST.fullmatch(name):
        return "ucf101"
    suffix = path.suffix.lower()
    if suffix == ".json" and name.lower().startswith("something-something"):
        return "ssv2"
    if suffix == ".txt":
        raise ValueError(
            f"{path}: cannot tell the list format from the name (UCF101 lists are trainlist0N.txt / "
            "testlist0N.txt, HMDB51 ones <class>_test_split<N>.txt); set list_format"
        )
    if not path.is_file():
        return "jsonl" if suffix in JSONL_SUFFIXES else "csv"
    with path.open(encoding="utf-8") as f:
        head = f.read(4096)
    if suffix == ".json" and head.lstrip().startswith("["):
        return "ssv2"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    header = [field.strip() for field in next(csv.reader(head.splitlines() or [""]), [])]
    return "kinetics" if "youtube_id" in header and "path" not in header else "csv"


def _json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, element)`` of each element of a JSON array file (the line it starts on)."""
    document = read_json(path, "video list")  # invalid JSON: one line naming file, line and column
    if not isinstance(document, list):
        raise ValueError(f"{path}: expected a JSON array of videos, got {type(document).__name__}")
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    at = text.index("[") + 1
    line, counted = 1, 0  # lines counted incrementally: the official train list has ~169k elements
    while True:
        while at < len(text) and text[at] in " \t\r\n,":
            at += 1
        if at >= len(text) or text[at] == "]":
            return
        element, end = decoder.raw_decode(text, at)
        line += text.count("\n", counted, at)
        counted = at
        yield line, element
        at = end


@dataclass(frozen=True)
class _Row:
    """A validated row of any format: the video's name under the video folder and its class."""

    file: Path
    line: int
    folder: Path  # the video folder
    name: str  # relative to ``folder``, confined to it
    label: str | None  # class name (or, for vidlit's CSV / JSONL, the label as written)


def _kinetics_rows(path: Path, video_dir: str, ext: str) -> Iterator[_Row]:
    for line, row in read_csv_rows(path, keys=("youtube_id",)):
        record = validate(KineticsRow, row, path, where=f"line {line}")
        folder = video_dir
        if "{split}" in video_dir:
            if record.split is None:
                raise ValueError(f"{path}: line {line}: key 'split': empty, but video_dir names {{split}}")
            # the row's split names a folder: a plain name, never a way out of the dataset
            if Path(record.split).name != record.split or record.split in (".", ".."):
                raise ValueError(f"{path}: line {line}: key 'split': {record.split!r} is not a folder name")
            folder = video_dir.replace("{split}", record.split)
        clip = kinetics_clip_name(record.youtube_id, record.time_start, record.time_end, ext)
        yield _Row(path, line, Path(folder), clip, record.label)


def _ssv2_rows(path: Path, folder: Path, ext: str) -> Iterator[_Row]:
    for line, element in _json_array(path):
        record = validate(SSv2Record, element, path, where=f"line {line}")
        if record.template is None and record.label is not None:
            raise ValueError(
                f"{path}: line {line}: key 'template': missing (the class is the template, not the label)"
            )
        yield _Row(path, line, folder, f"{record.id}{ext}", record.class_name())


def _ucf_rows(path: Path, folder: Path, class_names: Sequence[str] | None) -> Iterator[_Row]:
    by_folder = None if class_names is None else {name.lower(): name for name in class_names}
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) > 2:
            raise ValueError(f"{path}:{line}: expected 'path [label]', got {len(fields)} fields")
        record = validate(UCFListLine, dict(zip(("path", "label"), fields)), path, where=f"line {line}")
        class_folder = record.class_folder()
        label = class_folder
        if record.label is not None and class_names is not None:
            if record.label > len(class_names):
                raise ValueError(
                    f"{path}: line {line}: key 'label': class {record.label} is out of range for "
                    f"{len(class_names)} classes (classInd.txt counts from 1)"
                )
            label = class_names[record.label - 1]
            # classInd.txt and the folders differ in case for one class (HandstandPushups)
            if class_folder is not None and class_folder.lower() != label.lower():
                raise ValueError(
                    f"{path}: line {line}: key 'label': class {record.label} is {label!r}, "
                    f"but the video is in folder {class_folder!r}"
                )
        elif by_folder is not None and class_folder is not None:
            label = by_folder.get(class_folder.lower(), class_folder)
        yield _Row(path, line, folder, record.path, label)


def _hmdb_rows(pattern: Path, folder: Path, split: str) -> Iterator[_Row]:
    files = sorted(pattern.parent.glob(pattern.name)) if "*" in pattern.name else [pattern]
    if not files:
        raise FileNotFoundError(f"{pattern}: no HMDB51 split files match")
    want = HMDB_MARKS["train" if split == "train" else "test"]
    numbers = {}
    for path in files:
        match = _HMDB_SPLIT.fullmatch(path.name)
        if match is None:
            raise ValueError(f"{path}: not an HMDB51 split file name (<class>_test_split<N>.txt)")
        numbers[path] = match[2]
        if len(set(numbers.values())) > 1:
            raise ValueError(f"{path}: split {match[2]} mixed with split {next(iter(numbers.values()))}")
        label = match[1]
        for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            fields = text.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(f"{path}:{line}: expected 'video mark', got {len(fields)} fields")
            record = validate(HMDBSplitLine, dict(zip(("video", "mark"), fields)), path, where=f"line {line}")
            if record.mark == want:
                yield _Row(path, line, folder, f"{label}/{record.video}", label)


def read_video_list(
    path: str | Path,
    class_names: Sequence[str] | None = None,
    list_format: str = "auto",
    video_dir: str | Path | None = None,
    video_ext: str | None = None,
    split: str = "train",
) -> list[VideoEntry]:
    """Parse and check a video list, in vidlit's format or a public dataset's published one.

    Args:
        path: the list file (an HMDB51 list may be a glob of its per-class split files,
            ``splits/*_test_split1.txt``).
        class_names: the class list labels resolve against; None leaves ``label`` unset (only
            ``label_name`` is filled in).
        list_format: one of :data:`~vidlit.formats.video_cls.LIST_FORMATS`; ``"auto"`` asks
            :func:`detect_list_format`.
        video_dir: the folder the videos of the list live in (vidlit's lists: their paths are
            relative to it); defaults to the list's folder. A Kinetics list may name the row's
            ``split`` column in it: ``videos/{split}``.
        video_ext: the video suffix of the id-based formats (Kinetics ``.mp4``, SSv2 ``.webm``).
        split: ``"train"`` reads an HMDB51 file's train lines (mark 1), any other its test lines (2).

    Returns:
        The rows in file order.

    Raises:
        FileNotFoundError: no such list file.
        ValueError: naming the file and line (and the key, for a malformed field): a malformed row
            (wrong field count, invalid JSON, no path, bad times, ``end <= start``), a video listed
            twice, an unknown label, or an id that points outside the video folder.
    """
    path = Path(path)
    if list_format not in LIST_FORMATS:
        raise ValueError(f"list_format must be one of {LIST_FORMATS}, got {list_format!r}")
    if not path.is_file() and not (list_format in ("auto", "hmdb51") and "*" in path.name):
        raise FileNotFoundError(f"{path}: video list not found")
    fmt = detect_list_format(path) if list_format == "auto" else list_format
    class_index = None if class_names is None else {name: i for i, name in enumerate(class_names)}
    folder = path.parent if video_dir is None else Path(video_dir)
    entries: list[VideoEntry] = []
    first_line: dict[str, int] = {}

    def add(where: str, line: int, video_id: str, file: Path, name, raw_label, start=None, end=None) -> None:
        if video_id in first_line:
            raise ValueError(f"{where}: {video_id} is already listed on line {first_line[video_id]}")
        first_line[video_id] = line
        label = None if name is None or class_index is None else _resolve_label(raw_label, class_index, where)
        entries.append(VideoEntry(file, video_id, label, name, start, end, line))

    if fmt in ("csv", "jsonl"):
        rows = read_jsonl(path, "video list") if fmt == "jsonl" else read_csv_rows(path)
        for line, row in rows:
            where = f"{path}:{line}"
            record = validate(VideoListRow, row, path, where=f"line {line}")
            raw_path, start, end = record.path, record.start, record.end
            video_id = raw_path
            if start is not None or end is not None:
                video_id = f"{raw_path}@{start or 0:g}-{'end' if end is None else format(end, 'g')}"
            add(where, line, video_id, folder / raw_path, record.label, row.get("label"), start, end)
        return entries

    ext = _DEFAULT_EXT.get(fmt, "") if video_ext is None else video_ext
    if fmt == "kinetics":
        rows = _kinetics_rows(path, str(folder), ext)
    elif fmt == "ssv2":
        rows = _ssv2_rows(path, folder, ext)
    elif fmt == "ucf101":
        rows = _ucf_rows(path, folder, class_names)
    else:
        rows = _hmdb_rows(path, folder, split)
    for row in rows:
        where = f"{row.file}:{row.line}"
        # an id from the file becomes a path: it must stay inside the video folder
        file = confined_path(row.folder, row.name, where)
        video_id = file.name if fmt == "kinetics" else row.name
        # the class is a name in these formats: never read a digit name as an index
        add(where, row.line, video_id, file, row.label, row.label)
    return entries


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a class file; the order gives the class index.

    - a text file, one name per line (``classes.txt``; Kinetics' class list);
    - UCF101's ``classInd.txt``: ``<index> <name>`` lines, indices 1, 2, ... in order;
    - a ``.json`` object mapping each name to its index (Something-Something v2's
      ``something-something-v2-labels.json``, ``{"Approaching something with your camera": "0"}``),
      indices ``0 .. n-1`` each once.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no names, a name listed twice (naming both lines), or a malformed index.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: class list not found")
    if path.suffix.lower() == ".json":
        return _class_names_from_mapping(path)
    indexed = path.name.lower().startswith("classind")
    names: list[str] = []
    seen: dict[str, int] = {}
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        name = text.strip()
        if not name:
            continue
        if indexed:
            index, _, name = name.partition(" ")
            name = name.strip()
            if index != str(len(names) + 1) or not name:
                raise ValueError(
                    f"{path}:{number}: expected '{len(names) + 1} <class name>' "
                    f"(classInd.txt counts from 1), got {text.strip()!r}"
                )
        if name in seen:
            raise ValueError(f"{path}:{number}: class {name!r} is already listed on line {seen[name]}")
        seen[name] = number
        names.append(name)
    if not names:
        raise ValueError(f"{path}: no class names")
    return names


def _class_names_from_mapping(path: Path) -> list[str]:
    """``{name: index}`` (index an int or its text) -> names in index order."""
    mapping = read_json(path, "class list")
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"{path}: expected a non-empty JSON object mapping class name to index")
    names: list[str | None] = [None] * len(mapping)
    for name, raw in mapping.items():
        text = str(raw).strip() if isinstance(raw, (str, int)) and not isinstance(raw, bool) else ""
        index = int(text) if text.isdigit() else -1
        if not 0 <= index < len(mapping):
            raise ValueError(f"{path}: key {name!r}: index must be 0 .. {len(mapping) - 1}, got {raw!r}")
        if names[index] is not None:
            raise ValueError(f"{path}: key {name!r}: index {index} is also {names[index]!r}")
        names[index] = name
    return [str(name) for name in names]


def infer_class_names(entries: Sequence[VideoEntry]) -> list[str]:
    """The class list implied by the labels of some lists: sorted names, or ``0..max`` for indices."""
    names = {e.label_name for e in entries if e.label_name is not None}
    if not names:
        raise ValueError("no labels to infer the class list from")
    if all(name.isdigit() for name in names):
        return [str(i) for i in range(max(int(name) for name in names) + 1)]
    return sorted(names)


class VideoListDataset(EpochSeeded, Dataset):
    """Clips decoded from the videos of a list, for classification.

    Each item opens its video (one decode thread: a DataLoader worker runs one reader), samples
    frames and resizes them at decode time so the short side is ``short_side``:

    - ``sampling="dense"``: ``num_frames`` frames ``frame_stride`` apart, from a random start in
      training (I3D / SlowFast / VideoMAE); evaluation takes ``num_clips`` evenly spaced clips
      (:func:`~vidlit.data.sampling.multi_view_clips`, the centre clip when ``num_clips=1``).
    - ``sampling="segments"``: TSN's one frame from each of ``num_frames`` equal segments, random
      in training; evaluation takes ``num_clips`` views at evenly spaced offsets inside the
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
                sampler, kwargs = uniform_segments, {"k": self.num_frames}
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
            ignored) for self-supervised pretraining such as ``recipes/pretrain_mvm.yaml``: batches
            carry label -1 and the module has no classes, so a head that needs them is refused.
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
            sample instead (``"kinetics"``: the official Kinetics CSV layout). Leave False for real data.
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

            if sample == "videos":
                write, marker = write_synthetic_video_list, train_list
            else:
                write, marker = functools.partial(synthesize, sample), test_list or val_list
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
        line, never a new class.
        """
        if not self.labels:
            raise ConfigurationError(
                "data.init_args.labels is false: the lists are read without labels, so there are no "
                "classes (a head that needs num_classes needs labels: true and a class list)"
            )
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
                    raise ValueError(
                        f"{self.files['train']}: no labels to infer the class list from (a list without "
                        "labels is for self-supervised pretraining: data.init_args.labels false)"
                    )
                self._class_names = infer_class_names(train)
            else:
                self._class_names = list(classes)
        return self._class_names

    @property
    def num_classes(self) -> int:
        """Number of classes (linked into the head's ``num_classes``)."""
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
            # the label column, if any, is not read: every entry's label is None (-1 in batches)
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
        """
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
                {"label": self.class_names[int(i)], "score": float(s)}
                for s, i in zip(top.values.tolist(), top.indices.tolist())
            ]
        doc = {"version": "1.0", "results": results, "external_data": {"used": False, "details": ""}}
        return write_json_atomic(doc, path)
