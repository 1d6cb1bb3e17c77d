"""The synthetic clip renderer and video writer behind every ``vidlit data synth`` dataset."""

from __future__ import annotations

import hashlib

import av
import numpy as np
import pytest
import torch

from vidlit.data.synth.videos import (
    COLORS,
    preferred_video_codec,
    random_background,
    render_clip,
    shape_mask,
    write_video,
)
from vidlit.data.video import open_video


def _digest(frames: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()[:16]


def test_render_clip_reproduces_the_released_synthetic_data():
    # digests of the frames, and the next draw of the generator, that vidlit 0.x's two renderers
    # (synth/videos.py and synth/internvid.py's own copy) produced for these seeds: the shared
    # renderer keeps every draw in the same order, so the generated datasets stay byte-identical
    rng = np.random.default_rng(7)
    frames = render_clip(rng, "circle", "green", "up", num_frames=6, size=32)
    assert (_digest(frames), int(rng.integers(1 << 30))) == ("99258cac1580164a", 98660584)

    rng = np.random.default_rng(7)
    background = random_background(rng, 32)  # internvid: one background per source video
    frames = render_clip(rng, "triangle", "blue", "left", 5, 32, background)
    assert (_digest(frames), int(rng.integers(1 << 30))) == ("9ec721bda8c9ed3c", 3143726)


def test_render_clip_draws_on_the_given_background():
    rng = np.random.default_rng(0)
    background = random_background(rng, 32)
    assert background.shape == (32, 32, 3) and background.dtype == np.int16
    assert 8 <= background.min() and background.max() < 40
    frames = render_clip(rng, "square", "red", "right", 4, 32, background)
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8
    columns = []
    for frame in frames:
        shape = np.all(frame == COLORS["red"], axis=-1)
        columns.append(np.nonzero(shape)[1].mean())
        # elsewhere: the background plus noise in [-4, 4]
        assert np.abs(frame[~shape].astype(int) - background[~shape]).max() <= 4
    assert np.all(np.diff(columns) > 0)  # the square moves right
    with pytest.raises(ValueError, match="unknown shape"):
        shape_mask("hexagon", 8, (4, 4), 2)


def test_write_video_keyframes_b_frames_and_readers_agree(tmp_path):
    # hard cuts every 5 frames: an encoder left to detect scene cuts would add keyframes there;
    # the synthetic videos promise one every gop_size frames and B-frames (bench_decode relies on it)
    frames = np.concatenate([np.full((5, 32, 64, 3), level, np.uint8) for level in (0, 250, 0, 250, 0, 250)])
    frames[:, 8:16, 8:16] = np.arange(30, dtype=np.uint8)[:, None, None, None] * 8
    path = tmp_path / "cuts.mp4"
    assert write_video(path, frames, fps=10, gop_size=8) == preferred_video_codec()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.dts is not None]
        step = float(1 / (stream.average_rate * stream.time_base))
        keyframes = sorted(round(p.pts / step) for p in packets if p.is_keyframe)
        reordered = any(a.pts > b.pts for a, b in zip(packets, packets[1:]))
        assert stream.codec_context.name == "h264" or preferred_video_codec() != "libx264"
    assert len(packets) == 30 and keyframes == [0, 8, 16, 24]
    assert reordered or preferred_video_codec() != "libx264"  # B-frames: decode order != display order
    with open_video(path, "decord") as d, open_video(path, "pyav") as a:
        assert len(d) == len(a) == 30 and d.fps == a.fps == pytest.approx(10)
        decoded = a.get_frames(range(30))
        assert torch.equal(d.get_frames(range(30)), decoded)
    assert (decoded.float() - torch.from_numpy(frames).float()).abs().mean() < 2
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 31, 32, 3), np.uint8))
