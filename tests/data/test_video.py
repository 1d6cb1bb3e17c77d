"""VideoReader backends, their errors, read_audio, and the synthetic video writer."""

from __future__ import annotations

import csv
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from vidlit.data import video as video_module
from vidlit.data.synth import videos as synth
from vidlit.data.video import (
    VideoBackendUnavailable,
    VideoDecodeError,
    VideoNotFoundError,
    backend_available,
    open_video,
    output_size,
    read_audio,
)

BACKENDS = ["decord", "pyav", *(["torchcodec"] if backend_available("torchcodec") else [])]


def _bright_mask(frame: torch.Tensor) -> torch.Tensor:
    """Pixels of the shape: the background never exceeds ~45, every shape colour has a channel > 200."""
    return frame.max(dim=-1).values > 120


# --- readers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_frame_count_fps_duration(synthetic_videos, backend):
    _, records = synthetic_videos
    for record in records[:3]:
        with open_video(record["path"], backend) as reader:
            assert reader.backend == backend
            assert len(reader) == record["num_frames"]
            assert reader.fps == pytest.approx(record["fps"])
            assert reader.duration == pytest.approx(record["num_frames"] / record["fps"])


def test_backends_decode_the_same_frames(synthetic_videos):
    _, records = synthetic_videos
    for record in records[:4]:
        with open_video(record["path"], "decord") as d, open_video(record["path"], "pyav") as a:
            assert len(d) == len(a)
            indices = list(range(len(d)))
            x, y = d.get_frames(indices), a.get_frames(indices)
            assert x.dtype == y.dtype == torch.uint8
            assert x.shape == y.shape == (len(d), 64, 64, 3)
            assert (x.float() - y.float()).abs().mean() < 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_access_matches_sequential_decoding(video_path, backend):
    # unsorted, repeated and backward requests on one reader must all match a full decode
    with open_video(video_path, backend) as reader:
        full = reader.get_frames(range(len(reader)))
        rng = np.random.default_rng(0)
        for _ in range(25):
            indices = rng.integers(0, len(reader), size=rng.integers(1, 10))
            assert torch.equal(reader.get_frames(indices), full[indices])
        assert torch.equal(reader.get_frames([5, 5, 2, 23, 0]), full[[5, 5, 2, 23, 0]])
        assert torch.equal(reader.get_frames(torch.tensor([9, 1])), full[[9, 1]])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("resize", "expected"), [(32, (32, 32)), ((40, 56), (40, 56)), ((48, 48), (48, 48))])
def test_resize_at_decode(video_path, backend, resize, expected):
    # (48, 48) hits decord 0.6's broken widths (it keeps the source width), handled by a fallback
    with open_video(video_path, backend, resize=resize) as reader:
        frames = reader.get_frames([0, 7, 7, 3])
    assert frames.shape == (4, *expected, 3)
    with open_video(video_path, "pyav", resize=resize) as reference:
        assert (frames.float() - reference.get_frames([0, 7, 7, 3]).float()).abs().mean() < 3


def test_decord_short_side_resize_probes_each_file_once(tmp_path, monkeypatch):
    """decord has no size query: the stored size is read once per file, not on every open."""
    import av

    opened = []
    real_open = av.open

    def counting_open(path, *args, **kwargs):
        if kwargs.get("mode", "r") == "r":  # reads only, not the writer's
            opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    video_module._header_facts.cache_clear()
    path = tmp_path / "clip.mp4"
    synth.write_video(
        path, np.random.default_rng(0).integers(0, 255, (12, 48, 80, 3), dtype=np.uint8), fps=10
    )
    for _ in range(3):  # three items of one video, as a dataset opens it
        with open_video(path, "decord", resize=24) as reader:
            frames = reader.get_frames([0, 5, 11])
    assert opened == [str(path)]
    assert frames.shape == (3, 24, 40, 3) and video_module.stored_size(path) == (48, 80)
    with open_video(path, "pyav", resize=24) as reference:
        assert (frames.float() - reference.get_frames([0, 5, 11]).float()).abs().mean() < 3
    # a file rewritten in place is probed again
    synth.write_video(path, np.zeros((4, 64, 32, 3), dtype=np.uint8), fps=10)
    with open_video(path, "decord", resize=16) as reader:
        assert reader.get_frames([1]).shape == (1, 32, 16, 3)
    assert len(opened) == 3  # first probe, the pyav reference reader, the rewritten file's probe


def test_output_size():
    assert output_size(240, 320, 128) == (128, 171)
    assert output_size(320, 240, 128) == (171, 128)
    assert output_size(240, 320, (100, 50)) == (100, 50)
    assert output_size(240, 320, None) == (240, 320)
    with pytest.raises(ValueError):
        output_size(240, 320, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_indices(video_path, backend):
    with open_video(video_path, backend) as reader:
        n = len(reader)
        for bad in ([n], [0, -1], [n + 100]):
            with pytest.raises(IndexError, match="out of range") as info:
                reader.get_frames(bad)
            assert video_path in str(info.value)
        with pytest.raises(ValueError, match="non-empty"):
            reader.get_frames([])
        with pytest.raises(ValueError, match="integers"):
            reader.get_frames([0.5, 1.0])
    with pytest.raises(ValueError, match="closed"):
        reader.get_frames([0])


@pytest.mark.parametrize("backend", [*BACKENDS, "auto"])
@pytest.mark.parametrize("kind", ["zero_byte", "random_bytes", "truncated", "truncated_faststart"])
def test_corrupt_files_raise_decode_error_naming_the_file(corrupt_videos, backend, kind):
    # truncated_faststart opens in FFmpeg (its index is intact) but both readers refuse it at
    # open: decord fails its packet scan, PyAV's scan finds a corrupt packet / missing frames
    path = corrupt_videos[kind]
    with pytest.raises(VideoDecodeError) as info:
        reader = open_video(path, backend)
        if backend == "torchcodec" and kind == "truncated_faststart":
            # torchcodec trusts the intact index at open; the missing frames raise when asked for
            reader.get_frames([len(reader) - 1])
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    assert not isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("backend", BACKENDS)
def test_damaged_frames_raise_when_requested(corrupt_videos, backend):
    # the file opens; frames whose packets are damaged raise on request, the rest still decode
    # (decord's threaded decoder reads ahead by a timing-dependent amount, so under load it can
    # fail even on frames before the damage: only PyAV is held to decoding the good frames)
    path = corrupt_videos["damaged_packets"]
    with open_video(path, backend) as reader:
        assert len(reader) == 32
        good = reader.get_frames([0, 5, 9]) if backend == "pyav" else None
        with pytest.raises(VideoDecodeError) as info:
            reader.get_frames([3, 20])
        assert str(path) in str(info.value)
        assert "github/workspace" not in info.value.reason  # decord's source locations are cut
        if good is not None:
            assert torch.equal(reader.get_frames([0, 5, 9]), good)  # the reader recovers


@pytest.mark.parametrize("backend", [*BACKENDS, "auto", "torchcodec"])
def test_missing_file(tmp_path, backend):
    # checked before the backend is imported, so this holds even without torchcodec
    path = tmp_path / "nope.mp4"
    with pytest.raises(VideoNotFoundError) as info:
        open_video(path, backend)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, VideoDecodeError)
    assert str(path) in str(info.value)


def test_an_open_stats_the_file_once(tmp_path, monkeypatch):
    """The file checks and the header-size cache key share one ``stat`` (it was seven per open)."""
    import pathlib

    path = tmp_path / "clip.mp4"
    synth.write_video(path, np.zeros((4, 48, 80, 3), dtype=np.uint8), fps=10)
    calls = []
    real_stat = pathlib.Path.stat

    def counting_stat(self, *args, **kwargs):
        calls.append(str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "stat", counting_stat)
    video_module._header_facts.cache_clear()
    with open_video(path, "decord", resize=24) as reader:  # a short-side resize probes the header
        assert reader.get_frames([0]).shape == (1, 24, 40, 3)
    assert calls == [str(path)]
    calls.clear()
    assert video_module.stored_size(path) == (48, 80) and calls == [str(path)]


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "not_a_video"])
def test_errors_name_the_path_as_given(tmp_path, monkeypatch, kind):
    """A relative path stays relative in the message (the header probe used to resolve it)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "videos").mkdir()
    if kind == "directory":
        (tmp_path / "videos" / "clip.mp4").mkdir()
    elif kind == "empty":
        (tmp_path / "videos" / "clip.mp4").write_bytes(b"")
    elif kind == "not_a_video":
        (tmp_path / "videos" / "clip.mp4").write_bytes(b"not an mp4 container" * 10)
    error = VideoNotFoundError if kind == "missing" else VideoDecodeError
    reason = {
        "missing": "no such video file",
        "directory": "not a regular file",
        "empty": r"empty file \(0 bytes\)",
        "not_a_video": "cannot open",
    }[kind]
    with pytest.raises(error, match=rf"^videos/clip\.mp4: {reason}") as info:
        video_module.stored_size("videos/clip.mp4")
    assert info.value.path == str(Path("videos/clip.mp4"))
    with pytest.raises(error, match=r"^videos/clip\.mp4: "):
        open_video("videos/clip.mp4")


def test_decode_error_survives_pickling(tmp_path):
    # DataLoader workers send exceptions to the main process by pickling them
    for error in (
        VideoDecodeError(tmp_path / "a.mp4", "bad"),
        VideoNotFoundError(tmp_path / "b.mp4", "gone"),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error) and copy.reason == error.reason


def test_unknown_backend(video_path):
    with pytest.raises(ValueError, match="unknown video backend"):
        open_video(video_path, "opencv")
    with pytest.raises(ValueError, match="unknown video backend"):
        backend_available("opencv")


def test_a_backend_that_is_installed_but_fails_to_import_is_not_available(tmp_path, monkeypatch):
    # torchcodec without FFmpeg's shared libraries: installed (find_spec finds it), import fails
    package = tmp_path / "vidlit_broken_decoder"
    package.mkdir()
    (package / "__init__.py").write_text("raise OSError('libavutil.so: not found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from vidlit.core.imports import importable

    importable = importable.__wrapped__  # uncached: the real import each time
    assert not importable("vidlit_broken_decoder")
    assert not importable("vidlit_no_such_package")
    assert importable("av") and backend_available("pyav")


@pytest.mark.skipif(backend_available("torchcodec"), reason="torchcodec is installed")
def test_torchcodec_missing_is_an_import_error(video_path):
    with pytest.raises(ImportError, match="torchcodec") as info:
        open_video(video_path, "torchcodec")
    assert isinstance(info.value, VideoBackendUnavailable)


def test_torchcodec_adapter(video_path, monkeypatch):
    """The torchcodec reader's fallbacks, against a stand-in decoder (an older torchcodec)."""
    with open_video(video_path, "pyav") as reference:
        full = reference.get_frames(range(len(reference)))
    calls = []

    class FakeVideoDecoder:
        def __init__(self, source, *, dimension_order, num_ffmpeg_threads, seek_mode):
            assert (dimension_order, num_ffmpeg_threads, seek_mode) == ("NHWC", 1, "exact")
            self.metadata = types.SimpleNamespace(num_frames=len(full), average_fps=15.0, height=64, width=64)

        def get_frames_at(self, indices):
            calls.append(list(indices))
            if max(indices) >= 20:
                raise RuntimeError("Requested next frame while there are no more frames left to decode.")
            return types.SimpleNamespace(data=full[indices])

    fake = types.ModuleType("torchcodec")
    fake.decoders = types.ModuleType("torchcodec.decoders")
    fake.decoders.VideoDecoder = FakeVideoDecoder
    monkeypatch.setitem(sys.modules, "torchcodec", fake)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", fake.decoders)
    # a torchcodec without decoder-side transforms: the reader resizes after decoding
    monkeypatch.setitem(sys.modules, "torchcodec.transforms", None)
    with open_video(video_path, "torchcodec") as reader:
        assert len(reader) == len(full) and reader.fps == 15.0
        assert torch.equal(reader.get_frames([7, 2, 7]), full[[7, 2, 7]])
        assert calls[-1] == [2, 7]  # distinct and sorted, reordered afterwards
        with pytest.raises(VideoDecodeError, match="torchcodec cannot decode"):
            reader.get_frames([21])
    with open_video(video_path, "torchcodec", resize=32) as reader:
        assert reader.get_frames([0]).shape == (1, 32, 32, 3)


def test_pyav_reader_uses_the_container_frame_rate(tmp_path):
    path = tmp_path / "fps25.mkv"  # mkv: no frame count in the header, so the scan counts
    frames = np.zeros((10, 32, 32, 3), dtype=np.uint8)
    frames[:, :, :, 0] = np.arange(10)[:, None, None] * 20
    synth.write_video(path, frames, fps=25)
    for backend in BACKENDS:
        with open_video(path, backend) as reader:
            assert len(reader) == 10 and reader.fps == pytest.approx(25)
            red = reader.get_frames([9, 0, 4])[..., 0].float().mean(dim=(1, 2))
            assert torch.allclose(red, torch.tensor([180.0, 0.0, 80.0]), atol=4)


def test_edit_list_hidden_frames(tmp_path, video_path):
    # a file cut with `ffmpeg -ss T -c copy`: PyAV shows only the frames after the cut; decord
    # counts the hidden ones too and mis-seeks, so it refuses the file and "auto" uses PyAV
    path = synth.write_edit_list_video(video_path, tmp_path / "cut.mp4", hidden_frames=3)
    with open_video(video_path, "pyav") as original:
        expected = original.get_frames(range(3, len(original)))
    with open_video(path, "pyav") as reader:
        assert len(reader) == len(expected)
        assert torch.equal(reader.get_frames(range(len(reader))), expected)
        for indices in ([0], [20, 2], [7, 8, 8, 1]):
            assert torch.equal(reader.get_frames(indices), expected[indices])
    with pytest.raises(VideoDecodeError, match="edit list hides 3 frames"):
        open_video(path, "decord")
    with open_video(path) as reader:
        assert reader.backend == "pyav" and len(reader) == len(expected)


# --- audio ---------------------------------------------------------------------------------------


def test_read_audio_tone(synthetic_videos):
    _, records = synthetic_videos
    record = records[0]
    waveform, rate = read_audio(record["path"], sample_rate=16000)
    assert rate == 16000 and waveform.dtype == torch.float32 and waveform.shape[0] == 1
    duration = record["num_frames"] / record["fps"]
    # AAC adds up to a frame (1024 samples) of encoder padding
    assert duration * rate <= waveform.shape[1] <= duration * rate + 2048
    spectrum = torch.fft.rfft(waveform[0]).abs()
    peak_hz = spectrum.argmax().item() * rate / waveform.shape[1]
    assert peak_hz == pytest.approx(synth.TONE_HZ[record["shape"]], rel=0.02)
    resampled, rate = read_audio(record["path"], sample_rate=8000, mono=True)
    assert rate == 8000 and resampled.shape[0] == 1
    assert resampled.shape[1] == pytest.approx(waveform.shape[1] / 2, abs=64)


def test_read_audio_errors(tmp_path, corrupt_videos):
    silent = tmp_path / "silent.mp4"
    synth.write_video(silent, np.zeros((4, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(VideoDecodeError, match="no audio stream"):
        read_audio(silent)
    with pytest.raises(VideoDecodeError, match=str(corrupt_videos["random_bytes"])):
        read_audio(corrupt_videos["random_bytes"])
    with pytest.raises(VideoNotFoundError):
        read_audio(tmp_path / "missing.mp4")


# --- synthetic videos ----------------------------------------------------------------------------


def test_synthetic_list_files(synthetic_videos):
    root, records = synthetic_videos
    with open(root / "videos.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(root / row["path"]).resolve() for row in rows] == [Path(r["path"]) for r in records]
    assert [row["label"] for row in rows] == [r["label"] for r in records]
    classes = (root / "classes.txt").read_text().split()
    assert classes == list(synth.MOTIONS)
    assert all(classes[r["label_index"]] == r["label"] == r["motion"] for r in records)
    assert sorted(r["label"] for r in records) == sorted(list(synth.MOTIONS) * 2)  # balanced
    assert (
        records[0]["caption"]
        == f"a {records[0]['color']} {records[0]['shape']} moving {records[0]['motion']}"
    )
    assert {r["codec"] for r in records} == {synth.preferred_video_codec()}


def test_synthetic_content_matches_labels(synthetic_videos):
    """The shape's colour dominates its pixels, its fill ratio tells the shape, it moves as labelled."""
    _, records = synthetic_videos
    for record in records:
        with open_video(record["path"], "pyav") as reader:
            first, last = reader.get_frames([0, len(reader) - 1])
        mask = _bright_mask(first)
        assert 40 < mask.sum() < 400, record
        colour = first[mask].float().mean(dim=0)
        assert colour.argmax().item() == list(synth.COLORS).index(record["color"]), (record, colour)
        ys, xs = torch.nonzero(mask, as_tuple=True)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        fill = mask.sum().item() / box.item()
        shape = "square" if fill > 0.9 else "circle" if fill > 0.65 else "triangle"
        assert shape == record["shape"], (record, fill)

        def centroid(frame: torch.Tensor) -> torch.Tensor:
            ys, xs = torch.nonzero(_bright_mask(frame), as_tuple=True)
            return torch.stack([xs.float().mean(), ys.float().mean()])

        dx, dy = (centroid(last) - centroid(first)).tolist()
        expected = synth.MOTIONS[record["motion"]]
        # the centre travels half the 64-pixel frame along the motion axis and stays put across it
        assert dx * expected[0] + dy * expected[1] > 24, (record, dx, dy)
        assert abs(dx * expected[1] + dy * expected[0]) < 3, (record, dx, dy)


def test_synthetic_videos_are_a_function_of_the_seed(tmp_path):
    a = synth.write_synthetic_videos(tmp_path / "a", 3, num_frames=8, seed=3, label_by="color")
    b = synth.write_synthetic_videos(tmp_path / "b", 3, num_frames=8, seed=3, label_by="color")
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k != "path"} == {k: v for k, v in y.items() if k != "path"}
        assert Path(x["path"]).read_bytes() == Path(y["path"]).read_bytes()
    assert [r["label"] for r in a] == ["red", "green", "blue"]


def test_synthetic_options(tmp_path):
    records = synth.write_synthetic_videos(
        tmp_path, 4, num_frames=4, size=32, classes=["circle", "square"], label_by="shape"
    )
    assert [r["shape"] for r in records] == ["circle", "square"] * 2
    assert [r["label_index"] for r in records] == [0, 1, 0, 1]
    assert (tmp_path / "classes.txt").read_text() == "circle\nsquare\n"
    with pytest.raises(ValueError, match="label_by"):
        synth.write_synthetic_videos(tmp_path, 1, label_by="size")
    with pytest.raises(ValueError, match="classes"):
        synth.write_synthetic_videos(tmp_path, 1, classes=["diagonal"])
    with pytest.raises(ValueError, match="size"):
        synth.write_synthetic_videos(tmp_path, 1, size=33)


def test_synthetic_mpeg4_fallback(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(synth, "preferred_video_codec", lambda: "mpeg4")
    records = synth.write_synthetic_videos(tmp_path, 1, num_frames=6)
    assert records[0]["codec"] == "mpeg4"
    assert "no libx264" in caplog.text
    with open_video(records[0]["path"], "decord") as d, open_video(records[0]["path"], "pyav") as a:
        assert len(d) == len(a) == 6
        assert torch.equal(d.get_frames([5, 0]), a.get_frames([5, 0]))


def test_auto_backend_falls_back_to_pyav(video_path, monkeypatch):
    monkeypatch.setattr(video_module, "backend_available", lambda name: name == "pyav")
    with open_video(video_path) as reader:
        assert reader.backend == "pyav"


def test_decord_reads_frames_48_pixels_wide_through_pyav(tmp_path):
    # decord 0.6 fails to copy out frames 48 px wide (any height, resized or not): such a valid
    # video must decode (through PyAV), not be skipped as unreadable
    pytest.importorskip("decord")
    frames = np.random.default_rng(0).integers(0, 256, (8, 32, 48, 3), dtype=np.uint8)
    path = tmp_path / "w48.mp4"
    synth.write_video(path, frames, fps=10)
    with open_video(path, backend="pyav") as reader:
        expected = reader.get_frames([0, 3, 5])
    with open_video(path, backend="decord") as reader:
        got = reader.get_frames([0, 3, 5])
        assert len(reader) == 8
    assert got.shape == (3, 32, 48, 3)
    assert torch.equal(got, expected)


@pytest.mark.skipif(
    not backend_available("torchcodec"), reason="torchcodec (or FFmpeg's libraries) is not installed"
)
def test_torchcodec_decodes_like_pyav(video_path):
    """The real torchcodec backend: same count, rate and frames (to colour-conversion rounding) as PyAV."""
    indices = [0, 9, 3, 3, 20]
    with open_video(video_path, "torchcodec") as tc, open_video(video_path, "pyav") as av:
        assert len(tc) == len(av) and tc.fps == pytest.approx(av.fps)
        a, b = tc.get_frames(indices), av.get_frames(indices)
        assert a.shape == b.shape and a.dtype == torch.uint8
        assert (a.float() - b.float()).abs().mean() < 2.0
        assert torch.equal(a[2], a[3])  # a repeated index is the same frame
    with open_video(video_path, "torchcodec", resize=(32, 48)) as tc:
        assert tc.get_frames([1, 2]).shape == (2, 32, 48, 3)


@pytest.mark.parametrize("verbose", ["", "1"])
def test_ffmpeg_log_lines_are_silenced_unless_asked_for(corrupt_videos, verbose):
    """decord's FFmpeg prints `[h264 @ ...]` lines for damaged packets; VIDLIT_DECODER_LOGS=1 shows them."""
    import os
    import subprocess

    code = (
        "from vidlit.data.video import open_video, VideoDecodeError\n"
        f"r = open_video({str(corrupt_videos['damaged_packets'])!r}, 'decord')\n"
        "try:\n    r.get_frames(list(range(32)))\nexcept VideoDecodeError:\n    pass\n"
    )
    env = {**os.environ, "VIDLIT_DECODER_LOGS": verbose}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert ("[h264 @" in out.stderr) == bool(verbose)


def test_reader_cache_reuses_an_open_reader_per_video(synthetic_videos, tmp_path):
    from vidlit.data.video import ReaderCache

    _, records = synthetic_videos
    paths = [r["path"] for r in records[:3]]
    cache = ReaderCache(size=2)
    first = cache.open(paths[0], "pyav", resize=32)
    assert cache.open(paths[0], "pyav", resize=32) is first  # the same open reader
    with open_video(paths[0], "pyav", resize=32) as fresh:
        assert torch.equal(first.get_frames([5, 1, 5]), fresh.get_frames([5, 1, 5]))
    assert cache.open(paths[0], "pyav", resize=48) is not first  # other arguments: another reader
    cache.open(paths[1], "pyav")  # a third reader: the least recently used one is closed
    assert len(cache) == 2 and first._closed
    # a file changed on disk is reopened
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(Path(paths[2]).read_bytes())
    before = cache.open(copy, "pyav")
    copy.write_bytes(Path(paths[1]).read_bytes())
    assert cache.open(copy, "pyav") is not before
    cache.close()
    assert len(cache) == 0
    with pytest.raises(ValueError, match="size"):
        ReaderCache(size=0)


def test_reader_cache_is_private_to_its_process_and_drops_a_failed_file(synthetic_videos):
    import pickle

    from vidlit.data.video import ReaderCache, VideoDecodeError

    _, records = synthetic_videos
    cache = ReaderCache(size=2, workers_only=False)
    with cache.reading(records[0]["path"], "pyav") as reader:
        frames = reader.get_frames([0, 3])
    assert len(cache) == 1 and not reader._closed  # kept open for the next clip
    copy = pickle.loads(pickle.dumps(cache))  # as a spawned worker receives it
    assert len(copy) == 0 and copy.size == 2
    with pytest.raises(IndexError), cache.reading(records[0]["path"], "pyav") as again:
        assert again is reader
        again.get_frames([10**6])
    with pytest.raises(VideoDecodeError), cache.reading(records[0]["path"], "pyav") as again:
        raise VideoDecodeError(records[0]["path"], "bad frame")
    assert len(cache) == 0 and reader._closed  # a decode error closes the file's readers
    outside = ReaderCache(workers_only=True)  # not in a DataLoader worker: nothing is kept
    with outside.reading(records[0]["path"], "pyav") as fresh:
        assert torch.equal(fresh.get_frames([0, 3]), frames)
    assert len(outside) == 0 and fresh._closed
    cache.close()


def test_mpeg_ts_is_recognized_from_any_offset_in_its_first_packet(tmp_path):
    from vidlit.data.video import _is_mpeg_ts

    rng = np.random.default_rng(0)

    def packets(size: int, count: int = 8) -> bytes:
        body = rng.integers(0, 256, size=(count, size), dtype=np.uint8)
        body[body == 0x47] = 0  # only the sync bytes are 0x47
        body[:, size - 188] = 0x47  # M2TS: a 4-byte timecode, then the 188-byte packet
        return body.tobytes()

    cases = {
        "ts.ts": (packets(188), True),
        "m2ts.m2ts": (packets(192), True),
        "cut.ts": (packets(188)[100:], True),  # a capture cut mid-packet
        "junk.ts": (b"\x00" * 37 + packets(188), True),
        "noise.mp4": (bytes(rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes()), False),
        "short.ts": (packets(188, 2), False),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert _is_mpeg_ts(tmp_path / name) is expected, name
    assert _is_mpeg_ts(tmp_path / "missing.ts") is False  # unreadable: the reader's own open reports it


def test_the_mpeg_ts_check_reads_a_file_once_beside_its_stored_size(tmp_path):
    """decord checks every open for MPEG-TS; the answer is kept with the stored size, under the
    same (path, device, inode, mtime, size) key, so a video opened again is not read again."""
    from vidlit.data.video import _is_mpeg_ts

    video_module._header_facts.cache_clear()
    path = tmp_path / "clip.mp4"
    synth.write_video(path, np.zeros((4, 48, 80, 3), dtype=np.uint8), fps=10)
    for _ in range(3):  # three items of one video, as a dataset opens it
        with open_video(path, "decord", resize=24) as reader:
            assert reader.get_frames([0]).shape == (1, 24, 40, 3)
    stat = path.stat()
    key = (str(path), stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
    assert video_module._header_facts.cache_info().currsize == 1
    assert video_module._header_facts(*key) == {
        "display": (48, 80, None, "mov,mp4,m4a,3gp,3g2,mj2", False),
        "mpeg_ts": False,
    }

    # the bytes are not read again: a file changed under the same key keeps its answer ...
    stream = tmp_path / "capture.ts"
    packets = np.zeros((8, 188), dtype=np.uint8)
    packets[:, 0] = 0x47
    stream.write_bytes(packets.tobytes())
    assert _is_mpeg_ts(stream) is True
    before = stream.stat()
    stream.write_bytes(bytes(8 * 188))  # same inode and size; the modification time put back
    os.utime(stream, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _is_mpeg_ts(stream) is True
    # ... and a file rewritten in place (a new modification time) is read anew
    os.utime(stream, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert _is_mpeg_ts(stream) is False


def test_frames_read_leave_no_cyclic_garbage(tmp_path):
    """Every frame the PyAV paths read is freed when dropped, not left to the cyclic GC: a frame
    kept alive by a cycle holds its swscale context, and the GC may free that in a DataLoader
    worker forked meanwhile, where joining the context's (unforked) slice threads hangs forever
    (a full test run hung so, in ``test_shards_are_dealt_to_ranks_and_workers_once``)."""
    import gc

    import av

    from vidlit.data.synth.videos import render_clip, write_video
    from vidlit.data.video import upright_rgb

    path = tmp_path / "clip.mp4"
    write_video(path, render_clip(np.random.default_rng(0), "circle", "red", "up", 6, 32))
    gc.collect()
    gc.disable()
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                upright_rgb(frame, resize=16)
        del frame
        with open_video(path, backend="pyav") as reader:
            reader.get_frames([0, 2, 4])
        del reader
        left = [o for o in gc.get_objects() if type(o) is av.VideoFrame]
    finally:
        gc.enable()
    assert left == []
