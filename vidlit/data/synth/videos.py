"""Synthetic action-recognition videos: coloured shapes moving across a dark, noisy background, or pans.

Every clip of the ``"shapes"`` scene shows one shape (square, circle or triangle) in one colour
(red, green or blue) sliding left, right, up or down. The label is one of those three attributes
(``label_by``), so a video model has to look at appearance or at motion to get it right, and each
record carries the other two, so captions ("a red circle moving left") can be generated for
video-text training.

Every clip of the ``"pans"`` scene is a camera panning over a smooth random colour texture: the
whole frame moves left, right, up or down, the label. Unlike a small bright shape on a dark
background, whose signal RandAugment's intensity ops (Equalize, Solarize, Invert) wipe out, the
motion of a textured frame survives them, as it does in real footage: the fine-tuning recipe's
test (``tests/tasks/test_finetune_margin.py``) trains on these.

The layout is the Kinetics-style list format::

    out_dir/
      videos/000000.mp4 ...
      videos.csv        path,label   (path relative to out_dir, label = class name)
      classes.txt       one class name per line; line number = class index

Videos are H.264 (PyAV's ``libx264`` encoder, ``yuv420p``, byte-identical for a given seed) with
a keyframe every 8 frames and B-frames, so readers are exercised on seeking and reordering.
When the PyAV build has no ``libx264``, ``mpeg4`` is used instead, with a logged warning; the
codec is in every record.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

log = logging.getLogger(__name__)

SHAPES = ("square", "circle", "triangle")
COLORS = {"red": (220, 40, 40), "green": (40, 200, 40), "blue": (40, 70, 230)}
MOTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SCENES = ("shapes", "pans")
LABEL_ATTRIBUTES = {"shape": SHAPES, "color": tuple(COLORS), "motion": tuple(MOTIONS)}
# a tone per shape, so an audio track (when asked for) carries the same signal as the pixels
TONE_HZ = {"square": 440.0, "circle": 660.0, "triangle": 880.0}


def preferred_video_codec() -> str:
    """``libx264`` when this PyAV build can encode with it, else ``mpeg4``."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def shape_mask(shape: str, size: int, center: tuple[float, float], extent: float) -> np.ndarray:
    """A ``[size, size]`` bool mask of one shape.

    Args:
        shape: one of :data:`SHAPES`.
        size: frame side in pixels.
        center: ``(x, y)`` in pixels.
        extent: side of the square / diameter of the circle / base and height of the triangle.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    cx, cy = center
    half = extent / 2
    if shape == "square":
        return (np.abs(x - cx) <= half) & (np.abs(y - cy) <= half)
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= half**2
    if shape == "triangle":
        # apex up: the half-width grows linearly from 0 at the top edge to ``half`` at the base
        top = cy - half
        inside_rows = (y >= top) & (y <= cy + half)
        return inside_rows & (np.abs(x - cx) <= (y - top) / 2)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render_clip(
    rng: np.random.Generator,
    shape: str,
    color: str,
    motion: str,
    num_frames: int,
    size: int,
    background: np.ndarray | None = None,
) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 frames of one shape crossing the frame.

    Args:
        rng: draws, in this order, the start offset, the cross-axis position, the background
            (unless given) and each frame's noise.
        shape: one of :data:`SHAPES`.
        color: a key of :data:`COLORS`.
        motion: a key of :data:`MOTIONS`.
        num_frames: frames to render.
        size: frame side in pixels.
        background: ``[size, size, 3]`` int16 grey levels shared with other clips (a source
            video of several clips); None draws one.
    """
    extent = size / 4
    dx, dy = MOTIONS[motion]
    # the centre travels half the frame along the motion axis, starting a little off the
    # quarter line; the other coordinate is random but keeps the shape fully inside
    start = size * (0.25 + rng.uniform(-0.04, 0.04))
    travel = size * 0.5
    across = rng.uniform(extent, size - extent)
    if background is None:
        background = random_background(rng, size)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        along = start + travel * t / max(num_frames - 1, 1)
        if dx:
            center = (along if dx > 0 else size - along, across)
        else:
            center = (across, along if dy > 0 else size - along)
        frame = background + rng.integers(-4, 5, size=background.shape, dtype=np.int16)
        frame[shape_mask(shape, size, center, extent)] = COLORS[color]
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def random_texture(rng: np.random.Generator, side: int, cell: float = 8.0) -> np.ndarray:
    """A ``[side, side, 3]`` int16 smooth colour texture, levels 20-220.

    Uniform noise on a grid of about ``side / cell`` points per axis, each channel upsampled
    bicubically (PIL), the three channels together stretched to 20-220: colour blobs about
    ``cell`` pixels across.
    """
    from PIL import Image  # torchvision's dependency; imported where used, as in vidlit.serve

    points = max(2, round(side / cell))
    noise = rng.random((3, points, points), dtype=np.float32)
    channels = [np.asarray(Image.fromarray(c, mode="F").resize((side, side), Image.BICUBIC)) for c in noise]
    texture = np.stack(channels, axis=-1)
    texture = (texture - texture.min()) / max(float(texture.max() - texture.min()), 1e-6)
    return np.rint(20 + 200 * texture).astype(np.int16)


def render_pan_clip(
    rng: np.random.Generator,
    motion: str,
    num_frames: int,
    size: int,
    travel: float = 0.5,
    cell: float = 8.0,
) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 frames of a camera panning over a smooth colour texture.

    The content moves in the direction ``motion`` names (the camera the other way) by ``travel``
    of the frame side over the clip, in whole pixels; each frame adds per-pixel noise in
    ``[-2, 2]``.

    Args:
        rng: draws, in this order, the texture, the window's cross-axis offset and each frame's
            noise.
        motion: a key of :data:`MOTIONS`.
        num_frames: frames to render.
        size: frame side in pixels.
        travel: how far the content moves over the clip, as a fraction of ``size``.
        cell: the texture's blob size in pixels (:func:`random_texture`).
    """
    if travel < 0 or cell <= 0:
        raise ValueError(f"render_pan_clip needs travel >= 0 and cell > 0, got {travel} and {cell}")
    dx, dy = MOTIONS[motion]
    shift = round(size * travel)
    texture = random_texture(rng, size + shift, cell)
    across = int(rng.integers(shift + 1))
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        moved = round(shift * t / max(num_frames - 1, 1))
        # the window slides against the motion: content moving right means the window moves left
        along = shift - moved if dx > 0 or dy > 0 else moved
        x, y = (along, across) if dx else (across, along)
        frame = texture[y : y + size, x : x + size] + rng.integers(
            -2, 3, size=(size, size, 3), dtype=np.int16
        )
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``[size, size, 3]`` int16 dark grey background (levels 8-39), the same in all channels."""
    return rng.integers(8, 40, size=(size, size, 1)).repeat(3, axis=2).astype(np.int16)


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: int = 15,
    codec: str | None = None,
    gop_size: int = 8,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    faststart: bool = False,
) -> str:
    """Encode ``[T, H, W, 3]`` uint8 frames (and optionally a mono waveform) into one file.

    Args:
        path: output file; the container follows the suffix (``.mp4``, ``.mkv``, ...).
        frames: RGB frames; H and W must be even (``yuv420p``).
        fps: frame rate.
        codec: video encoder; defaults to :func:`preferred_video_codec`.
        gop_size: frames between keyframes.
        audio: ``[N]`` float waveform in ``[-1, 1]``, encoded as AAC.
        sample_rate: rate of ``audio``.
        faststart: put the MP4 index (``moov``) before the media data, as web videos do.

    Returns:
        The codec used.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"{path}: frame height and width must be even for yuv420p, got {frames.shape[1:3]}")
    codec = codec or preferred_video_codec()
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop_size
        # one encoder thread: tiny frames gain nothing from more, and output stays reproducible
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            # mbtree off: with it, x264 (SIMD) output varied from run to run on these tiny frames
            stream.options = {"crf": "18", "bf": "2", "sc_threshold": "0", "x264-params": "mbtree=0"}
        else:
            stream.codec_context.bit_rate = 2_000_000
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream("aac", rate=sample_rate)
            audio_stream.layout = "mono"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
        if audio_stream is not None:
            chunk = 1024
            samples = np.asarray(audio, dtype=np.float32)
            for offset in range(0, len(samples), chunk):
                piece = samples[None, offset : offset + chunk]
                audio_frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(piece), format="fltp", layout="mono"
                )
                audio_frame.sample_rate = sample_rate
                audio_frame.pts = offset
                audio_frame.time_base = Fraction(1, sample_rate)
                container.mux(audio_stream.encode(audio_frame))
            container.mux(audio_stream.encode())
    return codec


def write_synthetic_videos(
    out_dir: str | Path,
    num_videos: int,
    num_frames: int = 32,
    size: int = 64,
    fps: int = 15,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    label_by: str = "motion",
    audio: bool = False,
    sample_rate: int = 16000,
    progress: bool = False,
    scene: str = "shapes",
) -> list[dict[str, Any]]:
    """Write ``num_videos`` labelled clips, ``videos.csv`` and ``classes.txt`` into ``out_dir``.

    Labels cycle through ``classes`` (so every class gets ``num_videos / len(classes)`` clips,
    give or take one); the attributes that are not the label are drawn at random.

    Args:
        out_dir: dataset folder (created).
        num_videos: clips to write.
        num_frames: frames per clip.
        size: frame height and width (even, at least 16).
        fps: frame rate.
        seed: everything is a function of it.
        classes: label values to use, a subset of the ``label_by`` attribute's values
            (:data:`SHAPES`, the keys of :data:`COLORS` or of :data:`MOTIONS`); all by default.
        label_by: which attribute is the label: ``"shape"``, ``"color"`` or ``"motion"``.
        audio: add a mono AAC track, a tone whose pitch depends on the shape (:data:`TONE_HZ`).
        sample_rate: audio sample rate.
        progress: show a progress bar (``rich``).
        scene: ``"shapes"`` (:func:`render_clip`) or ``"pans"`` (:func:`render_pan_clip`: a
            texture moving in one direction; labelled by motion, no shape, colour or audio).

    Returns:
        One record per clip: ``path`` (absolute, str), ``label`` (class name), ``label_index``,
        ``shape``, ``color``, ``motion`` (direction), ``caption``, ``num_frames``, ``fps`` and
        ``codec``; a pan's ``shape`` and ``color`` are None.
    """
    if scene not in SCENES:
        raise ValueError(f"scene must be one of {SCENES}, got {scene!r}")
    if label_by not in LABEL_ATTRIBUTES:
        raise ValueError(f"label_by must be one of {tuple(LABEL_ATTRIBUTES)}, got {label_by!r}")
    if scene == "pans" and (label_by != "motion" or audio):
        raise ValueError(
            f"a pan has only a motion: label_by must be 'motion' and audio off; got {label_by!r}, {audio=}"
        )
    values = LABEL_ATTRIBUTES[label_by]
    classes = tuple(values if classes is None else classes)
    unknown = [c for c in classes if c not in values]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct values of {label_by!r} from {values}, got {classes}")
    if num_videos < 1 or num_frames < 1:
        raise ValueError(f"num_videos and num_frames must be positive, got {num_videos} and {num_frames}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be even and at least 16, got {size}")
    codec = preferred_video_codec()
    if codec != "libx264":
        log.warning("PyAV has no libx264 encoder; writing synthetic videos as %s", codec)
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    order = range(num_videos)
    if progress:
        from rich.progress import track

        order = track(order, description=f"writing {num_videos} videos")
    records = []
    for i in order:
        attributes = {
            "shape": SHAPES[rng.integers(len(SHAPES))],
            "color": tuple(COLORS)[rng.integers(len(COLORS))],
            "motion": tuple(MOTIONS)[rng.integers(len(MOTIONS))],
        }
        attributes[label_by] = classes[i % len(classes)]
        if scene == "pans":
            attributes["shape"] = attributes["color"] = None
            frames = render_pan_clip(rng, attributes["motion"], num_frames=num_frames, size=size)
            caption = f"a coloured texture moving {attributes['motion']}"
        else:
            frames = render_clip(rng, num_frames=num_frames, size=size, **attributes)
            caption = f"a {attributes['color']} {attributes['shape']} moving {attributes['motion']}"
        waveform = None
        if audio:
            t = np.arange(round(num_frames / fps * sample_rate)) / sample_rate
            waveform = 0.5 * np.sin(2 * math.pi * TONE_HZ[attributes["shape"]] * t)
        path = out_dir / "videos" / f"{i:06d}.mp4"
        write_video(path, frames, fps=fps, codec=codec, audio=waveform, sample_rate=sample_rate)
        records.append(
            {
                "path": str(path.resolve()),
                "label": attributes[label_by],
                "label_index": classes.index(attributes[label_by]),
                **attributes,
                "caption": caption,
                "num_frames": num_frames,
                "fps": fps,
                "codec": codec,
            }
        )
    with open(out_dir / "videos.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for record in records:
            writer.writerow([Path(record["path"]).relative_to(out_dir.resolve()).as_posix(), record["label"]])
    (out_dir / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    return records


def write_edit_list_video(source: str | Path, path: str | Path, hidden_frames: int) -> Path:
    """Remux an MP4 (no re-encoding) so an edit list hides its first ``hidden_frames`` frames.

    This is what ``ffmpeg -ss T -i in.mp4 -c copy out.mp4`` leaves behind, common in downloaded
    datasets: the packets before the cut stay in the file (later frames need them as references)
    but are flagged to be decoded and dropped. Readers must report and return only the others.

    Args:
        source: an MP4 written by :func:`write_video` (constant frame rate).
        path: the output ``.mp4``.
        hidden_frames: leading frames to hide.

    Returns:
        ``path``.
    """
    path = Path(path)
    with av.open(str(source)) as inp, av.open(str(path), mode="w") as out:
        stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(stream)
        shift = round(hidden_frames / (stream.average_rate * stream.time_base))
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            # timestamps that start below zero make the MP4 muxer write the edit list
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = out_stream
            out.mux(packet)
    return path


def write_corrupt_videos(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write broken video files for tests of the skip / strict logic.

    Args:
        out_dir: folder (created).
        seed: seeds the valid source clips and the random bytes.

    Returns:
        Paths by kind:

        - ``"zero_byte"``: an empty ``.mp4``.
        - ``"random_bytes"``: 4 KiB of noise named ``.mp4``.
        - ``"truncated"``: the first half of the bytes of a valid MP4 whose index (``moov``) sits
          at the end, as PyAV and ffmpeg write by default: nothing can open it.
        - ``"truncated_faststart"``: the first half of a valid MP4 with its index at the front
          (``+faststart``): the header still lists all 32 frames, but half their data is gone.
        - ``"damaged_packets"``: a complete 32-frame MP4 (keyframe every 8 frames) whose packets
          from the 17th in decode order on are overwritten with ``0xff``: the file opens and its
          first GOP (frames 0-7) decodes, frames from 16 on cannot; how many in between still
          come out depends on the decoder's read-ahead (10 with decord 0.6, 14 with PyAV).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frames = render_clip(rng, "square", "red", "right", num_frames=32, size=64)
    kinds = ("zero_byte", "random_bytes", "truncated", "truncated_faststart", "damaged_packets")
    paths = {kind: out_dir / f"{kind}.mp4" for kind in kinds}
    paths["zero_byte"].write_bytes(b"")
    paths["random_bytes"].write_bytes(rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    for kind, faststart in (("truncated", False), ("truncated_faststart", True)):
        whole = out_dir / f"_{kind}_source.mp4"
        write_video(whole, frames, faststart=faststart, gop_size=8)
        data = whole.read_bytes()
        paths[kind].write_bytes(data[: len(data) // 2])
        whole.unlink()
    write_video(paths["damaged_packets"], frames, faststart=True, gop_size=8)
    with av.open(str(paths["damaged_packets"])) as container:
        # the MP4 index lists packets in decode order, with their byte offsets
        spans = [(entry.pos, entry.size) for entry in container.streams.video[0].index_entries]
    data = bytearray(paths["damaged_packets"].read_bytes())
    for pos, size in spans[16:]:
        data[pos : pos + size] = b"\xff" * size
    paths["damaged_packets"].write_bytes(bytes(data))
    return paths


def write_synthetic_video_list(
    root: str | Path, num_videos: int = 128, num_frames: int = 16, seed: int = 0, **kwargs: Any
) -> Path:
    """Write synthetic labelled videos and a 3:1 ``train.csv`` / ``val.csv`` split of them.

    The sample dataset of ``recipes/video_cls.yaml`` and ``recipes/pretrain_mvm.yaml`` (and of
    ``vidlit data synth videos``): :func:`write_synthetic_videos` writes the videos,
    ``videos.csv`` and ``classes.txt`` (labels by motion direction unless ``label_by`` says
    otherwise); labels cycle through the classes, so every fourth round of classes goes to val
    and both splits stay balanced. ``train.csv`` is written last: a folder that has it is complete.

    Args:
        root: dataset folder.
        num_videos: clips to write.
        num_frames: frames per clip (64 x 64 pixels, 15 fps by default).
        seed: everything is a function of it.
        kwargs: passed to ``write_synthetic_videos`` (``size``, ``label_by``, ...).

    Returns:
        ``root``.
    """
    root = Path(root)
    records = write_synthetic_videos(root, num_videos, num_frames=num_frames, seed=seed, **kwargs)
    num_classes = len({r["label"] for r in records})
    with open(root / "videos.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    splits: dict[str, list[list[str]]] = {"val": [], "train": []}
    for i, row in enumerate(rows):
        splits["val" if (i // num_classes) % 4 == 3 else "train"].append(row)
    for split, split_rows in splits.items():
        with open(root / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([header, *split_rows])
    return root


def write_videos(out: str | Path, seed: int = 0, **kwargs: Any) -> Path:
    """``vidlit data synth videos``: the video-list sample that ``video_cls`` / ``pretrain_mvm`` read.

    Writes :func:`write_synthetic_video_list` (128 clips, ``train.csv`` / ``val.csv`` /
    ``classes.txt`` / ``videos.csv``), the same layout the recipes write when their root is missing.
    """
    return write_synthetic_video_list(out, seed=seed, **kwargs)


def write_pans(out: str | Path, seed: int = 0, **kwargs: Any) -> Path:
    """``vidlit data synth pans``: :func:`write_videos`' layout, of camera pans over a colour texture.

    128 clips (16 frames, 64 x 64) of a smooth random colour texture moving left, right, up or
    down, labelled by the direction (:func:`render_pan_clip`): the sample on which the fine-tuning
    recipe's batch augmentations leave the motion visible (``recipes/finetune_k400.yaml``).
    """
    return write_synthetic_video_list(out, seed=seed, **kwargs, scene="pans")
