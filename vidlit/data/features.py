"""Pre-extracted feature files and the batching of variable-length feature sequences.

A feature folder is a local path or an fsspec URL (``s3://bucket/features``, ``memory://x``,
``file:///data/features``; other protocols as their fsspec package is installed): local files
are read (and memory-mapped) in place, URLs through :func:`fsspec.open`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vidlit.core.io import (
    ListedFiles,
    as_path,
    file_exists,
    is_url,
    join_path,
    path_suffix,
    read_bytes,
    read_json,
)

log = logging.getLogger(__name__)

FEATURE_SUFFIXES = (".pt", ".npy")
EXTRACTION_RECORD = "extraction.json"  # what ``vidlit extract`` records in its output folder


def find_feature_file(
    feature_dir: str | Path, key: str, exists: Callable[[Path | str], bool] = file_exists
) -> Path | str | None:
    """The ``<key>.pt`` or ``<key>.npy`` file in ``feature_dir`` (a folder or URL), or None without one.

    Args:
        feature_dir: the feature folder.
        key: the file name without suffix.
        exists: asks whether a file exists (:meth:`~vidlit.core.io.ListedFiles.exists` to list
            a URL folder once for many keys).
    """
    if is_url(key):  # an id from a file never names another store (join_path lets a URL stand alone)
        raise ValueError(f"feature id {key!r} points outside {feature_dir}")
    for suffix in FEATURE_SUFFIXES:
        path = join_path(feature_dir, f"{key}{suffix}")
        if exists(path):
            return path
    return None


def find_feature_files(
    feature_dir: str | Path, keys: Sequence[str], listed: ListedFiles | None = None
) -> list[Path | str | None]:
    """:func:`find_feature_file` for each key; a URL folder is listed once, not asked once per key.

    Keys are expected to be confined to the folder already (:func:`~vidlit.core.io.confined_path`).

    Args:
        feature_dir: the feature folder.
        keys: file names without suffix.
        listed: the listings to use and keep (a data module's one, shared by its splits, lists a
            URL folder once for all of them); None lists afresh.
    """
    exists = (listed if listed is not None else ListedFiles()).exists
    return [find_feature_file(feature_dir, key, exists) for key in keys]


def load_array_file(path: str | Path, what: str = "", shape: str = "") -> Tensor:
    """A tensor stored as ``.npy`` or ``.pt`` (read with ``weights_only=True``: no code runs).

    Args:
        path: the file.
        what: what it belongs to, for error messages.
        shape: the expected shape in words (``"[T, C]"``), for error messages.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, or not a tensor; the message names the file and ``what``.
    """
    path = as_path(path)
    where = f"{path}{f' ({what})' if what else ''}"
    try:
        # a URL is read whole into memory (object stores have no seek-cheap file); a local file in place
        source = io.BytesIO(read_bytes(path, "feature file")) if is_url(path) else path
        if path_suffix(path) == ".npy":
            array = torch.from_numpy(np.load(source, allow_pickle=False))
        else:
            array = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: feature file not found") from None
    except Exception as e:  # noqa: BLE001 - any decoder error becomes one readable line
        raise ValueError(f"{where}: cannot read feature file: {e}") from e
    if not isinstance(array, Tensor):
        raise ValueError(f"{where}: expected a tensor{f' of shape {shape}' if shape else ''}, "
                         f"got {type(array).__name__}")  # fmt: skip
    return array


def feature_steps(path: str | Path, what: str = "") -> int:
    """``T`` of a ``[T, C]`` feature file, read from its header (memory-mapped: the data stays on disk).

    Raises:
        ValueError / FileNotFoundError: as :func:`load_feature_file` for a file it cannot read.
    """
    if is_url(path):
        return _url_feature_steps(path, what)
    path = Path(path)
    try:
        if path.suffix == ".npy":
            shape = tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
        else:
            shape = tuple(torch.load(path, map_location="cpu", weights_only=True, mmap=True).shape)
    except Exception:  # noqa: BLE001 - an old-format or bad file: the full read says what is wrong
        shape = ()
    if len(shape) != 2 or shape[0] == 0:
        return load_feature_file(path, what=what).shape[0]
    return int(shape[0])


def _url_feature_steps(url: str, what: str) -> int:
    """``T`` of a ``[T, C]`` feature file at a URL: a ``.npy`` header is read alone, a ``.pt`` file whole."""
    shape: tuple[int, ...] = ()
    if path_suffix(url) == ".npy":
        import fsspec

        try:
            with fsspec.open(url, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version in ((1, 0), (2, 0)):
                    read_header = getattr(np.lib.format, f"read_array_header_{version[0]}_0")
                    shape = tuple(read_header(f)[0])
        except Exception:  # noqa: BLE001 - missing or bad: the full read below says what is wrong
            shape = ()
    if len(shape) != 2 or shape[0] == 0:
        return load_feature_file(url, what=what).shape[0]
    return int(shape[0])


def load_feature_file(path: str | Path, expected_dim: int | None = None, what: str = "") -> Tensor:
    """Load a ``[T, C]`` float feature sequence from ``.pt`` (tensor) or ``.npy``.

    ``.pt`` files are read with ``weights_only=True``: a feature file never needs to run code.

    Args:
        path: the file.
        expected_dim: C the caller configured; a mismatch raises.
        what: what the file belongs to (e.g. ``"clip 1a2b"``), for error messages.

    Raises:
        ValueError: unreadable file, not 2-D, empty, non-finite, or of the wrong dim; the
            message names the file and ``what``.
    """
    path = as_path(path)
    where = f"{path}{f' ({what})' if what else ''}"
    array = load_array_file(path, what, "[T, C]")
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"{where}: expected features of shape [T, C] with T > 0, got {tuple(array.shape)}")
    if expected_dim is not None and array.shape[1] != expected_dim:
        raise ValueError(f"{where}: features have dim {array.shape[1]} but feature_dim is {expected_dim}")
    array = array.float()
    if not torch.isfinite(array).all():
        raise ValueError(f"{where}: features contain NaN or Inf")
    return array


def pad_sequences(sequences: list[Tensor], multiple_of: int = 1) -> tuple[Tensor, Tensor]:
    """Stack ``[T_i, C]`` sequences into ``[B, T, C]`` zero-padded features and a ``[B, T]`` mask.

    Args:
        sequences: per-sample sequences.
        multiple_of: pad T up to a multiple of this (pyramids that halve T need it).
    """
    length = max(s.shape[0] for s in sequences)
    length = -(-length // multiple_of) * multiple_of
    features = sequences[0].new_zeros(len(sequences), length, sequences[0].shape[1])
    mask = torch.zeros(len(sequences), length, dtype=torch.bool)
    for i, seq in enumerate(sequences):
        features[i, : seq.shape[0]] = seq
        mask[i, : seq.shape[0]] = True
    return features, mask


def read_extraction_record(feature_dir: str | Path) -> dict[str, Any] | None:
    """The ``extraction.json`` that ``vidlit extract`` wrote in ``feature_dir``, or None without one.

    Raises:
        ValueError: the file is not a JSON object; the message names it.
    """
    path = join_path(feature_dir, EXTRACTION_RECORD)
    try:  # the read is the existence check: one request at a URL
        record = read_json(path, "extraction record")
    except FileNotFoundError:
        return None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(record).__name__}")
    return record


def feature_timing(
    feature_dir: str | Path,
    fps: float | None = None,
    feature_stride: int | None = None,
    feature_window: int | None = None,
    defaults: tuple[float, int, int] = (30.0, 16, 32),
) -> tuple[float, int, int]:
    """``(fps, feature_stride, feature_window)`` of a feature folder: stated once, where features are made.

    A value left None is read from the folder's ``extraction.json`` (``fps``: the extraction's
    ``fps``, else the source videos' rate when they all had one), else taken from ``defaults``
    (the official Ego4D features: 30 fps, stride 16, window 32). A value given that contradicts
    the record is an error: step times would silently be wrong.

    Raises:
        ValueError: a given value differs from ``extraction.json``'s, naming the file and key.
    """
    record = read_extraction_record(feature_dir) or {}
    rates = record.get("source_fps") or []
    recorded = {
        "fps": record.get("fps") or (rates[0] if len(rates) == 1 else None),
        "feature_stride": record.get("feature_stride"),
        "feature_window": record.get("feature_window"),
    }
    if record and fps is None and recorded["fps"] is None:
        log.warning(
            "%s: extracted at each video's own frame rate (%s); assuming %g fps: set fps if that is wrong",
            join_path(feature_dir, EXTRACTION_RECORD),
            rates or "unknown",
            defaults[0],
        )
    given = {"fps": fps, "feature_stride": feature_stride, "feature_window": feature_window}
    values = []
    for (key, value), default in zip(given.items(), defaults):
        if value is not None and recorded[key] is not None and float(value) != float(recorded[key]):
            raise ValueError(
                f"{join_path(feature_dir, EXTRACTION_RECORD)}: key '{key}': the features were extracted with "
                f"{recorded[key]}, but {key} is {value}; leave {key} unset to use the record"
            )
        values.append(value if value is not None else recorded[key] if recorded[key] is not None else default)
    return float(values[0]), int(values[1]), int(values[2])
