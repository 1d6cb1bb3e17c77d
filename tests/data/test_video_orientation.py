"""Display matrices that turn and mirror: every backend shows the frames as FFmpeg (6.1 and later) does.

A clip is written once without a display matrix, then its packets are copied (no re-encoding)
into one MP4 per matrix. A backend's frames of such a copy must be that backend's frames of the
plain clip, put through the filters that the ``ffmpeg`` command line's autorotation inserts for
the matrix (fftools/ffmpeg_filter.c: ``transpose``, ``hflip``, ``vflip``), bit for bit. The
filters are written here in numpy and checked against FFmpeg's own (PyAV's libavfilter).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vidlit.data import video as video_module
from vidlit.data.sampling import uniform_segments
from vidlit.data.shards import decode_mp4
from vidlit.data.synth import videos as synth
from vidlit.data.video import VideoDecodeError, backend_available, open_video, output_size, stored_size

BACKENDS = ["decord", "pyav", *(["torchcodec"] if backend_available("torchcodec") else [])]

# FFmpeg's filters on [t, h, w, c] frames, from vf_transpose.c's diagrams and vf_hflip / vf_vflip
FILTERS = {
    "hflip": lambda x: x[:, :, ::-1],
    "vflip": lambda x: x[:, ::-1],
    "transpose=cclock_flip": lambda x: x.transpose(0, 2, 1, 3),  # out[i, j] = in[j, i]
    "transpose=clock_flip": lambda x: x.transpose(0, 2, 1, 3)[:, ::-1, ::-1],  # the other diagonal
    "transpose=clock": lambda x: np.rot90(x, -1, axes=(1, 2)),
    "transpose=cclock": lambda x: np.rot90(x, 1, axes=(1, 2)),
}

# name: the display matrix's (a, b, c, d) in units of 1.0 (16.16 fixed point in the file), the
# filters FFmpeg's autorotation inserts for it (the clockwise angle theta is
# -av_display_rotation_get; at 90 degrees transpose=cclock_flip if c > 0 else clock, at 270
# clock_flip if c < 0 else cclock, at 180 hflip if a < 0 and vflip if d < 0, at 0 vflip if d < 0),
# and the same matrix as PyAV's set_display_rotation(degrees, hflip, vflip) writes it
CASES = {
    "hflip": ((-1, 0, 0, 1), ["hflip"], (0, True, False)),  # a front camera's mirror
    "vflip": ((1, 0, 0, -1), ["vflip"], (0, False, True)),
    "rot90_hflip": ((0, -1, -1, 0), ["transpose=clock_flip"], (90, True, False)),
    "rot270_hflip": ((0, 1, 1, 0), ["transpose=cclock_flip"], (270, True, False)),
    "rot90": ((0, -1, 1, 0), ["transpose=cclock"], (90, False, False)),
    "rot180": ((-1, 0, 0, -1), ["hflip", "vflip"], (180, False, False)),
    "rot270": ((0, 1, -1, 0), ["transpose=clock"], (270, False, False)),
    "rot90_vflip": ((0, 1, 1, 0), ["transpose=cclock_flip"], (90, False, True)),  # = rot270_hflip
}
HEIGHT, WIDTH, NUM_FRAMES = 64, 80, 8


def _matrix(a: int, b: int, c: int, d: int) -> list[int]:
    """FFmpeg's 9 int32 (libavutil/display.h): a b c d in 16.16, w in 2.30 fixed point."""
    return [a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30]


def _remux(source: Path, target: Path, matrix: list[int] | None = None, rotation=None) -> Path:
    """Copy a file's video packets into an MP4 with a display matrix (given, or PyAV's for a rotation)."""
    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        if matrix is not None:
            stream.set_display_matrix(matrix)
        else:
            degrees, hflip, vflip = rotation
            stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return target


def _shown(frames: np.ndarray, filters: list[str]) -> torch.Tensor:
    for name in filters:
        frames = FILTERS[name](frames)
    return torch.from_numpy(np.ascontiguousarray(frames))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """The plain clip (an asymmetric pattern of 8 x 8 blocks, so chroma subsampling keeps every
    orientation apart) and one copy per case of :data:`CASES`."""
    root = tmp_path_factory.mktemp("orientation")
    blocks = np.random.default_rng(0).integers(
        0, 256, (NUM_FRAMES, HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8
    )
    plain = root / "plain.mp4"
    synth.write_video(plain, blocks.repeat(8, axis=1).repeat(8, axis=2), fps=10, gop_size=4)
    oriented = {
        name: _remux(plain, root / f"{name}.mp4", _matrix(*abcd)) for name, (abcd, _, _) in CASES.items()
    }
    return plain, oriented


@pytest.fixture(scope="module")
def stored(clips) -> dict[str, np.ndarray]:
    """Each backend's frames of the plain clip: the stored frames, no orientation applied."""
    frames = {}
    for backend in BACKENDS:
        with open_video(clips[0], backend) as reader:
            frames[backend] = reader.get_frames(range(NUM_FRAMES)).numpy()
    return frames


def test_the_numpy_filters_are_ffmpegs():
    """The expectations' filters against libavfilter's transpose / hflip / vflip on one RGB frame."""
    image = np.random.default_rng(1).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    for spec, numpy_filter in FILTERS.items():
        name, _, arg = spec.partition("=")
        graph = av.filter.Graph()
        source = graph.add_buffer(width=10, height=6, format="rgb24", time_base=Fraction(1, 10))
        step, sink = graph.add(name, arg or None), graph.add("buffersink")
        source.link_to(step)
        step.link_to(sink)
        graph.configure()
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = 0
        graph.push(frame)
        assert np.array_equal(graph.pull().to_ndarray(format="rgb24"), numpy_filter(image[None])[0]), spec


@pytest.mark.parametrize("name", CASES)
def test_the_raw_display_matrix_is_read_back(clips, name):
    """vidlit reads the 9 entries PyAV wrote (frame side data), and PyAV's set_display_rotation
    with flips writes the matrix of the table."""
    abcd, _, rotation = CASES[name]
    with av.open(str(clips[1][name])) as container:
        assert video_module._display_matrix(next(container.decode(video=0))) == tuple(_matrix(*abcd))
    helper = _remux(clips[0], clips[1][name].with_name(f"{name}_helper.mp4"), rotation=rotation)
    with av.open(str(helper)) as container:
        assert video_module._display_matrix(next(container.decode(video=0))) == tuple(_matrix(*abcd))


@pytest.mark.parametrize("backend", [*BACKENDS, "auto"])
@pytest.mark.parametrize("name", CASES)
def test_every_backend_shows_the_frames_as_ffmpeg_does(clips, stored, name, backend):
    """Regression: a mirrored matrix came back turned (hflip as a half turn, 90 degrees + hflip
    as a quarter turn) or not at all (vflip); decord and torchcodec apply only the angle."""
    _, filters, _ = CASES[name]
    path = clips[1][name]
    transposed = filters[0].startswith("transpose")
    shown_size = (WIDTH, HEIGHT) if transposed else (HEIGHT, WIDTH)  # a flip keeps h and w
    assert stored_size(path) == shown_size
    indices = [NUM_FRAMES - 1, 0, 5, 2]
    expected = _shown(stored["decord" if backend == "auto" else backend][indices], filters)
    with open_video(path, backend) as reader:
        assert torch.equal(reader.get_frames(indices), expected), (name, backend)
    # a short-side resize applies to the frame as shown, at decode time. The expectation is the
    # same backend's frames of the plain clip resized to the stored frame's share of that size:
    # bit-exact for a flip; after a transpose decord and torchcodec scale in the other direction
    # than the plain clip's decode (measured mean difference 8.9 and 5.6 on these sharp blocks),
    # so there the frames must be far nearer the expected orientation than any other
    small = output_size(*shown_size, 32)
    with open_video(clips[0], backend, resize=small[::-1] if transposed else small) as reader:
        plain_small = reader.get_frames(indices).numpy()
    with open_video(path, backend, resize=32) as reader:
        frames = reader.get_frames(indices)
    assert frames.shape == (len(indices), *small, 3)
    if not transposed:
        assert torch.equal(frames, _shown(plain_small, filters)), (name, backend)
        return
    distance = {
        candidate: (frames.float() - _shown(plain_small, [candidate]).float()).abs().mean().item()
        for candidate in FILTERS
        if candidate.startswith("transpose")
    }
    others = [d for candidate, d in distance.items() if candidate != filters[0]]
    assert distance[filters[0]] < 10 and min(others) > 50, (name, backend, distance)  # others: 71-80


@pytest.mark.parametrize("name", ["hflip", "vflip", "rot90_hflip", "rot270_hflip"])
def test_the_in_memory_shard_decoder_shows_them_alike(clips, name):
    path = clips[1][name]
    picked = uniform_segments(NUM_FRAMES, 3, train=False).tolist()
    with open_video(path, "pyav") as reader:  # shown as FFmpeg does, as checked above
        assert torch.equal(decode_mp4(path.read_bytes(), 3), reader.get_frames(picked))


def test_an_angle_off_the_quarter_turns(clips, stored):
    """FFmpeg turns such a frame by the exact angle (black corners); vidlit by the nearest quarter
    turn, as torchcodec does. decord turns some such angles and not others (it depends on how its
    FFmpeg formats the angle), so it refuses the file and ``auto`` reads it with PyAV."""
    path = _remux(clips[0], clips[0].with_name("rot60.mp4"), rotation=(60, False, False))
    assert stored_size(path) == (WIDTH, HEIGHT)
    with pytest.raises(VideoDecodeError, match="turns by 60 degrees, which decord"):
        open_video(path, "decord")
    with open_video(path) as reader:
        assert reader.backend == "pyav"
    for backend in ["pyav", *(["torchcodec"] if "torchcodec" in BACKENDS else [])]:
        with open_video(path, backend) as reader:
            expected = _shown(stored[backend][[0, 3]], ["transpose=cclock"])
            assert torch.equal(reader.get_frames([0, 3]), expected), backend


def test_after_undoes_a_decoders_turn_before_showing():
    """``_Orientation.after(r)`` on frames a decoder turned by ``r`` quarter turns gives the
    orientation applied to the stored frames, for all 8 orientations and 4 turns."""
    image = np.random.default_rng(2).integers(0, 256, (1, 4, 6, 3), dtype=np.uint8)
    for turns in range(4):
        for mirror in (False, True):
            shown = video_module._Orientation(turns, mirror)
            for r in range(4):
                decoded = np.rot90(image, r, axes=(1, 2))
                assert np.array_equal(shown.after(r).apply(decoded), shown.apply(image)), (shown, r)


def _with_sei(source: Path, target: Path, orientation: str) -> Path:
    """A copy whose H.264 stream carries the matrix (a display orientation SEI), the container none."""
    import subprocess

    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-c", "copy", "-bsf:v",
         f"h264_metadata=display_orientation=insert:{orientation}", str(target)],
        check=True,
    )  # fmt: skip
    return target


def _container_matrix(source: Path, target: Path, name: str) -> Path:
    return _remux(source, target, _matrix(*CASES[name][0]))


# how each file gets its matrix: (maker, the case of CASES it shows, decord's refusal)
ELSEWHERE = {
    "mkv_hflip": (lambda s, t: _container_matrix(s, t.with_suffix(".mkv"), "hflip"), "hflip",
                  "in a 'matroska,webm' container, which decord ignores"),
    "mkv_rot90": (lambda s, t: _container_matrix(s, t.with_suffix(".mkv"), "rot90"), "rot90",
                  "in a 'matroska,webm' container, which decord ignores"),
    "sei_rot90": (lambda s, t: _with_sei(s, t, "rotate=90"), "rot90", "an orientation SEI"),
    "sei_hflip": (lambda s, t: _with_sei(s, t, "flip=horizontal"), "hflip", "an orientation SEI"),
    "sei_rot90_mkv": (lambda s, t: _with_sei(s, t.with_suffix(".mkv"), "rotate=90"), "rot90",
                      "an orientation SEI"),
}  # fmt: skip


@pytest.mark.parametrize("name", ELSEWHERE)
def test_a_matrix_decord_does_not_apply_is_read_elsewhere(clips, stored, name):
    """Regression: decord applies the angle of an MP4 / MOV container's matrix only, torchcodec
    that of any container's but not of the video stream's (an orientation SEI): an MKV with a
    horizontal mirror came back vertically mirrored, a quarter turn in an MKV or an SEI unturned,
    with ``stored_size`` disagreeing with the frames. decord refuses such a file (``auto`` reads it
    with PyAV) and torchcodec's correction follows what its metadata says it turned."""
    make, case, refusal = ELSEWHERE[name]
    path = make(clips[0], clips[0].with_name(f"{name}.mp4"))
    _, filters, _ = CASES[case]
    transposed = filters[0].startswith("transpose")
    shown_size = (WIDTH, HEIGHT) if transposed else (HEIGHT, WIDTH)
    assert stored_size(path) == shown_size
    with pytest.raises(VideoDecodeError, match=refusal) as info:
        open_video(path, "decord")
    assert str(info.value).startswith(str(path))
    indices = [NUM_FRAMES - 1, 0, 5, 2]
    with open_video(path) as reader:
        assert reader.backend == "pyav"
    for backend in ["auto", "pyav", *(["torchcodec"] if "torchcodec" in BACKENDS else [])]:
        expected = _shown(stored["pyav" if backend == "auto" else backend][indices], filters)
        with open_video(path, backend) as reader:
            assert torch.equal(reader.get_frames(indices), expected), (name, backend)
            if backend == "pyav":  # the in-memory shard decoder too (an SEI may be on frame 0 only)
                picked = uniform_segments(NUM_FRAMES, 3, train=False).tolist()
                assert torch.equal(decode_mp4(path.read_bytes(), 3), reader.get_frames(picked)), name
        for resize in (32, (40, 24)):
            with open_video(path, backend, resize=resize) as reader:
                frames = reader.get_frames(indices)
            assert frames.shape == (len(indices), *output_size(*shown_size, resize), 3), (
                name,
                backend,
                resize,
            )


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "pyav"])
def test_a_file_pyav_cannot_open_is_reported_by_the_backend_asked_for(tmp_path, backend):
    """Regression: the PyAV probe of the display matrix ran first and its error ("cannot open:
    [Errno ...]") stood for decord's or torchcodec's; ``auto`` repeated it under both names."""
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match=f"^{path}: {backend} cannot open"):
        open_video(path, backend)
    if backend == "decord":
        with pytest.raises(VideoDecodeError, match=r"decord: decord cannot open.*; pyav: PyAV cannot open"):
            open_video(path)
