"""``vidlit extract``: run a trained backbone over videos in sliding windows, one ``[T, C]`` file each.

    vidlit extract --config recipes/pretrain_mvm.yaml --ckpt_path runs/pretrain_mvm/backbone.pt \\
        --videos data/ego4d/clips.csv --out data/ego4d_mq/features --window 16 --stride 16

This is how the Ego4D episodic-memory baselines get their clip features (Grauman et al., 2022,
"Ego4D", Appendix: SlowFast / Omnivore features, one vector every 16 frames of the 30 fps video):
window ``i`` covers frames ``[i * stride, i * stride + window)``; ``frames_per_window`` frames
evenly spaced inside it (the backbone's clip length, e.g. 16 of a 32-frame window, as SlowFast
8x8 samples every 4th frame of 32) are resized, centre-cropped and normalized as the recipe's
evaluation transform does, and the backbone's pooled feature (``output="pooled"``, ``[C]``) is
step ``i`` of the video's ``[T, C]`` sequence. So feature ``i`` is centred at
``(i * stride + window / 2) / fps`` seconds, exactly what
:class:`~vidlit.data.Ego4DMQ` assumes with ``feature_stride: stride`` and
``feature_window: window``.

- ``T = ceil((n - window) / stride) + 1`` for a video of ``n >= window`` frames (every frame is
  in some window; a last window that runs past the end repeats the last frame), ``T = 1`` for
  shorter videos.
- With ``fps`` set, windows are counted on a timeline resampled to that rate (source frame
  ``floor(j * source_fps / fps)`` is frame ``j``), so videos of any rate get features at the same
  step in seconds (the Ego4D features assume 30 fps).
- Output: ``<out>/<key>.pt`` (a float32 tensor) or ``.npy``, where ``key`` is the video file's
  name without its suffix (Ego4D clips are ``<clip_uid>.mp4``, the annotation key), plus
  ``@start-end`` for a list row with a time window. :func:`~vidlit.data.features.find_feature_file`
  finds them. Each file is written atomically (temporary file, fsync, rename; one PUT on an
  object store: ``out`` may be any fsspec URL, ``s3://bucket/features``).
- Resumable: the list is split into partitions of ``videos_per_partition`` consecutive rows;
  once all of partition ``p``'s files are written, ``partitions/part-{p:06d}.json`` marks it
  done. A rerun skips done partitions and, inside the others, every video whose feature file
  exists, so a killed run picks up where it stopped. Unreadable videos are counted and reported
  (``strict`` raises instead); their partition is retried by the next run.
- Engines: ``engine="ray"`` (``--engine ray``) decodes windows in Ray Data CPU tasks and runs the
  backbone in a pool of actors (:mod:`vidlit.engines`); the same stage functions and writers as
  the local engine, so the same files.
- Recorded: ``<out>/extraction.json`` holds the settings (window, stride, fps, clip length, crop
  size, normalization, file format) and the SHA-256 of the backbone's weights, written before the
  first feature file. A rerun into the same folder with other settings or other weights is
  refused with one line naming what changed (``overwrite`` deletes the old features first), so a
  folder never mixes two extractions. Data modules on stored features read window, stride and
  fps from it (:func:`~vidlit.data.features.feature_timing`).
- Random weights only on request: without ``--ckpt_path`` (and without a ``checkpoint_path`` in
  the recipe's backbone) ``vidlit extract`` refuses unless ``--random-weights`` is given; those
  weights are drawn from a fixed seed, so a resumed run draws the same ones.

The backbone is the ``model.init_args.backbone`` of a recipe (e.g. ``recipes/pretrain_mvm.yaml``,
``recipes/video_cls.yaml``, a ViCLIP recipe), loaded from a Lightning checkpoint of that model
(``weights_only=True``) or from the plain ``backbone.pt`` that
:class:`~vidlit.tasks.ExportBackbone` writes.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn

from vidlit.core.device import resolve_device
from vidlit.core.fingerprint import settings_changes, weights_fingerprint
from vidlit.core.imports import import_path
from vidlit.core.io import confined_path, write_atomic
from vidlit.core.progress import progress_bar
from vidlit.data.features import EXTRACTION_RECORD, FEATURE_SUFFIXES
from vidlit.data.lists import VideoEntry, read_video_list
from vidlit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, VideoBatchTransform
from vidlit.data.video import BACKENDS, VideoDecodeError, open_video
from vidlit.engines import (
    ENGINES,
    OutputFolder,
    Partition,
    Pipeline,
    add_engine_arguments,
    pending_partitions,
    ray_options,
    run_local,
    split_partitions,
)
from vidlit.engines.partitions import MARKERS
from vidlit.engines.ray_data import RayOptions

log = logging.getLogger(__name__)

__all__ = [
    "ExtractSummary",
    "FeatureExtractor",
    "extract_features",
    "feature_key",
    "load_backbone",
    "window_frame_indices",
]

FORMATS = ("pt", "npy")
RANDOM_WEIGHTS_SEED = 0  # --random-weights: the same draw on every run, so a resume matches
# extraction.json keys that describe a run rather than define its features
_RECORD_INFO = ("source_fps", "random_weights")


# -- windows --------------------------------------------------------------------------------------


def num_windows(num_frames: int, window: int, stride: int) -> int:
    """Feature steps of a video of ``num_frames`` frames: ``ceil((n - window) / stride) + 1``, at least 1."""
    if num_frames < 1:
        raise ValueError(f"cannot extract features from a video with {num_frames} frames")
    if num_frames <= window:
        return 1
    return math.ceil((num_frames - window) / stride) + 1


def window_frame_indices(num_frames: int, window: int, stride: int, frames_per_window: int) -> np.ndarray:
    """``[T, frames_per_window]`` frame indices of every sliding window of a video.

    Window ``i`` starts at frame ``i * stride``; its frames are ``start + floor(j * window /
    frames_per_window)`` for ``j < frames_per_window``, clamped to the last frame.

    Args:
        num_frames: frames in the video (on the extraction timeline).
        window: frames a window covers.
        stride: frames between window starts.
        frames_per_window: frames the backbone sees per window.
    """
    if window < 1 or stride < 1 or frames_per_window < 1:
        raise ValueError(
            "window, stride and frames_per_window must be positive, "
            f"got {window}, {stride}, {frames_per_window}"
        )
    starts = np.arange(num_windows(num_frames, window, stride)) * stride
    offsets = (np.arange(frames_per_window) * window) // frames_per_window
    return np.minimum(starts[:, None] + offsets[None, :], num_frames - 1).astype(np.int64)


def feature_key(entry: VideoEntry) -> str:
    """File name (without suffix) of a list row's features: the video's stem, plus ``@start-end``."""
    key = entry.path.stem
    if entry.start is not None or entry.end is not None:
        key += f"@{entry.start or 0:g}-{'end' if entry.end is None else format(entry.end, 'g')}"
    return key


# -- the model ------------------------------------------------------------------------------------


def _import(path: str) -> Any:
    # bare names resolve in vidlit.backbones, as ``create_backbone`` does in a recipe
    return import_path(path, "class_path", search=("vidlit.backbones",))


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe YAML as plain data, OmegaConf interpolations (``${data.init_args.mean}``) resolved."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config not found")
    config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top level")
    return config


def backbone_state_dict(checkpoint: Any, source: str) -> dict[str, Tensor]:
    """The backbone's weights from a Lightning checkpoint or a plain backbone state dict.

    Lightning checkpoints hold ``state_dict`` with the backbone under ``backbone.``
    (:class:`~vidlit.tasks.TaskModule`, :class:`~vidlit.tasks.MVMPretrain`) or ``model.video.``
    (:class:`~vidlit.tasks.video_text.VideoTextPretrain`); a ``backbone.pt`` is the backbone's
    own state dict.

    Raises:
        ValueError: not a mapping of tensors.
    """
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"{source}: expected a state dict or a Lightning checkpoint, got {type(checkpoint).__name__}"
        )
    state = checkpoint.get("state_dict", checkpoint)
    state = {k.replace("._orig_mod", "").removeprefix("_orig_mod."): v for k, v in state.items()}
    for prefix in ("model.video.", "backbone."):
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{source}: no backbone weights found (keys: {sorted(state)[:8]})")
    return state


def load_backbone(config: str | Path | dict[str, Any], ckpt_path: str | Path | None) -> nn.Module:
    """Build the recipe's ``model.init_args.backbone`` and load a checkpoint into it.

    Args:
        config: recipe path or its parsed mapping.
        ckpt_path: Lightning checkpoint of the recipe's model, or a ``backbone.pt``; None keeps
            the weights the config builds (e.g. its own ``checkpoint_path``).

    Returns:
        The backbone in eval mode.

    Raises:
        ValueError: the config has no backbone, or the checkpoint does not fit it.
        FileNotFoundError: no such checkpoint.
    """
    source = str(config) if not isinstance(config, dict) else "config"
    recipe = read_recipe(config) if not isinstance(config, dict) else config
    spec = ((recipe.get("model") or {}).get("init_args") or {}).get("backbone")
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(
            f"{source}: no model.init_args.backbone with a class_path; extraction needs a recipe whose "
            "model has a video backbone (e.g. recipes/pretrain_mvm.yaml)"
        )
    backbone = _import(spec["class_path"])(**(spec.get("init_args") or {}))
    if ckpt_path is not None:
        ckpt_path = Path(ckpt_path)
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"{ckpt_path}: checkpoint not found")
        from vidlit.checkpoint_io import AtomicCheckpointIO

        # weights_only, on the CPU; a file that is no checkpoint: one line naming it
        state = backbone_state_dict(AtomicCheckpointIO().load_checkpoint(ckpt_path), str(ckpt_path))
        if hasattr(backbone, "load_state_dict_filtered"):
            backbone.load_state_dict_filtered(state, strict=True, source=str(ckpt_path))
        else:
            try:
                backbone.load_state_dict(state)
            except RuntimeError as e:
                raise ValueError(f"{ckpt_path}: does not fit {spec['class_path']}: {e}") from None
    return backbone.eval()


@dataclass
class FeatureExtractor:
    """A backbone and the preprocessing its clips need.

    Attributes:
        backbone: called as ``backbone(video, output="pooled") -> [b, C]``.
        frames_per_window: frames per clip the backbone takes.
        size: crop side in pixels.
        mean: per-channel mean of ``x / 255``.
        std: per-channel standard deviation of ``x / 255``.
        random_weights: the backbone loaded no weights (recorded in ``extraction.json``).
    """

    backbone: nn.Module
    frames_per_window: int
    size: int
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    random_weights: bool = False

    @classmethod
    def from_recipe(
        cls,
        config: str | Path,
        ckpt_path: str | Path | None,
        frames_per_window: int | None = None,
        size: int | None = None,
        random_weights: bool = False,
    ) -> FeatureExtractor:
        """Backbone from the recipe and checkpoint; clip length, size, mean and std from the recipe.

        Clip length and size default to the data module's ``num_frames`` / ``size``, else the
        backbone's ``num_frames`` / ``img_size``.

        Args:
            config: the recipe.
            ckpt_path: checkpoint to load; None keeps what the recipe's backbone loads itself.
            frames_per_window: clip length override.
            size: crop side override.
            random_weights: allow a backbone that loads no weights at all (features of a random
                network, e.g. a baseline); they are drawn from a fixed seed.

        Raises:
            ValueError: no weights to load and not ``random_weights``, or both a checkpoint and
                ``random_weights``.
        """
        recipe = read_recipe(config)
        spec = ((recipe.get("model") or {}).get("init_args") or {}).get("backbone") or {}
        own_weights = isinstance(spec, dict) and bool((spec.get("init_args") or {}).get("checkpoint_path"))
        if random_weights and (ckpt_path is not None or own_weights):
            raise ValueError("--random-weights: the backbone loads a checkpoint; drop one of the two")
        if not random_weights and ckpt_path is None and not own_weights:
            raise ValueError(
                f"{config}: no --ckpt_path and the recipe's backbone loads no checkpoint_path: the features "
                "would come from random weights; pass --random-weights if that is what you want"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            backbone = load_backbone(recipe, ckpt_path)
        data = (recipe.get("data") or {}).get("init_args") or {}
        img_size = getattr(backbone, "img_size", None)
        frames_per_window = (
            frames_per_window or data.get("num_frames") or getattr(backbone, "num_frames", None)
        )
        size = size or data.get("size") or (img_size[0] if isinstance(img_size, tuple) else img_size)
        if not frames_per_window or not size:
            raise ValueError(
                f"{config}: cannot tell the clip length and size the backbone takes; pass "
                "--frames_per_window and --size"
            )
        return cls(
            backbone,
            int(frames_per_window),
            int(size),
            tuple(data.get("mean") or IMAGENET_MEAN),
            tuple(data.get("std") or IMAGENET_STD),
            random_weights,
        )

    @property
    def feature_dim(self) -> int | None:
        """C of the features, when the backbone states its width."""
        return getattr(self.backbone, "embed_dim", None)


# -- the stages of one video (both engines run these) --------------------------------------------


@dataclass(frozen=True)
class _Windows:
    """CPU stage: the decoded windows of a video, ``batch_size`` windows per row (so a long
    video is never whole in memory). An unreadable video: an ``error`` row, the last, possibly
    after good ones when decoding fails part way (the video then fails whole)."""

    window: int
    stride: int
    frames_per_window: int
    batch_size: int
    short_side: int
    fps: float | None
    backend: str

    def _indices(self, entry: VideoEntry, length: int, source_fps: float) -> np.ndarray:
        first, last = 0, length  # source frames [first, last)
        if entry.start is not None:
            first = min(length - 1, int(round(entry.start * source_fps)))
        if entry.end is not None:
            last = max(first + 1, min(length, int(round(entry.end * source_fps))))
        rate = self.fps or source_fps
        timeline = last - first if self.fps is None else max(1, int((last - first) / source_fps * rate))
        indices = window_frame_indices(timeline, self.window, self.stride, self.frames_per_window)
        if self.fps is not None:
            indices = np.floor(indices * source_fps / rate).astype(np.int64)
        return np.minimum(first + indices, last - 1)

    def __call__(self, item: tuple[str, VideoEntry]) -> Iterator[dict[str, Any]]:
        key, entry = item
        try:
            with open_video(entry.path, self.backend, resize=self.short_side) as reader:
                indices = self._indices(entry, len(reader), reader.fps)
                for first in range(0, len(indices), self.batch_size):
                    chunk = indices[first : first + self.batch_size]
                    frames = reader.get_frames(chunk.reshape(-1))
                    frames = rearrange(frames, "(b f) h w c -> b f h w c", f=chunk.shape[1])
                    yield {"key": key, "frames": frames, "fps": reader.fps}
        except (VideoDecodeError, IndexError) as e:
            yield {
                "key": key,
                "error": e.reason if isinstance(e, VideoDecodeError) else str(e),
                "path": str(entry.path),
            }


class _EmbedWindows:
    """Model stage: the backbone's pooled feature of every window of a row (float32, on the CPU).

    Built once per model worker (:class:`~vidlit.engines.partitions.Pipeline`'s ``model``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: str | torch.device,
        precision: str,
    ):
        self.device = resolve_device(device)
        self.backbone = backbone.to(self.device).eval()
        self.transform = VideoBatchTransform(size, train=False, mean=mean, std=std)
        self.autocast = {"bf16": torch.bfloat16, "16": torch.float16}.get(precision)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if "error" in row:
            return row
        clips = self.transform(row["frames"].to(self.device))  # b c f s s
        with torch.autocast(
            self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None
        ):
            features = self.backbone(clips, output="pooled")
        return {"key": row["key"], "features": features.float().cpu(), "fps": row["fps"]}


# -- writing --------------------------------------------------------------------------------------


def feature_bytes(features: Tensor, file_format: str) -> bytes:
    """``[T, C]`` features as the bytes of a ``.pt`` or ``.npy`` file."""
    buffer = io.BytesIO()
    if file_format == "npy":
        np.save(buffer, features.numpy(), allow_pickle=False)
    else:
        torch.save(features, buffer)
    return buffer.getvalue()


def save_features_atomic(features: Tensor, path: Path) -> Path:
    """Write ``[T, C]`` features as ``.pt`` or ``.npy`` through a temporary file, fsync and rename."""
    return write_atomic(feature_bytes(features, path.suffix.lstrip(".")), path)


@dataclass
class ExtractSummary:
    """What one extraction run did.

    Attributes:
        written: keys whose feature files this run wrote.
        existing: keys skipped because their file already existed (resume).
        failed: ``(video path, reason)`` of unreadable videos.
    """

    written: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{len(self.written)} feature files written, {len(self.existing)} already present, "
            f"{len(self.failed)} unreadable videos"
        )


def extract_features(
    extractor: FeatureExtractor,
    videos: str | Path | Sequence[VideoEntry],
    out: str | Path,
    window: int = 16,
    stride: int = 16,
    batch_size: int = 16,
    fps: float | None = None,
    short_side: int | None = None,
    file_format: str = "pt",
    backend: str = "auto",
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    precision: str = "32",
    strict: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    videos_per_partition: int = 64,
    engine: str = "local",
    ray: RayOptions | None = None,
) -> ExtractSummary:
    """Extract sliding-window features of every video of a list (see the module docstring).

    Args:
        extractor: backbone and preprocessing.
        videos: a video list (CSV / JSONL, :func:`~vidlit.data.lists.read_video_list`) or its rows.
        out: feature folder (created): a local path or any fsspec URL (``s3://bucket/features``).
        window: frames per window (Ego4D SlowFast features: 32).
        stride: frames between windows (Ego4D: 16 at 30 fps).
        batch_size: windows per backbone forward pass.
        fps: resample every video's timeline to this rate first; None uses each video's own.
        short_side: decode-time resize of the short side; defaults to ``extractor.size``.
        file_format: ``"pt"`` or ``"npy"``.
        backend: video backend for :func:`~vidlit.data.video.open_video`.
        num_workers: DataLoader processes decoding videos (0: this process; local engine).
        device: where the backbone runs (``"auto"``: CUDA when available; on Ray, in each actor).
        precision: ``"32"``, ``"bf16"`` or ``"16"`` (autocast); features are saved as float32.
        strict: raise on the first unreadable video instead of skipping it.
        progress: show a progress bar (``rich``).
        overwrite: delete the folder's feature files, markers and ``extraction.json`` first,
            instead of refusing a folder extracted with other settings or weights.
        videos_per_partition: videos per partition: once all of partition ``p``'s feature files
            are written, ``partitions/part-{p:06d}.json`` marks it done.
        engine: ``"local"`` (this process) or ``"ray"`` (Ray Data: decoding in CPU tasks, the
            backbone in a pool of actors); both write the same files.
        ray: the Ray cluster address and pool sizes (``engine="ray"``).

    Returns:
        The run's :class:`ExtractSummary`.

    Raises:
        ValueError: bad settings, two rows that would write the same feature file, or an output
            folder whose ``extraction.json`` records other settings or weights (or that holds
            feature files and no record).
        VideoDecodeError: an unreadable video, when ``strict``.
    """
    if file_format not in FORMATS:
        raise ValueError(f"file_format must be one of {FORMATS}, got {file_format!r}")
    if precision not in ("32", "bf16", "16"):
        raise ValueError(f"precision must be '32', 'bf16' or '16', got {precision!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if batch_size < 1 or window < 1 or stride < 1:
        raise ValueError(
            f"batch_size, window and stride must be positive, got {batch_size}, {window}, {stride}"
        )
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    source = str(videos) if isinstance(videos, (str, Path)) else "video list"
    entries = read_video_list(videos) if isinstance(videos, (str, Path)) else list(videos)
    if not entries:  # else an empty feature folder and a summary of zeros, as if it had worked
        raise ValueError(f"{source}: the list names no videos")
    folder = OutputFolder(out)
    summary = ExtractSummary()
    seen: dict[str, VideoEntry] = {}
    for entry in entries:
        key = feature_key(entry)
        if key in seen:
            raise ValueError(
                f"{source}:{entry.line}: {entry.path} and line {seen[key].line} ({seen[key].path}) "
                f"would both write {key}.{file_format}; feature files are named by the video's file name"
            )
        seen[key] = entry
        # a name from the list becomes an output path: it must stay inside the folder
        confined_path(folder.url, f"{key}.{file_format}", f"{source}:{entry.line}")
    folder.makedirs()
    settings = extraction_settings(extractor, window, stride, fps, short_side, file_format)
    # one listing serves the settings check and the resume (on an object store, each is a request)
    features = [name for name in folder.list() if Path(name).suffix in FEATURE_SUFFIXES]
    record = _prepare_folder(folder, features, settings, overwrite)
    record = {
        **settings,
        "random_weights": extractor.random_weights,
        "source_fps": record.get("source_fps", []),
    }
    folder.write_json(EXTRACTION_RECORD, record)  # before the first feature file
    folder.makedirs(MARKERS)
    present = set() if overwrite else {Path(name).stem for name in features}  # --overwrite deleted them
    partitions = split_partitions(list(seen.items()), list(seen), videos_per_partition)

    def complete(partition: Partition, marker: dict[str, Any]) -> bool:
        return not marker.get("failed") and all(key in present for key in partition.names)

    todo, _ = pending_partitions(folder, partitions, complete)
    # inside a partition to redo, only the missing feature files are made
    todo = [replace(p, items=tuple((key, e) for key, e in p.items if key not in present)) for p in todo]
    remaining = {key for p in todo for key, _ in p.items}
    summary.existing = [key for key in seen if key not in remaining]
    if summary.existing:
        log.info(
            "%s: %d of %d videos already have features; skipping them",
            out,
            len(summary.existing),
            len(entries),
        )
    pipeline = Pipeline(
        decode=_Windows(
            window,
            stride,
            extractor.frames_per_window,
            batch_size,
            short_side or extractor.size,
            fps,
            backend,
        ),
        model=partial(
            _EmbedWindows,
            extractor.backbone,
            extractor.size,
            tuple(extractor.mean),
            tuple(extractor.std),
            device if engine == "ray" else resolve_device(device),
            precision,
        ),
    )
    rates = set(record["source_fps"])
    failed: dict[int, dict[str, str]] = {}
    with progress_bar("extracting features", sum(len(p.items) for p in todo), progress) as advance:

        def on_item(partition: Partition, position: int, rows: list[dict[str, Any]]) -> None:
            key, entry = partition.items[position]
            advance()
            # an error row may follow good ones (a video that fails part way): the whole video fails
            error = next((row for row in rows if "error" in row), None)
            if error is not None:
                if strict:
                    raise VideoDecodeError(
                        error["path"], f"{error['error']} (strict: stop at unreadable videos)"
                    )
                log.warning("skipping unreadable video %s: %s", error["path"], error["error"])
                summary.failed.append((error["path"], error["error"]))
                failed.setdefault(partition.index, {})[key] = error["error"]
                return
            rates.add(round(float(rows[0]["fps"]), 6))
            sequence = torch.cat([row["features"] for row in rows])  # t c
            folder.write(f"{key}.{file_format}", feature_bytes(sequence, file_format))
            summary.written.append(key)

        def on_partition(partition: Partition, results: list[None]) -> None:
            marker = {
                "partition": partition.index,
                "items": partition.marker_items,
                "failed": failed.pop(partition.index, {}),
            }
            folder.write_json(partition.marker, marker)

        if engine == "ray":
            from vidlit.engines.ray_data import run_ray

            run_ray(todo, pipeline, on_item, on_partition, ray)
        else:
            run_local(todo, pipeline, on_item, on_partition, num_workers=num_workers)
    summary.written.sort()
    # the source videos' frame rates: with fps None the timeline is each video's own
    folder.write_json(EXTRACTION_RECORD, {**record, "source_fps": sorted(rates)})
    return summary


def extraction_settings(
    extractor: FeatureExtractor,
    window: int,
    stride: int,
    fps: float | None,
    short_side: int | None = None,
    file_format: str = "pt",
) -> dict[str, Any]:
    """What defines an extraction's features: the keys ``extraction.json`` records and compares.

    ``weights_sha256`` is :func:`~vidlit.core.fingerprint.weights_fingerprint` of the backbone.
    """
    return {
        "feature_window": window,
        "feature_stride": stride,
        "fps": fps,
        "frames_per_window": extractor.frames_per_window,
        "size": extractor.size,
        "short_side": short_side or extractor.size,
        "mean": [float(m) for m in extractor.mean],
        "std": [float(s) for s in extractor.std],
        "format": "npy" if file_format == "npy" else "pt",
        "feature_dim": extractor.feature_dim,
        "backbone": type(extractor.backbone).__name__,
        "weights_sha256": weights_fingerprint(extractor.backbone),
    }


def _prepare_folder(
    folder: OutputFolder, features: list[str], settings: dict[str, Any], overwrite: bool
) -> dict[str, Any]:
    """The folder's earlier record when it matches ``settings`` (or is absent); refuse otherwise.

    ``features`` are the feature files in ``folder`` (names as :meth:`OutputFolder.list` gives them).
    """
    if overwrite:
        for name in (*features, *folder.list(MARKERS), EXTRACTION_RECORD):
            folder.remove(name)
        if features:
            log.warning("%s: --overwrite: deleted %d earlier feature files", folder, len(features))
        return {}
    hint = "extract into another folder, or pass --overwrite to delete the old features"
    where = folder.url_of(EXTRACTION_RECORD)
    if folder.exists(EXTRACTION_RECORD):
        old = folder.read_json(EXTRACTION_RECORD, "extraction record")
        if not isinstance(old, dict):
            raise ValueError(f"{where}: expected a JSON object; {hint}")
        changes = settings_changes({k: v for k, v in old.items() if k not in _RECORD_INFO}, settings)
        if changes:
            raise ValueError(
                f"{where}: the features there were extracted otherwise ({'; '.join(changes)}); {hint}"
            )
        return old
    if features:  # named: --overwrite deletes them, and they may be a user's own .pt files
        names = ", ".join(sorted(features)[:3]) + (", ..." if len(features) > 3 else "")
        raise ValueError(
            f"{folder}: holds {len(features)} feature files ({names}) but no {EXTRACTION_RECORD}, so how "
            f"they were made is unknown; {hint}"
        )
    return {}


# -- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``vidlit extract`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="vidlit extract",
        description=(
            "Run a trained backbone over videos in sliding windows and write one [T, C] feature file per "
            "video (<out>/<video file stem>.pt), as the Ego4D features are laid out. Resumable: <out>/"
            "extraction.json records the settings and the weights' SHA-256, and a rerun with other ones "
            "is refused (or --overwrite)."
        ),
    )
    parser.add_argument(
        "--config", required=True, type=Path, help="recipe whose model.init_args.backbone to build"
    )
    parser.add_argument(
        "--ckpt_path",
        type=Path,
        default=None,
        help="Lightning checkpoint of the recipe's model, or a backbone.pt",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        dest="random_weights",
        help="extract with the recipe's randomly initialized backbone (fixed seed): no checkpoint needed",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the folder's feature files and extraction.json first (else a folder extracted with "
        "other settings or weights is refused)",
    )
    parser.add_argument(
        "--videos", required=True, type=Path, help="video list: CSV with a 'path' column, or JSONL"
    )
    parser.add_argument("--out", required=True, help="feature folder: a path or an fsspec URL (s3://...)")
    parser.add_argument("--window", type=int, default=16, help="frames per window (default 16)")
    parser.add_argument("--stride", type=int, default=16, help="frames between windows (default 16)")
    parser.add_argument("--fps", type=float, default=None, help="resample every video to this rate first")
    parser.add_argument(
        "--frames_per_window", type=int, default=None, help="default: the recipe's num_frames"
    )
    parser.add_argument("--size", type=int, default=None, help="crop side; default: the recipe's size")
    parser.add_argument("--batch_size", type=int, default=16, help="windows per forward pass")
    parser.add_argument("--format", choices=FORMATS, default="pt", dest="file_format")
    parser.add_argument("--backend", default="auto", choices=("auto", *BACKENDS))
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (0: this one)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="32", choices=("32", "bf16", "16"))
    parser.add_argument("--strict", action="store_true", help="stop at the first unreadable video")
    add_engine_arguments(parser, 64, "its feature files")
    return parser


def extract_main(args: list[str]) -> ExtractSummary:
    """``vidlit extract ...``: parse ``args``, extract, print the summary (unreadable videos listed)."""
    from vidlit.checkpoint_io import remove_stale_temporaries

    parser = build_parser()
    options = parser.parse_args(args)
    if Path(options.out).is_file():  # else a FileExistsError traceback when the folder is made
        parser.error(f"{options.out}: is a file; --out is the folder to write the features into")
    out = OutputFolder(options.out)
    for path in remove_stale_temporaries(out.local_path()) if out.local else ():
        # a killed run's half-written feature files
        print(f"vidlit extract: removed {path}, a temporary file of a killed run")
    device = resolve_device(options.device)
    try:
        extractor = FeatureExtractor.from_recipe(
            options.config,
            options.ckpt_path,
            options.frames_per_window,
            options.size,
            random_weights=options.random_weights,
        )
        summary = extract_features(
            extractor,
            options.videos,
            options.out,
            window=options.window,
            stride=options.stride,
            batch_size=options.batch_size,
            fps=options.fps,
            file_format=options.file_format,
            backend=options.backend,
            num_workers=options.workers,
            device=device,
            precision=options.precision,
            strict=options.strict,
            overwrite=options.overwrite,
            videos_per_partition=options.videos_per_partition,
            engine=options.engine,
            ray=ray_options(options),
        )
    except VideoDecodeError as e:  # --strict: one line naming the video, exit status 1
        sys.stderr.write(f"vidlit extract: error: {e}\n")
        sys.exit(1)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    print(f"{options.out}: {summary}")
    for path, reason in summary.failed:
        print(f"  skipped unreadable video {path}: {reason}")
    if summary.failed and not summary.written and not summary.existing:  # a script must not go on
        sys.stderr.write(f"vidlit extract: error: no video of {options.videos} could be read\n")
        sys.exit(1)
    return summary
