"""``vidlit serve --demo``: a small video-text model and a two-shape video, made in about a minute on a CPU.

The demo writes an InternVid-layout dataset of short clips, each one shape (a red square, a blue
circle or a green triangle) crossing a dark frame, captioned with its colour and shape, and trains
a tiny :class:`~vidlit.tasks.video_text.VideoTextPretrain` (``vit_test`` at 64 px, an 8 x 8 token
grid; the offline MiniLM text tower, frozen) on it with ``vidlit fit``: a real run whose
``config.yaml`` and ``last.ckpt`` the server loads like any other. Then it writes ``two_shapes.mp4``,
a red square moving right along the top and a blue circle moving left along the bottom: click
one shape, rank "a red square" / "a blue circle", click the other and the ranking flips.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from vidlit.data.synth.videos import COLORS, random_background, render_clip, shape_mask, write_video

__all__ = ["DEMO_CAPTIONS", "demo_config", "ensure_demo", "write_demo_data", "write_two_shapes_video"]

SIZE = 64
FPS = 10
DEMO_CAPTIONS = {
    ("red", "square"): "a red square",
    ("blue", "circle"): "a blue circle",
    ("green", "triangle"): "a green triangle",
}


def write_demo_data(root: str | Path, num_clips: int = 48, seed: int = 0) -> Path:
    """InternVid layout: ``videos/<id>.mp4`` (one shape per clip) and ``train.jsonl`` / ``val.jsonl``."""
    root = Path(root)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    combos = list(DEMO_CAPTIONS)
    motions = ("left", "right", "up", "down")
    lines = {"train": [], "val": []}
    for i in range(num_clips):
        color, shape = combos[i % len(combos)]
        frames = render_clip(rng, shape, color, motions[(i // len(combos)) % 4], 16, SIZE)
        youtube_id = f"demo{i:04d}"
        write_video(root / "videos" / f"{youtube_id}.mp4", frames, fps=FPS)
        split = "val" if i >= num_clips - len(combos) else "train"
        lines[split].append(
            {
                "YoutubeID": youtube_id,
                "Start_timestamp": "00:00:00.000",
                "End_timestamp": "00:00:01.600",
                "Caption": DEMO_CAPTIONS[color, shape],
            }
        )
    for split, rows in lines.items():
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def two_shapes_frames(num_frames: int = 24, size: int = SIZE, seed: int = 1) -> np.ndarray:
    """``[t, size, size, 3]`` uint8: a red square moving right (top), a blue circle moving left (bottom)."""
    rng = np.random.default_rng(seed)
    background = random_background(rng, size)
    extent = size / 4
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        along = size * (0.25 + 0.5 * t / max(num_frames - 1, 1))
        frame = background + rng.integers(-4, 5, size=background.shape, dtype=np.int16)
        frame[shape_mask("square", size, (along, size * 0.25), extent)] = COLORS["red"]
        frame[shape_mask("circle", size, (size - along, size * 0.75), extent)] = COLORS["blue"]
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def write_two_shapes_video(path: str | Path, **kwargs) -> Path:
    """Write :func:`two_shapes_frames` as an MP4 (10 fps)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, two_shapes_frames(**kwargs), fps=FPS)
    return path


def demo_config(data: Path, runs: Path, max_epochs: int = 12) -> dict:
    """The ``vidlit fit`` config of the demo model."""
    return {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": max_epochs,
            "accelerator": "cpu",
            "devices": 1,
            "limit_val_batches": 0,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(runs),
            "callbacks": [
                {
                    "class_path": "vidlit.callbacks.ResumableCheckpoint",
                    "init_args": {"save_top_k": 0, "save_last": True},
                }
            ],
        },
        "model": {
            "class_path": "vidlit.tasks.video_text.VideoTextPretrain",
            "init_args": {
                # vit_test's sizes at 64 px: an 8 x 8 token grid per time step
                "backbone": {
                    "class_path": "vidlit.backbones.VideoViT",
                    "init_args": {
                        "embed_dim": 64,
                        "depth": 2,
                        "num_heads": 4,
                        "num_frames": 8,
                        "img_size": SIZE,
                        "patch_size": 8,
                        "tubelet_size": 2,
                    },
                },
                "text": "minilm",
                "freeze_text": True,
                "proj_dim": 64,
                # few kept tokens in training: a region query encodes only a handful of tokens
                "drop_ratio": 0.8,
                "optimizer": {
                    "class_path": "torch.optim.AdamW",
                    "init_args": {"lr": 2.0e-3, "weight_decay": 0.05},
                },
                "scheduler": None,
            },
        },
        "data": {
            "class_path": "vidlit.data.internvid.InternVidDataModule",
            "init_args": {
                "root": str(data),
                "num_frames": 8,
                "size": SIZE,
                "short_side": SIZE,
                "crop_scale": [0.8, 1.0],
                "batch_size": 16,
                "num_workers": 0,
            },
        },
    }


def ensure_demo(folder: str | Path, max_epochs: int = 12) -> tuple[Path, Path]:
    """Train the demo model into ``folder`` unless it is there; return ``(checkpoint, video)``."""
    from vidlit.cli import main

    folder = Path(folder)
    ckpt = folder / "runs" / "version_0" / "checkpoints" / "last.ckpt"
    video = folder / "videos" / "two_shapes.mp4"
    if not video.is_file():
        write_two_shapes_video(video)
    if ckpt.is_file():
        return ckpt, video
    data = folder / "data"
    if not (data / "train.jsonl").is_file():
        write_demo_data(data)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "demo_fit.yaml"
    config.write_text(yaml.safe_dump(demo_config(data, folder / "runs", max_epochs)))
    print(f"training the demo video-text model into {folder / 'runs'} (about a minute on a CPU)")
    main(["fit", "--config", str(config)])
    if not ckpt.is_file():
        raise RuntimeError(f"the demo run wrote no {ckpt}")
    return ckpt, video
