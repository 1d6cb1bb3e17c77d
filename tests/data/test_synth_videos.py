"""The synthetic clip renderer and video writer behind every ``vidlit data synth`` dataset."""

from __future__ import annotations

import hashlib

import av
import numpy as np
import pytest
import torch

from vidlit.data.synth.videos import (
    COLORS,
    MOTIONS,
    preferred_video_codec,
    random_background,
    random_texture,
    render_clip,
    render_pan_clip,
    shape_mask,
    write_synthetic_videos,
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


def _best_shift(first: np.ndarray, last: np.ndarray, reach: int) -> tuple[int, int]:
    """The ``(dx, dy)`` in pixels that best carries ``first``'s content onto ``last`` (least squares)."""
    size = first.shape[0]
    errors = {}
    for dx in range(-reach, reach + 1):
        for dy in range(-reach, reach + 1):
            # last[y, x] == first[y - dy, x - dx] where both are inside the frame
            a = last[max(dy, 0) : size + min(dy, 0), max(dx, 0) : size + min(dx, 0)]
            b = first[max(-dy, 0) : size + min(-dy, 0), max(-dx, 0) : size + min(-dx, 0)]
            errors[dx, dy] = float(np.mean((a.astype(float) - b) ** 2))
    return min(errors, key=errors.get)


@pytest.mark.parametrize("motion", sorted(MOTIONS))
def test_a_pan_moves_the_whole_textured_frame_in_its_direction(motion):
    rng = np.random.default_rng(3)
    frames = render_pan_clip(rng, motion, num_frames=9, size=32, travel=0.5)
    assert frames.shape == (9, 32, 32, 3) and frames.dtype == np.uint8
    dx, dy = MOTIONS[motion]
    # 16 px over 8 steps: 2 px a frame, the same texture (up to the per-frame noise in [-2, 2])
    for t in range(8):
        assert _best_shift(frames[t], frames[t + 1], 3) == (2 * dx, 2 * dy)
    assert _best_shift(frames[0], frames[-1], 17) == (16 * dx, 16 * dy)
    inside = frames[-1][max(16 * dy, 0) : 32 + min(16 * dy, 0), max(16 * dx, 0) : 32 + min(16 * dx, 0)]
    carried = frames[0][max(-16 * dy, 0) : 32 + min(-16 * dy, 0), max(-16 * dx, 0) : 32 + min(-16 * dx, 0)]
    assert np.abs(inside.astype(int) - carried).max() <= 4
    # the same draw renders the same clip
    assert np.array_equal(render_pan_clip(np.random.default_rng(3), motion, 9, 32), frames)


def test_random_texture_is_smooth_colour_over_the_full_range():
    texture = random_texture(np.random.default_rng(0), 48, cell=8)
    assert texture.shape == (48, 48, 3) and texture.dtype == np.int16
    assert texture.min() == 20 and texture.max() == 220
    # colour: the channels differ; smooth: neighbours differ far less than random pixels do
    assert np.abs(texture[..., 0] - texture[..., 1]).mean() > 20
    neighbours = np.abs(np.diff(texture, axis=1)).mean()
    shuffled = np.random.default_rng(1).permutation(texture.reshape(-1, 3))
    assert neighbours < 0.3 * np.abs(np.diff(shuffled, axis=0)).mean()


def test_write_pans_labels_by_direction_and_refuses_other_labels(tmp_path):
    records = write_synthetic_videos(tmp_path / "pans", 4, num_frames=4, size=32, scene="pans")
    assert [r["label"] for r in records] == list(MOTIONS)
    assert all(r["shape"] is None and r["color"] is None for r in records)
    assert records[0]["caption"] == "a coloured texture moving left"
    assert (tmp_path / "pans" / "classes.txt").read_text().split() == list(MOTIONS)
    with open_video(records[2]["path"]) as video:
        assert len(video) == 4
    with pytest.raises(ValueError, match="label_by must be 'motion'"):
        write_synthetic_videos(tmp_path / "x", 4, scene="pans", label_by="shape")
    with pytest.raises(ValueError, match="audio off"):
        write_synthetic_videos(tmp_path / "x", 4, scene="pans", audio=True)
    with pytest.raises(ValueError, match="scene must be one of"):
        write_synthetic_videos(tmp_path / "x", 4, scene="pan")


def test_a_video_list_module_writes_the_pans_sample_where_its_root_is_missing(tmp_path):
    from vidlit.data import VideoListDataModule

    module = VideoListDataModule(
        root=tmp_path / "pans", synthetic="pans", num_frames=4, size=32, short_side=32, batch_size=4
    )
    assert (tmp_path / "pans" / "classes.txt").read_text().split() == list(MOTIONS)
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["video"].shape == (4, 4, 32, 32, 3)
    # a texture over levels 20-220 fills the frame: no dark background
    assert 60 < batch["video"].float().mean() < 180


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
