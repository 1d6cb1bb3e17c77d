"""One small interface over a video file, with decord, PyAV and torchcodec backends.

``open_video(path)`` returns a :class:`VideoReader`: ``len(reader)`` frames, ``reader.fps``,
``reader.duration`` and ``reader.get_frames(indices) -> uint8 [t, h, w, 3]`` (RGB, frames in the
requested order, duplicates allowed). Backends:

- ``decord`` (default): ``decord.VideoReader(path, ctx=cpu(0), num_threads=1)``; one decode
  thread per reader, because a DataLoader already runs one reader per worker process.
- ``pyav``: the fallback. It demuxes (without decoding) every packet once at open to learn each
  frame's timestamp and the keyframes, as decord and torchcodec's exact mode do; a request then
  seeks to the keyframe at or before each needed frame and decodes forward, so any set of indices,
  sorted or not, comes back exact.
- ``torchcodec``: when the package is installed (``seek_mode="exact"``).

Frames come back upright from every backend, shown as the container's display matrix says and as
the ``ffmpeg`` command line (6.1 and later) shows them: turned (a phone's portrait video, stored
landscape), mirrored (a front camera, ``ffmpeg -display_hflip``), or both; a resize applies to the
frame as shown. The matrix may come from the container or from the video stream itself (an H.264 /
HEVC display orientation SEI); the first frame's applies to every frame (vidlit's rule: an SEI may
come with the keyframes only; ``ffmpeg`` 7 and later rebuild their filters when a frame's matrix
changes, so they may show the frames without one unturned). torchcodec applies only the angle of a
container's matrix (its metadata's ``rotation``): its reader adds the rest. decord applies only the
angle of an MP4 / MOV container's matrix: its reader adds the mirror, and refuses (so that ``auto``
reads the file with PyAV) a matrix in any other container, one in the video stream, and one that
turns by an angle other than a multiple of 90 degrees (it applies some and not others); vidlit
shows such a frame turned by the nearest quarter turn.

Errors, the same for every backend:

- a missing file raises :class:`VideoNotFoundError`, which is both a :class:`VideoDecodeError`
  and a :class:`FileNotFoundError`, so a dataset that skips bad videos catches
  :class:`VideoDecodeError` alone;
- a zero-byte, random, truncated or otherwise unreadable file raises :class:`VideoDecodeError` at
  open. A truncated MP4 whose index survived (``+faststart``) still fails at open: its packets
  cannot all be read, and decord refuses it there, so PyAV is made to refuse it too rather than
  hand out a video shorter than its header says (torchcodec opens it and raises when a missing
  frame is requested);
- a frame that cannot be decoded later raises :class:`VideoDecodeError` naming the frame;
- an index outside ``[0, len(reader))`` raises :class:`IndexError` naming the file.

Every message starts with the file's path.

FFmpeg's own log lines (``[h264 @ 0x...] Invalid NAL unit size``), which decord prints to stderr
for every damaged packet, are silenced: the error that matters is raised with the file's path.
Set ``VIDLIT_DECODER_LOGS=1`` (or call :func:`set_decoder_logs` with ``True``) to see them again,
through decord's stderr and PyAV's ``libav`` Python loggers.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import os
import re
import stat as stat_mode
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from vidlit.core.imports import importable

log = logging.getLogger(__name__)

BACKENDS = ("decord", "pyav", "torchcodec")
_BACKEND_PACKAGES = {"decord": "decord", "pyav": "av", "torchcodec": "torchcodec"}

Resize = int | tuple[int, int] | None

# None until the first reader applies the setting of VIDLIT_DECODER_LOGS (or set_decoder_logs)
_decoder_logs: bool | None = None


def set_decoder_logs(verbose: bool) -> None:
    """Show (``True``) or silence (``False``, the default) FFmpeg's log lines from decord and PyAV.

    Silenced, decord's FFmpeg prints nothing (errors still raise :class:`VideoDecodeError`); shown,
    decord prints FFmpeg warnings to stderr and PyAV routes them to the ``libav`` Python loggers.
    torchcodec has no public switch and keeps FFmpeg's default.
    """
    global _decoder_logs
    _decoder_logs = bool(verbose)
    if backend_available("decord"):
        import decord

        decord.logging.set_level(decord.logging.WARNING if verbose else decord.logging.QUIET)
    if backend_available("pyav"):
        import av

        av.logging.set_level(av.logging.WARNING if verbose else None)


def _apply_decoder_logs() -> None:
    if _decoder_logs is None:
        set_decoder_logs(os.environ.get("VIDLIT_DECODER_LOGS", "") not in ("", "0"))


class VideoDecodeError(RuntimeError):
    """A video file that cannot be opened or decoded.

    Args:
        path: the file.
        reason: what went wrong.
    """

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        # DataLoader workers pickle exceptions to the main process; keep (path, reason) intact
        return type(self), (self.path, self.reason)


class VideoNotFoundError(VideoDecodeError, FileNotFoundError):
    """A video file that does not exist (also a :class:`FileNotFoundError`)."""


class VideoBackendUnavailable(ImportError):
    """The package behind a requested backend is not installed.

    Args:
        backend: the backend asked for.
    """

    def __init__(self, backend: str):
        package = _BACKEND_PACKAGES[backend]
        super().__init__(
            f"video backend {backend!r} needs the {package!r} package, which is not installed "
            f"(pip install {package})",
            name=package,
        )
        self.backend = backend


def backend_available(backend: str) -> bool:
    """Whether ``backend``'s package can be imported (:func:`vidlit.core.imports.importable`:
    tried once per process; a torchcodec without FFmpeg's shared libraries cannot, and its reader
    would raise :class:`VideoBackendUnavailable`)."""
    if backend not in _BACKEND_PACKAGES:
        raise ValueError(f"unknown video backend {backend!r}; expected one of {BACKENDS}")
    return importable(_BACKEND_PACKAGES[backend])


# what ``Path.exists()`` reads as "not there" rather than raising
_NOT_THERE = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)


def stat_video_file(path: str | Path) -> os.stat_result:
    """Reject what no backend can read before a decoder sees it, with one ``stat`` call.

    Returns:
        The file's ``os.stat_result``, for callers that need its size or modification time
        (:func:`stored_size`'s cache key) without asking the file system again.

    Raises:
        VideoNotFoundError: no such file.
        VideoDecodeError: a directory or an empty file.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as e:
        if e.errno in _NOT_THERE:
            raise VideoNotFoundError(path, "no such video file") from None
        raise
    if not stat_mode.S_ISREG(stat.st_mode):
        raise VideoDecodeError(path, "not a regular file")
    if stat.st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    return stat


def check_video_file(path: str | Path) -> Path:
    """:func:`stat_video_file`, returning the path as a ``Path``.

    Raises:
        VideoNotFoundError: no such file.
        VideoDecodeError: a directory or an empty file.
    """
    stat_video_file(path)
    return Path(path)


def output_size(height: int, width: int, resize: Resize) -> tuple[int, int]:
    """``(h, w)`` of decoded frames: unchanged, the short side set to ``resize``, or ``resize``."""
    if resize is None:
        return height, width
    if isinstance(resize, int):
        if resize < 1:
            raise ValueError(f"resize must be positive, got {resize}")
        scale = resize / min(height, width)
        return (
            (resize, max(1, round(width * scale)))
            if height <= width
            else (max(1, round(height * scale)), resize)
        )
    h, w = resize
    if h < 1 or w < 1:
        raise ValueError(f"resize must be positive, got {resize}")
    return int(h), int(w)


def _resize_frames(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """Antialiased bilinear resize of uint8 ``[t, h, w, 3]`` frames, for backends without one."""
    if tuple(frames.shape[1:3]) == size:
        return frames
    x = rearrange(frames, "t h w c -> t c h w").float()
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return rearrange(x.round().clamp(0, 255).to(torch.uint8), "t c h w -> t h w c").contiguous()


class VideoReader(ABC):
    """Random access to the frames of one video file.

    Use as a context manager, or call :meth:`close`. Subclasses implement :meth:`__len__`,
    :attr:`fps` and :meth:`_decode_sorted`; index checking, de-duplication and ordering live here.

    Args:
        path: the video file.
        resize: output frame size, applied while decoding where the backend can: an int sets the
            short side (aspect ratio kept), a pair is ``(h, w)``; None keeps the stored size.
        num_threads: decoder threads (1 suits DataLoader workers).
    """

    backend: ClassVar[str]

    def __init__(self, path: str | Path, resize: Resize = None, num_threads: int = 1):
        _apply_decoder_logs()
        self._stat = stat_video_file(path)  # kept: a short-side resize needs it (stored_size)
        self.path = Path(path)
        self.resize = resize
        self.num_threads = num_threads
        self._closed = False

    @abstractmethod
    def __len__(self) -> int:
        """Number of frames."""

    @property
    @abstractmethod
    def fps(self) -> float:
        """Average frame rate."""

    @property
    def duration(self) -> float:
        """Seconds covered by the frames: ``len(self) / fps`` (each frame lasts ``1 / fps``)."""
        return len(self) / self.fps

    @abstractmethod
    def _decode_sorted(self, indices: list[int]) -> np.ndarray | Tensor:
        """uint8 ``[len(indices), h, w, 3]`` frames for distinct, ascending, in-range indices."""

    def get_frames(self, indices: Sequence[int] | np.ndarray | Tensor) -> Tensor:
        """Decode frames by index.

        Args:
            indices: frame indices in ``[0, len(self))``, in any order, repeats allowed.

        Returns:
            uint8 ``[t, h, w, 3]`` RGB frames, ``t = len(indices)``, in the order asked for.

        Raises:
            IndexError: an index out of range (the message names the file).
            ValueError: no indices, indices that are not integers, or a closed reader.
            VideoDecodeError: a frame that cannot be decoded.
        """
        if self._closed:
            raise ValueError(f"{self.path}: reader is closed")
        if isinstance(indices, Tensor):
            indices = indices.detach().cpu().numpy()
        order = np.asarray(indices)
        if order.ndim != 1 or order.size == 0:
            raise ValueError(
                f"{self.path}: expected a non-empty 1-D sequence of frame indices, got shape {order.shape}"
            )
        if not np.issubdtype(order.dtype, np.integer):
            raise ValueError(f"{self.path}: frame indices must be integers, got dtype {order.dtype}")
        bad = order[(order < 0) | (order >= len(self))]
        if bad.size:
            raise IndexError(
                f"{self.path}: frame index {int(bad[0])} out of range for a video of {len(self)} frames"
            )
        unique, inverse = np.unique(order, return_inverse=True)
        frames = self._decode_sorted(unique.tolist())
        frames = torch.as_tensor(frames)
        if len(unique) == len(order) and (unique == order).all():
            return frames
        # index_select copies whole frames; fancy indexing is ~10x slower on [t, h, w, 3] uint8
        return frames.index_select(0, torch.from_numpy(inverse.astype(np.int64)))

    def close(self) -> None:
        """Release the decoder; further :meth:`get_frames` calls raise."""
        self._closed = True

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} frames at {self.fps:.3g} fps"
        return f"{type(self).__name__}({str(self.path)!r}, {state})"


def stored_size(path: str | Path, stat: os.stat_result | None = None) -> tuple[int, int]:
    """``(h, w)`` of a video file's first video stream as decoded, from its header, cached per file.

    The size is that of the frames every backend returns, shown as the display matrix says: a
    matrix that turns the picture by 90 or 270 degrees (a phone's portrait video, stored
    landscape), mirrored or not, swaps the two; a mirror alone does not (see :func:`_orientation`).

    decord can only resize to an explicit ``(h, w)`` and has no call that reports the stored
    size, so a short-side resize needs it from elsewhere: PyAV reads it from the container
    header. The answer is cached per process under ``(path, device, inode, mtime, size)``, so a
    video that a DataLoader worker reads again (another clip, another epoch) opens one
    container, not two; a file rewritten in place is probed anew.

    Args:
        path: the video file; errors name it as given.
        stat: its :func:`stat_video_file` result, when the caller has just checked it (one
            ``stat`` call per open, not two); None checks the file here.

    Raises:
        VideoNotFoundError: no such file.
        VideoDecodeError: no video stream, or a file PyAV cannot open.
    """
    return _display(path, stat).size


def _header_fact(path: str, stat: os.stat_result, name: str, read: Callable[[str], Any]) -> Any:
    """``read(path)``, once per version of the file and process: :func:`_display` and
    :func:`_is_mpeg_ts` keep their answers in one cache entry per file (:func:`_header_facts`).
    A read that raises is not kept: the next open tries again."""
    # device and inode tell two files apart where a relative path alone would not (another cwd)
    facts = _header_facts(path, stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
    if name not in facts:
        facts[name] = read(path)
    return facts[name]


@functools.lru_cache(maxsize=1 << 16)
def _header_facts(path: str, device: int, inode: int, mtime_ns: int, size: int) -> dict[str, Any]:
    """What the readers learned from one version of a file's start, by name (:func:`_header_fact`)."""
    return {}


# --- display matrix ------------------------------------------------------------------------------
# A container's display matrix (FFmpeg's libavutil/display.h: 9 int32, row-major [a b u; c d v;
# x y w], a b c d in 16.16 fixed point; a stored point (p, q) is shown at (a p + c q, b p + d q))
# says how the stored picture is shown: turned, mirrored, or both. vidlit shows it as the ffmpeg
# command line's autorotation does (fftools/ffmpeg_filter.c of FFmpeg 6.1 and 7.x; the ffmpeg 5.1
# and 7.0 command lines show the 16 matrices of the rotations and flips that PyAV's
# set_display_rotation writes bit for bit as vidlit's PyAV reader does): from the angle
# av_display_rotation_get reports and the signs of the matrix entries, one of the 8 orientations
# below (4 quarter turns, each mirrored or not). decord and torchcodec apply only the angle, as a
# quarter turn: the readers finish the job after them (:meth:`_Orientation.after`).


class _Orientation(NamedTuple):
    """How to show a stored frame: mirror it left-right (``mirror``), then turn it ``turns``
    quarter turns counter-clockwise (``np.rot90``'s ``k``). The 8 values are the 8 orientations
    of a display matrix (and of EXIF)."""

    turns: int = 0
    mirror: bool = False

    @property
    def swaps(self) -> bool:
        """Whether height and width trade places."""
        return self.turns % 2 == 1

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """``[..., h, w, c]`` frames shown this way (C-contiguous)."""
        if self.mirror:
            frames = frames[..., ::-1, :]
        if self.turns:
            frames = np.rot90(frames, self.turns, axes=(-3, -2))
        return np.ascontiguousarray(frames)

    def after(self, turns: int) -> _Orientation:
        """What is left to do to frames that a decoder has already turned by ``turns`` quarter
        turns (decord, torchcodec) to show them this way."""
        # undo the decoder's turn, then apply self: a mirror reverses the sense of the turn undone
        # (mirror(rot90(x, -r)) == rot90(mirror(x), r))
        return _Orientation((self.turns + (turns if self.mirror else -turns)) % 4, self.mirror)


# what FFmpeg's autorotation inserts, as an _Orientation (the filters' own diagrams, vf_transpose.c)
_FLIPS = {  # (hflip, vflip)
    (False, False): _Orientation(),
    (True, False): _Orientation(0, True),
    (False, True): _Orientation(2, True),  # a vertical mirror is a horizontal one turned half way
    (True, True): _Orientation(2, False),
}
_TRANSPOSE = {  # transpose=...
    "clock": _Orientation(3, False),
    "cclock": _Orientation(1, False),
    "cclock_flip": _Orientation(1, True),  # rows become columns: out[i, j] = in[j, i]
    "clock_flip": _Orientation(3, True),  # the other diagonal: out[i, j] = in[h-1-j, w-1-i]
}


def _round_half_away(x: float) -> int:
    """C's ``round``: halves away from zero (Python's ``round`` goes to the even integer)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _display_angle(matrix: Sequence[int]) -> float:
    """libavutil's ``av_display_rotation_get``: the counter-clockwise angle in degrees (PyAV's
    ``VideoFrame.rotation`` is it truncated to an int); NaN for a degenerate matrix."""
    a, b, c, d = (v / 65536 for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    scale_x, scale_y = math.hypot(a, c), math.hypot(b, d)
    if scale_x == 0 or scale_y == 0:
        return math.nan
    return -math.degrees(math.atan2(b / scale_y, a / scale_x))


def _quarter_turns(angle: float) -> int:
    """The nearest counter-clockwise quarter turn of an angle (``np.rot90``'s ``k``): what decord
    and torchcodec apply (0 for NaN)."""
    return 0 if math.isnan(angle) else _round_half_away(angle / 90) % 4


def _orientation(matrix: Sequence[int] | None) -> _Orientation:
    """The way FFmpeg's command line (6.1 and later) shows frames stored under a display matrix.

    Its autorotation rounds the clockwise angle ``theta = -av_display_rotation_get(matrix)`` to
    whole degrees in ``[0, 360)`` and inserts ``transpose=cclock_flip`` (entry ``c > 0``) or
    ``transpose=clock`` at 90 degrees; ``hflip`` (``a < 0``) and ``vflip`` (``d < 0``) at 180;
    ``transpose=clock_flip`` (``c < 0``) or ``transpose=cclock`` at 270; ``vflip`` (``d < 0``) at 0.
    Any other angle FFmpeg turns exactly (``rotate``, black corners, a mirror ignored); vidlit turns
    such frames by the nearest quarter turn, as torchcodec does. A degenerate matrix shows the
    frame as stored, as FFmpeg does.

    Args:
        matrix: the 9 int32 entries, or None (no display matrix).

    Returns:
        An ``_Orientation``: ``apply`` shows ``[..., h, w, c]`` frames that way.
    """
    if matrix is None:
        return _Orientation()
    angle = _display_angle(matrix)
    if math.isnan(angle):
        return _Orientation()
    theta = -_round_half_away(angle)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    a, c, d = matrix[0], matrix[3], matrix[4]
    if theta == 90:
        return _TRANSPOSE["cclock_flip" if c > 0 else "clock"]
    if theta == 270:
        return _TRANSPOSE["clock_flip" if c < 0 else "cclock"]
    if theta == 180:
        return _FLIPS[a < 0, d < 0]
    if theta == 0:
        return _FLIPS[False, d < 0]
    return _Orientation(_quarter_turns(angle))


def _display_matrix(frame: Any) -> tuple[int, ...] | None:
    """A decoded PyAV frame's display matrix (9 int32, FFmpeg's layout), or None without one.

    FFmpeg (6.1 and later, as PyAV bundles it) hands the stream's matrix to every decoded frame
    as side data; an identity matrix is not written at all.
    """
    from av.sidedata.sidedata import SideDataContainer

    # not `frame.side_data`: the frame caches that container, which refers back to the frame, so
    # every frame read would live on as cyclic garbage with its swscale context. The cyclic GC then
    # frees it at any time, also in a DataLoader worker forked meanwhile, where freeing the
    # context's slice threads (which were not forked) blocks forever (seen: a hung test run).
    for data in SideDataContainer(frame):
        if data.type.name == "DISPLAYMATRIX":
            return tuple(np.frombuffer(data, dtype=np.int32, count=9).tolist())
    return None


class _Display(NamedTuple):
    """A file's first video stream as the readers need it: the stored ``height`` and ``width``, the
    display ``matrix`` (None: none), the demuxer's ``container`` format name (PyAV's
    ``container.format.name``) and whether the matrix came from the video stream itself
    (``in_stream``: an H.264 / HEVC display orientation SEI) rather than from the container."""

    height: int
    width: int
    matrix: tuple[int, ...] | None
    container: str = ""
    in_stream: bool = False

    @property
    def orientation(self) -> _Orientation:
        return _orientation(self.matrix)

    @property
    def size(self) -> tuple[int, int]:
        """``(h, w)`` as shown."""
        return (self.width, self.height) if self.orientation.swaps else (self.height, self.width)

    @property
    def decord_turns(self) -> int:
        """The quarter turns decord applies by itself: the matrix's angle, from an MP4 / MOV
        container's matrix only (its FFmpeg reads the angle from the mov demuxer's metadata)."""
        if self.matrix is None or self.container != _MOV_DEMUXER or self.in_stream:
            return 0
        return _quarter_turns(_display_angle(self.matrix))

    @property
    def turns_by_quarters(self) -> bool:
        """Whether the matrix turns by whole quarter turns, the only turns decord applies as
        players do (it leaves other angles alone, or not, depending on how its FFmpeg formats them)."""
        m = self.matrix
        return m is None or (m[1] == 0 and m[3] == 0) or (m[0] == 0 and m[4] == 0)


# the demuxer of .mp4 / .mov files: the only one whose display matrix decord applies
_MOV_DEMUXER = "mov,mp4,m4a,3gp,3g2,mj2"


def _display(path: str | Path, stat: os.stat_result | None = None) -> _Display:
    """:class:`_Display` of a file, read once per version of the file and process."""
    if stat is None:
        stat = stat_video_file(path)
    return _header_fact(str(Path(path)), stat, "display", _read_display)


def _read_display(path: str) -> _Display:
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError(path, "no video stream")
            stream = container.streams.video[0]
            context = stream.codec_context
            context.thread_count = 1  # FFmpeg's default: a slice thread per core, for one frame
            # PyAV exposes the display matrix on frames only: read it from the first one
            try:
                first = next(container.decode(stream), None)
            except av.FFmpegError:
                first = None  # a damaged start: the readers report that, not the size probe
            matrix = None if first is None else _display_matrix(first)
            in_stream = matrix is not None and _stream_matrix(container, stream) is not None
            return _Display(context.height, context.width, matrix, container.format.name, in_stream)
    except av.FFmpegError as e:
        raise VideoDecodeError(path, f"cannot open: {e}") from e


def _stream_matrix(container: Any, stream: Any) -> tuple[int, ...] | None:
    """The display matrix that the video stream's own bitstream carries (an H.264 / HEVC display
    orientation SEI), or None: the first frame decoded by a bare decoder, which gets the packets
    but not the container's side data (its matrix), so any matrix on it is the bitstream's.
    Called only for a file with a matrix (rare), so the second decode of one frame is cheap."""
    import av

    try:
        bare = av.CodecContext.create(stream.codec_context.name, "r")
        if stream.codec_context.extradata:
            bare.extradata = stream.codec_context.extradata
        bare.thread_count = 1
        container.seek(0, stream=stream, backward=True, any_frame=False)
        for number, packet in enumerate(container.demux(stream)):
            for frame in bare.decode(packet if packet.size else None):
                return _display_matrix(frame)
            if number == 64:  # a decoder that gives no frame by now gives none: do not read the file
                break
    except av.FFmpegError:
        pass  # not known: taken as the container's (what decord and torchcodec read)
    return None


def frame_orientation(frame: Any) -> _Orientation:
    """How a decoded PyAV frame is shown under its display matrix (pass a file's first frame's
    to :func:`upright_rgb` for every frame: vidlit's rule, see the module docstring)."""
    return _orientation(_display_matrix(frame))


def upright_rgb(
    frame: Any, resize: int | tuple[int, int] | None = None, orientation: _Orientation | None = None
) -> np.ndarray:
    """A decoded PyAV frame as uint8 ``[h, w, 3]`` RGB, shown as its display matrix says.

    decord and torchcodec return frames the same way (their readers mirror what those decoders
    leave unmirrored); so does every PyAV path of vidlit through this (see :func:`_orientation`).
    ``resize`` (:func:`output_size`'s) applies to the frame as shown: the stored frame is scaled
    by FFmpeg (bilinear) to the transposed size when the matrix transposes it, then turned.
    ``orientation``: the file's (:func:`frame_orientation` of its first frame), as the
    ``ffmpeg`` command line applies it to every frame; None takes this frame's own matrix (a
    matrix from an orientation SEI may be on the frames that follow the SEI only).
    """
    shown = _orientation(_display_matrix(frame)) if orientation is None else orientation
    if resize is None:
        array = frame.to_ndarray(format="rgb24")
    else:
        upright = (frame.width, frame.height) if shown.swaps else (frame.height, frame.width)
        height, width = output_size(*upright, resize)
        if shown.swaps:
            height, width = width, height
        array = frame.to_ndarray(format="rgb24", height=height, width=width, interpolation="BILINEAR")
    return shown.apply(array) if shown != _Orientation() else array


class DecordReader(VideoReader):
    """Frames through decord (one decode thread by default).

    decord reports neither the stored frame size (a short-side resize, ``resize=int``, needs
    it) nor the display matrix (it turns frames by an MP4 / MOV container matrix's angle but
    ignores a mirror, a matrix in another container and one in the video stream):
    PyAV reads both from the file's header and first frame once per file and process (cached,
    :func:`stored_size`), so re-reading a video opens one container more, not two (measured
    20 ms for a 720p H.264 file, 3 ms at 640 x 272, once per file). The reader then mirrors what
    decord left unmirrored. A matrix that turns by an angle that is not a multiple of 90 degrees
    is refused with :class:`VideoDecodeError` (decord applies some such angles and not others), and
    so is a matrix decord does not apply at all: one outside an MP4 / MOV container (an MKV's) or
    in the video stream (an orientation SEI). A file PyAV cannot probe is left to decord's open,
    which reports its own error.

    Files whose MP4 edit list hides leading frames are refused with :class:`VideoDecodeError`:
    decord counts the hidden frames and its seeks land off by several frames (see
    :func:`open_video`, which reads them with PyAV instead). MPEG transport streams (``.ts``,
    ``.m2ts``, known by their sync bytes) are refused the same way: decord's seeks in them land a
    GOP late and return wrong frames without an error.

    decord resizes at decode time through FFmpeg's scaler (bilinear). decord 0.6 fails for some
    small output widths (8, 16, 24, 48 and 72 pixels at least: it keeps the source width and then
    refuses to copy the frame); when that happens the reader reopens at full size, resizes with
    :func:`torch.nn.functional.interpolate` instead (logged at INFO). It also fails to copy out
    frames 48 pixels wide even unscaled; such a file is read through :class:`PyAVReader`
    (logged at INFO), not skipped as unreadable.
    """

    backend = "decord"

    def __init__(self, path: str | Path, resize: Resize = None, num_threads: int = 1):
        super().__init__(path, resize, num_threads)
        try:
            import decord
        except ImportError:
            raise VideoBackendUnavailable("decord") from None
        self._decord = decord
        if _is_mpeg_ts(self.path, self._stat):
            # decord seeks in a transport stream land a GOP late: it returns wrong frames silently
            # (measured on a remuxed real H.264 file: frame 0 was frame 30), so refuse the file
            # and let open_video's "auto" read it with PyAV
            raise VideoDecodeError(
                self.path, "an MPEG-TS file, on which decord returns wrong frames; use the pyav backend"
            )
        try:
            display = _display(self.path, self._stat)
        except VideoDecodeError:
            display = None  # PyAV cannot read it: decord's own open below says why it cannot either
        if display is not None:
            self._refuse_unapplied_matrix(display)
        # decord turns frames by an MP4 matrix's quarter turns and ignores its mirror; _fix is
        # what is left to show them as FFmpeg does: a mirror at most (both transpose, or neither)
        self._fix = _Orientation() if display is None else display.orientation.after(display.decord_turns)
        # decode_size: what decord is asked to scale to; post_size: what torch scales to after
        self._decode_size = None
        self._post_size = None
        if isinstance(resize, tuple) or (resize is not None and display is not None):
            self._decode_size = output_size(*(resize if isinstance(resize, tuple) else display.size), resize)
        elif resize is not None:  # a short-side resize without PyAV's size: learnt from a frame
            self._post_size = resize
        self._pyav: PyAVReader | None = None  # see _decode_sorted
        self._reader = self._open(self._decode_size)
        # frames an MP4 edit list hides (a file cut with `ffmpeg -ss ... -c copy`) have negative
        # timestamps; decord counts them and its seeks then land frames off, so refuse the file
        # (open_video's "auto" then reads it with PyAV, which skips them)
        first_timestamp = float(self._reader.get_frame_timestamp([0])[0, 0])
        if first_timestamp < -1e-6:
            hidden = int((self._reader.get_frame_timestamp(range(len(self._reader)))[:, 0] < -1e-6).sum())
            self._reader = None
            raise VideoDecodeError(
                self.path,
                f"an edit list hides {hidden} frames, which decord miscounts and mis-seeks; "
                "use the pyav backend",
            )
        if isinstance(self._post_size, int):
            try:
                shape = self._reader[0].shape
            except Exception as e:  # noqa: BLE001 - decord raises bare RuntimeError / DECORDError
                # no open reader in the error's traceback: open_video's "auto" keeps the error, and
                # a reader freed later by the cyclic GC (maybe in a forked worker) must not be one
                self._reader = None
                raise VideoDecodeError(self.path, f"decord cannot decode frame 0: {_first_line(e)}") from e
            self._post_size = output_size(*shape[:2], self._post_size)

    def _refuse_unapplied_matrix(self, display: _Display) -> None:
        """Refuse a display matrix that decord would not apply as vidlit expects, so that
        :func:`open_video`'s ``"auto"`` reads the file with PyAV."""
        if display.matrix is None:
            return
        if not display.turns_by_quarters:
            angle = _display_angle(display.matrix)
            reason = f"a display matrix that turns by {angle:.4g} degrees, which decord may or may not apply"
        elif display.in_stream:
            # decord's FFmpeg applies no matrix of the bitstream's (a display orientation SEI)
            reason = "a display matrix in the video stream (an orientation SEI), which decord ignores"
        elif display.container != _MOV_DEMUXER:
            # decord reads the angle from the mov demuxer's metadata only: elsewhere it turns nothing
            reason = f"a display matrix in a {display.container!r} container, which decord ignores"
        else:
            return
        raise VideoDecodeError(self.path, f"{reason}; use the pyav backend")

    def _open(self, size: tuple[int, int] | None) -> Any:
        kwargs = {} if size is None else {"height": size[0], "width": size[1]}
        try:
            return self._decord.VideoReader(
                str(self.path), ctx=self._decord.cpu(0), num_threads=self.num_threads, **kwargs
            )
        except Exception as e:  # noqa: BLE001 - decord raises bare RuntimeError / DECORDError
            raise VideoDecodeError(self.path, f"decord cannot open: {_first_line(e)}") from e

    def __len__(self) -> int:
        return len(self._reader)

    @property
    def fps(self) -> float:
        return float(self._reader.get_avg_fps())

    def _decode_sorted(self, indices: list[int]) -> Tensor:
        if self._pyav is not None:
            return self._pyav._decode_sorted(indices)
        try:
            frames = self._reader.get_batch(indices).asnumpy()
        except Exception as e:  # noqa: BLE001
            if self._decode_size is not None and "must exactly match" in str(e):
                self._resize_after_decoding()
                return self._decode_sorted(indices)
            if "from_size == to_size" in str(e):
                # decord 0.6 cannot copy out frames of some widths (48 px, at any height), even
                # unscaled: a valid video, so read it with PyAV rather than skip it as corrupt
                log.info("%s: decord cannot copy frames of this width; reading it with PyAV", self.path)
                self._pyav = PyAVReader(self.path, self.resize, self.num_threads)
                return self._pyav._decode_sorted(indices)
            raise VideoDecodeError(
                self.path, f"decord cannot decode frames {indices[0]}..{indices[-1]}: {_first_line(e)}"
            ) from e
        if self._decode_size is not None and frames.shape[1:3] != self._decode_size:
            self._resize_after_decoding()
            return self._decode_sorted(indices)
        if self._fix != _Orientation():
            frames = self._fix.apply(frames)
        frames = torch.from_numpy(frames)
        return frames if self._post_size is None else _resize_frames(frames, self._post_size)

    def _resize_after_decoding(self) -> None:
        log.info(
            "%s: decord cannot resize to %s; resizing after decoding instead", self.path, self._decode_size
        )
        self._post_size, self._decode_size = self._decode_size, None
        self._reader = self._open(None)

    def close(self) -> None:
        self._reader = None
        if self._pyav is not None:
            self._pyav.close()
        super().close()


class PyAVReader(VideoReader):
    """Frames through PyAV: exact frame indices from a packet scan, keyframe seeks, forward decoding.

    At open, every packet of the first video stream is demuxed (not decoded): frame ``i`` is the
    packet with the ``i``-th smallest presentation timestamp, which is what decord counts too.
    A packet flagged corrupt, or fewer packets than the container header declares, means a
    truncated file and raises :class:`VideoDecodeError`.

    Decoding keeps its position between requests: a frame after the last one decoded, with no
    keyframe in between, is reached by decoding on; anything else seeks to the nearest keyframe
    at or before it. Resizing is done by FFmpeg's scaler (bilinear, like decord) during the
    conversion to RGB. Frames are shown as the file's first frame's display matrix says (read once
    per file and process with the other readers' probe; the module docstring's rule).
    """

    backend = "pyav"

    def __init__(self, path: str | Path, resize: Resize = None, num_threads: int = 1):
        super().__init__(path, resize, num_threads)
        try:
            import av
        except ImportError:
            raise VideoBackendUnavailable("pyav") from None
        self._av = av
        try:
            self._container = av.open(str(self.path))
        except av.FFmpegError as e:
            raise VideoDecodeError(self.path, f"PyAV cannot open: {e}") from e
        try:
            self._index_packets()
        except BaseException:
            self._container.close()
            raise
        self._frames = None  # live decode generator
        self._position = -1  # index of the last frame it produced
        self._orientation: _Orientation | None = None  # the file's, at the first frame decoded

    def _index_packets(self) -> None:
        if not self._container.streams.video:
            raise VideoDecodeError(self.path, "no video stream")
        stream = self._stream = self._container.streams.video[0]
        stream.codec_context.thread_count = self.num_threads
        timestamps, keyframe_flags, discarded = [], [], 0
        try:
            for packet in self._container.demux(stream):
                if packet.size == 0:  # end-of-stream flush
                    continue
                if packet.is_discard:  # cut by an edit list: decoded for reference, never shown
                    discarded += 1
                    continue
                if packet.is_corrupt:
                    raise VideoDecodeError(
                        self.path, f"corrupt packet after {len(timestamps)} frames (truncated file?)"
                    )
                timestamp = packet.pts if packet.pts is not None else packet.dts
                if timestamp is None:
                    raise VideoDecodeError(self.path, f"packet {len(timestamps)} has no timestamp")
                timestamps.append(timestamp)
                keyframe_flags.append(packet.is_keyframe)
        except self._av.FFmpegError as e:
            raise VideoDecodeError(self.path, f"cannot read packets: {e}") from e
        if not timestamps:
            raise VideoDecodeError(self.path, "video stream has no frames")
        if stream.frames and len(timestamps) + discarded < stream.frames:
            raise VideoDecodeError(
                self.path,
                f"header declares {stream.frames} frames but only {len(timestamps)} can be read "
                "(truncated file?)",
            )
        order = np.argsort(timestamps, kind="stable")
        self._pts = np.asarray(timestamps, dtype=np.int64)[order]
        keyframes = np.flatnonzero(np.asarray(keyframe_flags)[order])
        # a stream that starts on a non-keyframe can only be decoded from its start
        self._keyframes = (
            keyframes if keyframes.size and keyframes[0] == 0 else np.concatenate([[0], keyframes])
        )
        rate = stream.average_rate or stream.guessed_rate
        if rate:
            self._fps = float(rate)
        elif len(self._pts) > 1:
            self._fps = (len(self._pts) - 1) / float((self._pts[-1] - self._pts[0]) * stream.time_base)
        else:
            raise VideoDecodeError(self.path, "cannot determine the frame rate")

    def __len__(self) -> int:
        return len(self._pts)

    @property
    def fps(self) -> float:
        return self._fps

    def _index_of(self, frame: Any) -> int:
        timestamp = frame.pts if frame.pts is not None else frame.dts
        if timestamp is None:
            return self._position + 1
        i = int(np.searchsorted(self._pts, timestamp))
        if i == len(self._pts) or (i > 0 and timestamp - self._pts[i - 1] < self._pts[i] - timestamp):
            i -= 1  # nearest packet timestamp; decoders normally reproduce them exactly
        return i

    def _seek(self, keyframe: int) -> None:
        # keyframe 0 seeks to a timestamp at or before the first frame: an MPEG-TS demuxer sent to
        # a keyframe's own timestamp lands on the NEXT keyframe (or nowhere), and the retry from
        # the start in _decode_through must really start there
        timestamp = min(int(self._pts[0]), 0) if keyframe == 0 else int(self._pts[keyframe])
        self._container.seek(timestamp, stream=self._stream, backward=True, any_frame=False)
        self._frames = self._container.decode(self._stream)
        self._position = -1

    def _to_array(self, frame: Any) -> np.ndarray:
        if self._orientation is None:
            # the first frame's matrix for every frame (the module docstring's rule): an orientation
            # SEI may come with the keyframes only (cached per file, as for the other backends)
            self._orientation = _display(self.path, self._stat).orientation
        return upright_rgb(frame, self.resize, self._orientation)

    def _decode_sorted(self, indices: list[int]) -> np.ndarray:
        wanted, decoded = set(indices), {}
        try:
            for target in indices:
                if target not in decoded:
                    self._decode_through(target, wanted, decoded)
        except self._av.FFmpegError as e:
            self._frames = None
            raise VideoDecodeError(self.path, f"cannot decode frame {target}: {e}") from e
        return np.stack([decoded[i] for i in indices])

    def _decode_through(self, target: int, wanted: set[int], decoded: dict[int, np.ndarray]) -> None:
        """Decode up to frame ``target``, keeping every wanted frame passed on the way."""
        keyframe = int(self._keyframes[np.searchsorted(self._keyframes, target, side="right") - 1])
        if self._frames is None or not keyframe <= self._position < target:
            self._seek(keyframe)
        for attempt in range(2):
            first = True
            for frame in self._frames:
                index = self._index_of(frame)
                if first and index > target:
                    break  # the demuxer landed after the target: retry from the start
                first = False
                self._position = index
                if index in wanted and index not in decoded:
                    decoded[index] = self._to_array(frame)
                if index >= target:
                    break
            else:
                self._frames = None  # decoder drained; the next request seeks
            if target in decoded:
                return
            if attempt == 0 and first:
                self._seek(0)
                continue
            break
        raise VideoDecodeError(self.path, f"frame {target} of {len(self)} could not be decoded")

    def close(self) -> None:
        if not self._closed:
            self._frames = None
            self._container.close()
        super().close()


class TorchCodecReader(VideoReader):
    """Frames through torchcodec's ``VideoDecoder`` (``seek_mode="exact"``, NHWC output).

    A resize is done by FFmpeg while decoding (torchcodec's decoder-side
    ``torchcodec.transforms.Resize``); a torchcodec without decoder transforms resizes after
    decoding (antialiased bilinear, :func:`torch.nn.functional.interpolate`). torchcodec turns
    frames by a container matrix's angle (its metadata's ``rotation``), not by a matrix in the video
    stream (an orientation SEI), and ignores a mirror: the reader reads the matrix once per file
    (as :class:`DecordReader` does) and does what torchcodec left undone; a decode-time resize
    targets torchcodec's output, transposed when that is left to do.
    """

    backend = "torchcodec"

    def __init__(self, path: str | Path, resize: Resize = None, num_threads: int = 1):
        super().__init__(path, resize, num_threads)
        try:
            from torchcodec.decoders import VideoDecoder  # noqa: F401 - needs FFmpeg's libraries
        except (ImportError, OSError, RuntimeError):  # RuntimeError: FFmpeg's libraries not found
            raise VideoBackendUnavailable("torchcodec") from None
        self._size = None  # resize after decoding
        try:
            display = _display(self.path, self._stat)
        except VideoDecodeError:
            display = None  # PyAV cannot read it: torchcodec's own open below says why it cannot either
        try:
            from torchcodec.transforms import Resize as DecoderResize
        except ImportError:
            DecoderResize = None  # noqa: N806 - a class
        decoder_resize = resize is not None and DecoderResize is not None and display is not None
        # torchcodec turns frames by the nearest quarter turn of the container's matrix, not of a
        # matrix in the video stream (an orientation SEI), and ignores a mirror. Guess its turns for
        # the decode-time resize target, then take them from its metadata once it is open.
        guess = None
        if display is not None and display.matrix is not None and not display.in_stream:
            guess = _display_angle(display.matrix)
        guessed = self._correction(display, guess)
        self._decoder = self._open(display, resize if decoder_resize else None, DecoderResize, guessed.swaps)
        metadata = self._decoder.metadata
        # an older torchcodec, without metadata.rotation, reports no turn: take it as none
        self._fix = self._correction(display, getattr(metadata, "rotation", None))
        if decoder_resize and self._fix.swaps != guessed.swaps:  # the target turns with the correction
            self._decoder = self._open(display, resize, DecoderResize, self._fix.swaps)
        self._num_frames = int(metadata.num_frames or 0)
        self._fps = float(metadata.average_fps or 0)
        if self._num_frames < 1 or (resize is not None and None in (metadata.height, metadata.width)):
            self._decoder = None  # as DecordReader: no open decoder in the error's traceback
            what = "has no frames" if self._num_frames < 1 else "reports no frame size"
            raise VideoDecodeError(self.path, f"video stream {what}")
        if resize is not None and not decoder_resize:
            height, width = int(metadata.height), int(metadata.width)
            shown = (width, height) if self._fix.swaps else (height, width)
            self._size = output_size(*shown, resize)
            if self._fix.swaps:
                self._size = self._size[::-1]

    @staticmethod
    def _correction(display: _Display | None, rotation: float | int | None) -> _Orientation:
        """What is left to do after torchcodec turned the frames by ``rotation`` degrees (its
        metadata's; None: no turn) to show them as the display matrix says."""
        if display is None:
            return _Orientation()  # nothing known of the matrix: as torchcodec shows them
        turns = 0 if rotation is None else _quarter_turns(float(rotation))
        return display.orientation.after(turns)

    def _open(self, display: _Display | None, resize: Resize, decoder_resize: Any, transposed: bool) -> Any:
        """torchcodec's decoder, resizing to ``resize`` of the frame as shown (None: not at all);
        ``transposed``: the correction after torchcodec swaps height and width."""
        from torchcodec.decoders import VideoDecoder

        transforms = None
        if resize is not None:
            size = output_size(*(resize if isinstance(resize, tuple) else display.size), resize)
            # torchcodec resizes its output, which a correction that transposes turns afterwards
            transforms = [decoder_resize(size=size[::-1] if transposed else size)]
        try:
            options = {"num_ffmpeg_threads": self.num_threads, "seek_mode": "exact"}
            if transforms is not None:
                options["transforms"] = transforms
            decoder = VideoDecoder(str(self.path), dimension_order="NHWC", **options)
            decoder.metadata.num_frames, decoder.metadata.average_fps  # noqa: B018 - raise here
        except Exception as e:  # noqa: BLE001 - torchcodec raises RuntimeError / ValueError
            raise VideoDecodeError(self.path, f"torchcodec cannot open: {_first_line(e)}") from e
        return decoder

    def __len__(self) -> int:
        return self._num_frames

    @property
    def fps(self) -> float:
        return self._fps

    def _decode_sorted(self, indices: list[int]) -> Tensor:
        try:
            frames = self._decoder.get_frames_at(indices=indices).data
        except Exception as e:  # noqa: BLE001
            raise VideoDecodeError(
                self.path, f"torchcodec cannot decode frames {indices[0]}..{indices[-1]}: {_first_line(e)}"
            ) from e
        if self._size is not None:
            frames = _resize_frames(frames, self._size)
        return frames if self._fix == _Orientation() else torch.from_numpy(self._fix.apply(frames.numpy()))

    def close(self) -> None:
        self._decoder = None
        super().close()


READERS: dict[str, type[VideoReader]] = {
    "decord": DecordReader,
    "pyav": PyAVReader,
    "torchcodec": TorchCodecReader,
}


def _is_mpeg_ts(path: Path, stat: os.stat_result | None = None) -> bool:
    """Whether a file is an MPEG transport stream: the ``0x47`` sync byte every 188 bytes (every
    192 bytes in M2TS / Blu-ray ``.m2ts``, after a 4-byte timecode), whatever its name, from any
    offset within the first packet (a capture cut mid-packet, leading junk). Read once per file
    version and process, beside :func:`stored_size`'s answer (``stat``: the caller's, when it has
    one). A file that cannot be read is not one here: the reader's own open reports it."""
    try:
        return _header_fact(str(path), stat or path.stat(), "mpeg_ts", _read_mpeg_ts)
    except OSError:
        return False


def _read_mpeg_ts(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(6 * 192)
    return any(
        len(head) > start + 4 * size and all(head[start + i * size] == 0x47 for i in range(5))
        for size in (188, 192)
        for start in range(size)
    )


def _first_line(error: BaseException) -> str:
    """The first line of an error message, without decord's ``[hh:mm:ss] file.cc:123:`` prefixes."""
    text = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def open_video(
    path: str | Path, backend: str = "auto", resize: Resize = None, num_threads: int = 1
) -> VideoReader:
    """Open a video with the chosen backend.

    ``"auto"`` uses decord when installed, else PyAV; a file decord cannot open is retried
    with PyAV (decord 0.6 lacks newer codecs such as AV1), and only when both fail does it raise.

    Args:
        path: the video file.
        backend: ``"auto"``, ``"decord"``, ``"pyav"`` or ``"torchcodec"``.
        resize: see :class:`VideoReader`.
        num_threads: decoder threads.

    Raises:
        VideoNotFoundError: no such file.
        VideoDecodeError: the file cannot be opened.
        VideoBackendUnavailable: the named backend's package is not installed.
        ValueError: an unknown backend.
    """
    if backend != "auto":
        if backend not in READERS:
            raise ValueError(f"unknown video backend {backend!r}; expected 'auto' or one of {BACKENDS}")
        return READERS[backend](path, resize=resize, num_threads=num_threads)
    stat_video_file(path)  # a missing or empty file fails alike for every backend: say so once
    candidates = [name for name in ("decord", "pyav") if backend_available(name)]
    if not candidates:
        raise VideoBackendUnavailable("pyav")
    errors: dict[str, VideoDecodeError] = {}
    for name in candidates:
        try:
            return READERS[name](path, resize=resize, num_threads=num_threads)
        except VideoDecodeError as e:
            errors[name] = e
        except VideoBackendUnavailable:
            continue  # found but broken install (e.g. a missing shared library): try the next
    if not errors:
        raise VideoBackendUnavailable("pyav")
    if len(errors) == 1:
        raise next(iter(errors.values()))
    reason = "; ".join(f"{name}: {e.reason}" for name, e in errors.items())
    raise VideoDecodeError(path, reason) from errors[list(errors)[-1]]


class ReaderCache:
    """The last few opened readers, kept open so that several clips of one video share one open.

    Opening is much of a short clip's cost (decord and PyAV index the file's packets), so a loop
    that reads several clips per video (multi-view evaluation, dense feature extraction, sampling
    that revisits a video) can keep its readers here. A file is reopened when it changed on disk
    (size, mtime or inode) and the least recently used reader is closed when ``size`` are open.
    Readers belong to the cache: use them without ``with`` and call :meth:`close` at the end.

    A cache is private to its process: a copy made by ``fork`` (a DataLoader worker) forgets the
    parent's readers (it never shares a decoder's state with the parent) and a pickled cache (a
    ``spawn`` worker) starts empty, so a dataset can hold one and each worker keeps its own readers.

    Args:
        size: the most readers kept open.
        workers_only: keep readers open only inside DataLoader worker processes; elsewhere
            :meth:`reading` closes each reader after use. A dataset sets it: a reader left open in
            the main process when the workers fork can hang them.

    Example:
        >>> cache = ReaderCache(size=4)  # doctest: +SKIP
        >>> frames = cache.open(path, resize=224).get_frames(indices)  # doctest: +SKIP
    """

    def __init__(self, size: int = 4, workers_only: bool = False):
        if size < 1:
            raise ValueError(f"ReaderCache size must be >= 1, got {size}")
        self.size = size
        self.workers_only = workers_only
        self._readers: dict[tuple, VideoReader] = {}
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {"size": self.size, "workers_only": self.workers_only}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def _own(self) -> dict[tuple, VideoReader]:
        if self._pid != os.getpid():
            # A forked copy: the readers are the parent's. They are kept, never used nor closed:
            # closing (or garbage-collecting) a decoder forked while open can hang in the child.
            self._forked = getattr(self, "_forked", []) + list(self._readers.values())
            self._readers, self._pid = {}, os.getpid()
        return self._readers

    def open(
        self, path: str | Path, backend: str = "auto", resize: Resize = None, num_threads: int = 1
    ) -> VideoReader:
        """:func:`open_video`, or the open reader of an earlier call with the same arguments."""
        readers = self._own()
        st = stat_video_file(path)
        key = (str(path), backend, resize, num_threads, st.st_size, st.st_mtime_ns, st.st_ino)
        reader = readers.pop(key, None)
        if reader is None or reader._closed:
            reader = open_video(path, backend, resize, num_threads)
        readers[key] = reader  # most recently used last
        while len(readers) > self.size:
            readers.pop(next(iter(readers))).close()
        return reader

    @contextlib.contextmanager
    def reading(
        self, path: str | Path, backend: str = "auto", resize: Resize = None, num_threads: int = 1
    ) -> Iterator[VideoReader]:
        """``with cache.reading(path) as reader:``: :meth:`open` where readers are kept, else a fresh one.

        A :class:`VideoDecodeError` raised in the block closes the file's kept readers, so that the
        next request reopens it.
        """
        if self.workers_only and torch.utils.data.get_worker_info() is None:
            with open_video(path, backend, resize, num_threads) as reader:
                yield reader
            return
        reader = self.open(path, backend, resize, num_threads)
        try:
            yield reader
        except VideoDecodeError:
            self.discard(path)
            raise

    def discard(self, path: str | Path) -> None:
        """Close the readers of ``path`` (after a decode error, so that the next request reopens it)."""
        readers = self._own()
        for key in [k for k in readers if k[0] == str(path)]:
            readers.pop(key).close()

    def close(self) -> None:
        """Close every reader."""
        readers = self._own()
        for reader in readers.values():
            reader.close()
        readers.clear()

    def __len__(self) -> int:
        return len(self._own())


def read_audio(path: str | Path, sample_rate: int | None = None, mono: bool = False) -> tuple[Tensor, int]:
    """Decode the first audio stream of a media file with PyAV.

    Args:
        path: video or audio file.
        sample_rate: resample to this rate; None keeps the stream's.
        mono: downmix to one channel (FFmpeg's rematrixing).

    Returns:
        ``(waveform, sample_rate)``: float32 ``[c, n]`` in ``[-1, 1]`` and its rate.

    Raises:
        VideoNotFoundError: no such file.
        VideoDecodeError: unreadable file or no audio stream.
    """
    import av

    path = check_video_file(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise VideoDecodeError(path, "no audio stream")
            stream = container.streams.audio[0]
            rate = sample_rate or stream.codec_context.sample_rate
            resampler = av.AudioResampler(
                format="fltp", layout="mono" if mono else stream.layout.name, rate=rate
            )
            chunks = []
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    except av.FFmpegError as e:
        raise VideoDecodeError(path, f"cannot decode audio: {e}") from e
    if not chunks:
        raise VideoDecodeError(path, "audio stream has no samples")
    return torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32, copy=False)), rate
