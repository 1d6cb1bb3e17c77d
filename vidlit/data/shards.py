"""Video-text pairs in WebDataset tar shards, streamed from local disk or object storage.

A shard is a plain POSIX tar file in the `WebDataset <https://github.com/webdataset/webdataset>`_
layout: the files of one sample share a key (the member name up to the first ``.`` of its base
name) and sit next to each other, one file per field::

    000000_0003.mp4     the clip, H.264 in MP4
    000000_0003.txt     its caption, UTF-8
    000000_0003.json    metadata (source video, start / end seconds, score, ...)
    000000_0004.mp4
    ...

so ``webdataset.WebDataset(urls)`` reads vidlit's shards and :class:`VideoTextShards` reads shards
written by other tools (``img2dataset`` / ``video2dataset`` style ``.mp4`` + ``.txt`` + ``.json``).

:func:`write_shards` writes them (``maxcount`` samples per shard). :class:`VideoTextShards`
streams them: every URL is opened with :func:`fsspec.open` (local paths, ``file://``, ``s3://``,
``gs://``, ``hf://``, ``memory://``, ... whatever fsspec protocol is installed; no ``pipe:``
subprocess), read sequentially, and each clip is decoded in memory, so a corpus far larger than
the disk of one node trains straight from object storage. Shards are split across distributed
ranks and DataLoader workers; a sample whose video cannot be decoded or that lacks a caption is
logged, counted and skipped (or raises, with ``strict=True``). :class:`EpochStreamLoader` gives
the stream its epoch each time an epoch's iteration starts, so its shuffling follows the
trainer's epoch, with persistent workers and after a resume too, and a training loader resumes
mid-epoch at the first sample not yet trained on (each worker's stream skips the samples it had
given, without decoding them: :class:`~vidlit.data.epochs.LoaderPosition`).
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import posixpath
import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from vidlit.core.storage import OutputFolder
from vidlit.data.epochs import EpochSeeded, EpochStreamLoader, _rank_and_world  # noqa: F401  (EpochStreamLoader lived here)
from vidlit.data.sampling import uniform_segments
from vidlit.data.transforms import bound_aspect
from vidlit.data.video import VideoDecodeError, frame_orientation, upright_rgb

log = logging.getLogger(__name__)

__all__ = ["EpochStreamLoader", "VideoTextShards", "decode_mp4", "encode_mp4", "expand_urls", "write_shards"]

VIDEO_EXTENSIONS = ("mp4", "m4v", "mov", "mkv", "webm", "avi")
_MAX_WORKER_SLOTS = 256  # skip counters, one slot per (rank-local) DataLoader worker
_PATTERN = re.compile(r"%0?\d*d")


# -- clips in memory ------------------------------------------------------------------------------


def encode_mp4(
    frames: np.ndarray | Tensor | Iterable[np.ndarray | Tensor],
    fps: float,
    codec: str | None = None,
    gop_size: int = 12,
) -> bytes:
    """Encode uint8 RGB frames as an H.264 MP4, in memory.

    Args:
        frames: ``[t, h, w, 3]`` frames, or an iterable of such chunks (so a long clip never has
            to be decoded whole); odd heights and widths are cropped by one pixel (``yuv420p``).
        fps: frame rate.
        codec: video encoder; defaults to libx264 where PyAV has it (else MPEG-4 part 2).
        gop_size: frames between keyframes.

    Returns:
        The MP4 file's bytes.

    Raises:
        ValueError: no frames, or frames that are not uint8 ``[t, h, w, 3]`` of one size.
    """
    import av

    from vidlit.data.synth.videos import preferred_video_codec

    chunks = [frames] if isinstance(frames, (np.ndarray, Tensor)) else frames
    codec = codec or preferred_video_codec()
    buffer = io.BytesIO()
    stream, shape = None, None
    with av.open(buffer, mode="w", format="mp4") as container:
        for chunk in chunks:
            chunk = np.asarray(chunk)
            if chunk.ndim != 4 or chunk.shape[-1] != 3 or chunk.dtype != np.uint8:
                raise ValueError(f"frames must be uint8 [t, h, w, 3], got {chunk.dtype} {chunk.shape}")
            if stream is None:
                shape = chunk.shape[1:]
                height, width = shape[0] - shape[0] % 2, shape[1] - shape[1] % 2
                if height < 2 or width < 2:
                    raise ValueError(f"frames of {shape[0]}x{shape[1]} px are too small to encode")
                stream = container.add_stream(codec, rate=_fraction(fps))
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.codec_context.gop_size = gop_size
                stream.codec_context.thread_count = 1
                if codec == "libx264":
                    stream.options = {"crf": "18", "x264-params": "mbtree=0"}
            elif chunk.shape[1:] != shape:
                raise ValueError(f"all frames must have one size: {shape} then {chunk.shape[1:]}")
            for frame in chunk[:, : stream.height, : stream.width]:
                image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                container.mux(stream.encode(image))
        if stream is None:
            raise ValueError("no frames to encode")
        container.mux(stream.encode())
    return buffer.getvalue()


def _fraction(rate: float) -> Any:
    from fractions import Fraction

    return Fraction(rate).limit_denominator(1001)  # 30000/1001 (NTSC) stays exact


def decode_mp4(data: bytes, num_frames: int, short_side: int | None = None) -> Tensor:
    """Decode ``num_frames`` uniformly spaced frames of an in-memory video with PyAV.

    Frames are the centres of ``num_frames`` equal segments of the clip (TSN's test sampling,
    :func:`~vidlit.data.sampling.uniform_segments`); a clip shorter than ``num_frames`` repeats
    frames. Resizing to ``short_side`` happens in FFmpeg's scaler while converting to RGB; frames
    come back as the display matrix shows them (turned and mirrored, the first frame's matrix for
    every frame), as :mod:`vidlit.data.video`'s readers return them.

    Args:
        data: a video file's bytes (any container FFmpeg reads).
        num_frames: frames to return.
        short_side: resize the short side to this (aspect ratio kept); None keeps the size.

    Returns:
        uint8 ``[num_frames, h, w, 3]``.

    Raises:
        ValueError: the bytes are not a decodable video, or fewer frames can be decoded than
            the container declares.
    """
    import av

    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError) as e:
        raise ValueError(f"cannot open the video: {e}") from e
    with container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        try:
            total = stream.frames or sum(1 for p in container.demux(stream) if p.size)
            if not stream.frames:
                container.seek(0)
            if total < 1:
                raise ValueError("the video stream has no frames")
            wanted = uniform_segments(total, num_frames, train=False)
            wanted_set, last = set(wanted.tolist()), int(wanted[-1])
            picked: dict[int, np.ndarray] = {}
            shown = None  # the first frame's display matrix, for every frame, as ffmpeg applies it
            for index, frame in enumerate(container.decode(stream)):
                if shown is None:
                    shown = frame_orientation(frame)
                if index in wanted_set:
                    # the display matrix applied (turns and mirrors), as the file readers return it
                    picked[index] = upright_rgb(frame, short_side or None, shown)
                if index >= last:
                    break
        except av.FFmpegError as e:
            raise ValueError(f"cannot decode the video: {e}") from e
    if last not in picked:
        raise ValueError(f"the container declares {total} frames but only {len(picked)} wanted ones decode")
    # before batching: a clip's size follows ``short_side``, not the file's aspect ratio
    return bound_aspect(torch.from_numpy(np.stack([picked[int(i)] for i in wanted])), short_side)


# -- writing --------------------------------------------------------------------------------------


def _check_key(key: Any, index: int) -> str:
    if not isinstance(key, str) or not key or key.startswith("/"):
        raise ValueError(f"sample {index}: 'key' must be a non-empty relative name, got {key!r}")
    if "." in posixpath.basename(key):
        raise ValueError(
            f"sample {index}: key {key!r} has a '.' in its base name; WebDataset splits the key from "
            "the field extension at the first '.', so replace it (e.g. with '_')"
        )
    return key


def _sample_files(sample: Mapping[str, Any], index: int) -> list[tuple[str, bytes]]:
    key = _check_key(sample.get("key"), index)
    video = sample.get("mp4")
    if isinstance(video, (str, os.PathLike)):
        video = Path(video).read_bytes()
    if not isinstance(video, (bytes, bytearray)) or not video:
        raise ValueError(f"sample {index} ({key}): 'mp4' must be the clip's bytes or a path to it")
    caption = sample.get("caption")
    if not isinstance(caption, str):
        raise ValueError(f"sample {index} ({key}): 'caption' must be a string, got {type(caption).__name__}")
    files = [(f"{key}.mp4", bytes(video)), (f"{key}.txt", caption.encode("utf-8"))]
    if sample.get("json") is not None:
        files.append((f"{key}.json", json.dumps(sample["json"], ensure_ascii=False).encode("utf-8")))
    return files


def _write_tar(files: list[tuple[str, bytes]], folder: OutputFolder, shard: str) -> None:
    """Write one tar as ``shard`` in ``folder`` atomically through
    :meth:`~vidlit.core.storage.OutputFolder.write` (a local temporary file and rename, one
    object-store PUT, or a temporary name and rename elsewhere). The tar is built in memory first,
    so a failure while building it writes nothing (no half shard)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o444, 0  # reproducible bytes
            tar.addfile(info, io.BytesIO(data))
    folder.write(shard, buffer.getvalue())


def write_shards(
    samples: Iterable[Mapping[str, Any]], pattern: str, maxcount: int = 1000, start_index: int = 0
) -> list[str]:
    """Write video-caption samples into WebDataset tar shards of ``maxcount`` samples each.

    Args:
        samples: dicts with ``key`` (unique sample name, no ``.`` in its base name), ``mp4``
            (the clip's bytes, e.g. from :func:`encode_mp4`, or a path to an MP4 file),
            ``caption`` (str) and optionally ``json`` (a JSON-serializable metadata dict).
        pattern: shard URL with one printf-style integer field, as ``webdataset.ShardWriter``
            takes: ``"out/shard-%06d.tar"``, ``"s3://bucket/clips-%05d.tar"``. Each shard is
            built whole, then written atomically (:meth:`vidlit.core.storage.OutputFolder.write`).
        maxcount: samples per shard (the last shard holds the rest).
        start_index: number of the first shard.

    Returns:
        The URLs written, in order.

    Raises:
        ValueError: a bad pattern or ``maxcount``, a malformed sample or a repeated key (naming
            the sample).
    """
    if len(_PATTERN.findall(pattern)) != 1:
        raise ValueError(f"pattern must contain exactly one integer field such as %06d, got {pattern!r}")
    if maxcount < 1:
        raise ValueError(f"maxcount must be positive, got {maxcount}")
    # one folder for all shards: the pattern up to the last "/" before the number (a number in a
    # folder name, ``out/%03d/shard.tar``, writes ``000/shard.tar``, ... inside ``out``)
    root, sep, _ = pattern[: _PATTERN.search(pattern).start()].rpartition("/")
    # the folder part is a plain path: a literal "%" is spelled "%%" in the pattern, as in its names
    folder, names = OutputFolder(root.replace("%%", "%") or sep or "."), pattern[len(root) + len(sep) :]
    written: list[str] = []
    files: list[tuple[str, bytes]] = []
    count, keys = 0, set()

    def flush() -> None:
        nonlocal files, count
        url = pattern % (start_index + len(written))
        _write_tar(files, folder, names % (start_index + len(written)))
        written.append(url)
        files, count = [], 0

    for index, sample in enumerate(samples):
        sample_files = _sample_files(sample, index)
        key = sample["key"]
        if key in keys:
            raise ValueError(f"sample {index}: key {key!r} is used twice")
        keys.add(key)
        files.extend(sample_files)
        count += 1
        if count == maxcount:
            flush()
    if count:
        flush()
    return written


# -- reading --------------------------------------------------------------------------------------


def expand_urls(urls: str | Iterable[str]) -> list[str]:
    """Expand brace patterns (``shards-{000..009}.tar``, ``{a,b}``) of one URL or a list of them.

    Raises:
        ValueError: no URLs.
    """
    from braceexpand import braceexpand

    items = [urls] if isinstance(urls, (str, os.PathLike)) else list(urls)
    expanded = [url for item in items for url in braceexpand(os.fspath(item))]
    if not expanded:
        raise ValueError("no shard URLs given")
    return expanded


def _split_key(name: str) -> tuple[str, str]:
    """WebDataset's rule: the key is the path up to the first ``.`` of the base name."""
    folder, base = posixpath.split(name)
    stem, _, extension = base.partition(".")
    return posixpath.join(folder, stem) if folder else stem, extension.lower()


class VideoTextShards(EpochSeeded, IterableDataset):
    """Stream ``{"video", "caption", "video_id"}`` samples from WebDataset video-text shards.

    Every shard URL (after brace expansion) is opened with :func:`fsspec.open` and read as a tar
    stream; samples are grouped by key, their video (``.mp4``, or ``.mkv`` / ``.webm`` / ``.mov``
    / ``.avi`` / ``.m4v``) decoded in memory (:func:`decode_mp4`: ``num_frames`` uniformly spaced
    frames) and their caption read from ``.txt`` (else the ``caption`` of ``.json``).

    Shards are dealt out to ``world_size x num_workers`` readers (``torch.distributed`` rank,
    then DataLoader worker), as ``webdataset.split_by_node`` / ``split_by_worker`` do, so give at
    least that many shards; under DDP, equal shard sizes keep the ranks in step. With
    ``shuffle > 0`` the shard order is a permutation drawn from ``(seed, epoch)`` (the same on
    every rank) and samples pass through a shuffle buffer of that many clips, seeded by
    ``(seed, epoch, rank, worker)``, so an epoch's order is a pure function of the seed and the
    epoch. The epoch is the one :meth:`set_epoch` last set, read when iteration starts; it lives
    in shared memory, so persistent DataLoader workers see it change. Iterate through an
    :class:`EpochStreamLoader`, which sets it from the trainer as each epoch starts (an
    ``IterableDataset`` has no sampler that Lightning would tell the epoch).

    A sample whose video does not decode, that has no video or no caption, and the rest of a
    truncated or corrupt shard, are logged (warning, naming the shard and key) and skipped;
    :attr:`num_skipped` counts them across workers. With ``strict=True`` the first one raises
    :class:`~vidlit.data.video.VideoDecodeError` naming the shard URL and the sample key (read in
    a DataLoader worker, torch re-raises it in the main process as a ``RuntimeError`` carrying
    that message; :class:`~vidlit.data.InternVidDataModule` uses the failure markers below and
    raises the ``VideoDecodeError`` itself, in the main process). With
    ``failure_markers=True`` a skipped sample is also yielded as ``{"error": url, "reason":
    "sample <key>: ...", "video_id": key}``, the failure marker of the map-style datasets, so
    :func:`~vidlit.data.internvid.collate_video_text` lists it and a data module can count it,
    or raise from the main process. A shard that does not exist raises :class:`FileNotFoundError`.

    Each reader's stream is its shards' samples, still encoded, through the shuffle buffer; clips
    are decoded as they leave it. :meth:`set_start` makes each reader skip the first items of that
    stream (read, never decoded) and :meth:`stream_position` says how many it has taken: what
    :class:`~vidlit.data.epochs.EpochStreamLoader` saves to resume an epoch mid-way.

    Args:
        urls: shard URL(s): local paths, ``file://``, any fsspec protocol (``s3://``, ``gs://``,
            ``memory://``, ...); brace patterns are expanded.
        num_frames: frames sampled per clip.
        short_side: resize the short side to this while decoding; None keeps the stored size.
        shuffle: shuffle buffer size in samples (0: shards and samples in order).
        seed: base seed of the shuffling.
        strict: raise on the first bad sample instead of skipping it.
        failure_markers: yield a failure marker for each skipped sample.

    Items are ``{"video": uint8 [t, h, w, 3], "caption": str, "video_id": str}``; ``video_id``
    is the sample key.
    """

    def __init__(
        self,
        urls: str | list[str],
        num_frames: int,
        short_side: int | None = None,
        shuffle: int = 0,
        seed: int = 0,
        strict: bool = False,
        failure_markers: bool = False,
    ):
        super().__init__(seed)
        if num_frames < 1:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        if shuffle < 0:
            raise ValueError(f"shuffle must be >= 0, got {shuffle}")
        if short_side is not None and short_side < 1:
            raise ValueError(f"short_side must be positive or None, got {short_side}")
        self.urls = expand_urls(urls)
        self.num_frames = num_frames
        self.short_side = short_side
        self.shuffle = shuffle
        self.strict = strict
        self.failure_markers = failure_markers
        self._skipped = torch.zeros(_MAX_WORKER_SLOTS, dtype=torch.long).share_memory_()
        # where each (rank-local) worker's stream starts this epoch, set in the main process
        self._start = torch.zeros(_MAX_WORKER_SLOTS, dtype=torch.long).share_memory_()
        self._first_reader = torch.zeros((), dtype=torch.long).share_memory_()
        self._reader, self._position = 0, 0  # this process's stream, and the items it has taken

    @property
    def num_skipped(self) -> int:
        """Samples skipped so far in this process and its DataLoader workers."""
        return int(self._skipped.sum())

    def shards_for(self, rank: int, world_size: int, worker: int, num_workers: int) -> list[str]:
        """The shard URLs that reader ``(rank, worker)`` streams this epoch."""
        urls = list(self.urls)
        if self.shuffle:
            order = self.rng().permutation(len(urls))
            urls = [urls[i] for i in order]
        return urls[rank::world_size][worker::num_workers]

    def set_start(self, offsets: Mapping[int, int], first_reader: int = 0) -> None:
        """Start reader ``r``'s stream at item ``offsets[r]`` in the next iteration (others at 0).

        A reader is one of this rank's ``num_workers`` streams; DataLoader worker ``w`` reads
        stream ``(w + first_reader) % num_workers``, so the loader, which takes a batch from each
        worker in turn from worker 0 on, continues a stream order that had reached
        ``first_reader``'s turn. Call it in the main process before the iteration starts; the
        values live in shared memory, so persistent DataLoader workers read them when they begin
        the next epoch.
        """
        self._start.zero_()
        for reader, offset in offsets.items():
            if not 0 <= reader < _MAX_WORKER_SLOTS:
                raise ValueError(f"reader {reader} is out of range (at most {_MAX_WORKER_SLOTS} workers)")
            self._start[reader] = int(offset)
        self._first_reader.fill_(first_reader)

    def stream_position(self) -> tuple[int, int]:
        """``(reader, items of its stream taken so far this epoch)``, the skipped start included."""
        return self._reader, self._position

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, world_size = _rank_and_world()
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # the reader decides the shards, the shuffling and the start; the worker only counts skips
        reader = (worker + int(self._first_reader)) % num_workers
        urls = self.shards_for(rank, world_size, reader, num_workers)
        self._reader = reader
        self._position = start = int(self._start[reader % _MAX_WORKER_SLOTS])
        if not urls:
            log.warning(
                "rank %d worker %d has no shard to read: %d shards for %d ranks x %d workers",
                rank,
                worker,
                len(self.urls),
                world_size,
                num_workers,
            )
            return
        # still encoded: a resumed stream skips its start without decoding it
        encoded = ((url, *item) for url in urls for item in self._grouped(url))
        if self.shuffle:
            encoded = _shuffled(encoded, self.shuffle, self.rng(rank, reader))
        for url, key, fields, broken in itertools.islice(encoded, start, None):
            self._position += 1
            yield from self._decoded(url, key, fields, broken, worker)

    def _skip(self, worker: int, url: str, key: str, reason: str) -> Iterator[dict[str, Any]]:
        """Raise (strict) or count and log a bad sample; yields its failure marker if asked to."""
        if self.strict:
            raise VideoDecodeError(url, f"sample {key}: {reason} (strict=True)")
        self._skipped[worker % _MAX_WORKER_SLOTS] += 1
        log.warning("%s: skipping sample %s: %s", url, key, reason)
        if self.failure_markers:
            yield {"error": url, "reason": f"sample {key}: {reason}", "video_id": key}

    def _decoded(
        self, url: str, key: str, fields: dict[str, bytes], broken: str | None, worker: int
    ) -> Iterator[dict[str, Any]]:
        """The sample of one group of tar members, or its failure marker (or nothing) when bad."""
        if broken is not None:  # the shard broke off while this sample was read
            yield from self._skip(worker, url, key, broken)
            return
        video = next((fields[e] for e in VIDEO_EXTENSIONS if e in fields), None)
        if video is None:
            yield from self._skip(worker, url, key, f"no video file (fields: {sorted(fields)})")
            return
        caption = self._caption(fields)
        if caption is None:
            yield from self._skip(worker, url, key, "no caption (.txt, or 'caption' in .json)")
            return
        try:
            frames = decode_mp4(video, self.num_frames, self.short_side)
        except ValueError as e:
            yield from self._skip(worker, url, key, str(e))
            return
        yield {"video": frames, "caption": caption, "video_id": key}

    @staticmethod
    def _caption(fields: dict[str, bytes]) -> str | None:
        try:
            if "txt" in fields:
                return fields["txt"].decode("utf-8").strip()
            if "json" in fields:
                caption = json.loads(fields["json"]).get("caption")
                return caption if isinstance(caption, str) else None
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            return None
        return None

    def _grouped(self, url: str) -> Iterator[tuple[str, dict[str, Any], str | None]]:
        """``(key, {extension: bytes}, None)`` for consecutive tar members sharing a key.

        A corrupt or truncated shard ends with ``(key, {}, reason)`` for the sample that was
        being read when the stream broke (it and the rest of the shard are lost). The reason
        travels apart from the fields: a sample may well have a member named ``key.error``.
        """
        import fsspec

        key, fields = None, {}
        try:
            with fsspec.open(url, "rb") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    member_key, extension = _split_key(member.name)
                    if posixpath.basename(member.name).startswith("__") or not extension:
                        continue  # WebDataset's own metadata members, or files without a field
                    if member_key != key:
                        if key is not None:
                            yield key, fields, None  # complete: the next key has started
                        key, fields = member_key, {}
                    fields[extension] = tar.extractfile(member).read()
        except FileNotFoundError:
            raise FileNotFoundError(f"{url}: shard not found") from None
        except (tarfile.TarError, OSError, EOFError) as e:
            # the sample being read when the stream broke is incomplete: drop it with the rest
            yield key or "(first sample)", {}, f"corrupt or truncated shard: {e}"
            return
        if key is not None:
            yield key, fields, None


def _shuffled(samples: Iterator[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """A reservoir-style shuffle buffer (as ``webdataset.shuffle``): fill, then swap out at random."""
    buffer: list[Any] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        i = int(rng.integers(len(buffer)))
        buffer[i], sample = sample, buffer[i]
        yield sample
    rng.shuffle(buffer)
    yield from buffer
