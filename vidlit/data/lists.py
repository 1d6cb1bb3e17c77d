"""Video list files: reading and checking them, without building a data module.

A list names one video per row: vidlit's CSV / JSONL (``path``, optional ``label``, ``start``,
``end``; see :mod:`vidlit.data.video_list`) or a public benchmark's list as published (the
official Kinetics CSV, Something-Something v2's JSON, UCF101's and HMDB51's split files; see
:mod:`vidlit.formats.video_cls`). Every row is checked when read: errors name the file and line.

This module does not import Lightning, so the feature-extraction workers that unpickle
:class:`VideoEntry` rows stay light (about 4 s less per Ray worker);
:mod:`vidlit.data.video_list` re-exports everything here.
"""

from __future__ import annotations

import csv
import difflib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidlit.core.io import confined_path, read_json, read_jsonl, text_decode_error, utf8_lines
from vidlit.formats._schema import validate
from vidlit.formats.video_cls import (
    HMDB_MARKS,
    JSONL_SUFFIXES,
    LIST_FORMATS,
    HMDBSplitLine,
    KineticsRow,
    SSv2Record,
    UCFListLine,
    VideoListRow,
    kinetics_clip_name,
)

__all__ = [
    "VideoEntry",
    "detect_list_format",
    "infer_class_names",
    "read_class_names",
    "read_csv_rows",
    "read_video_list",
]


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
        reader = csv.reader(utf8_lines(f, path, "CSV list"))
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
    try:
        with path.open(encoding="utf-8") as f:
            head = f.read(4096)
    except UnicodeDecodeError as e:  # a binary file (a video passed for the list) or Latin-1 text
        raise text_decode_error(path, e, "CSV or JSONL list") from None
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
        what = "is a folder; expected a video list file" if path.is_dir() else "video list not found"
        raise FileNotFoundError(f"{path}: {what}")
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
