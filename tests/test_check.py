"""``vidlit data check``: the quick check and ``--full``, on a real file damaged in the middle.

PyAV, not decord: decord 0.6's threaded decoder fails on such a file now and then even when
asked for the first and last frame only (``Check failed: run_.load()``), PyAV deterministically
decodes them and fails in the middle.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import vidlit.data.video_list
from vidlit.check import check_video, check_videos
from vidlit.cli import main
from vidlit.data.synth.videos import render_clip, write_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """A good 64-frame clip and one whose packets 24-31 (frames in the middle) are overwritten with
    ``0xff``: it opens and its first and last frame decode, frames 24-31 do not."""
    root = tmp_path_factory.mktemp("check")
    frames = render_clip(np.random.default_rng(0), "square", "red", "right", num_frames=64, size=64)
    write_video(root / "good.mp4", frames, faststart=True, gop_size=8)
    write_video(root / "middle.mp4", frames, faststart=True, gop_size=8)
    with av.open(str(root / "middle.mp4")) as container:
        spans = [(entry.pos, entry.size) for entry in container.streams.video[0].index_entries]
    data = bytearray((root / "middle.mp4").read_bytes())
    for pos, size in spans[24:32]:
        data[pos : pos + size] = b"\xff" * size
    (root / "middle.mp4").write_bytes(bytes(data))
    (root / "list.csv").write_text("path\ngood.mp4\nmiddle.mp4\n")
    return root


def test_full_decode_finds_damage_in_the_middle_that_the_quick_check_misses(videos, capsys):
    assert check_video(videos / "middle.mp4", "pyav") is None  # first and last frame decode
    assert "cannot decode frame 2" in check_video(videos / "middle.mp4", "pyav", full=True)
    reasons = check_videos([videos / "good.mp4", videos / "middle.mp4"], "pyav", num_workers=2, full=True)
    assert reasons[0] is None and reasons[1] is not None

    main(["data", "check", str(videos / "list.csv"), "--backend", "pyav"])  # quick: exit status 0
    assert (
        "list.csv: 2 readable, 0 unreadable (opened, first and last frame decoded)" in capsys.readouterr().out
    )
    with pytest.raises(SystemExit) as exit_:
        main(["data", "check", str(videos / "list.csv"), "--backend", "pyav", "--full", "--workers", "2"])
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert "list.csv: 1 readable, 1 unreadable (every frame decoded)" in out
    assert f"{videos / 'middle.mp4'} (line 3): " in out


def test_help_says_what_each_mode_checks_and_the_code_lives_in_the_cli_layer(capsys):
    with pytest.raises(SystemExit):
        main(["data", "check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "by default that it opens and its first and last frame decode; with --full every frame" in text
    assert "--full decode every frame" in text
    assert not hasattr(vidlit.data.video_list, "check_videos")


@pytest.mark.parametrize("content", [b"", b"path,label\n"], ids=["zero-byte", "header-only"])
def test_an_empty_list_is_an_error_not_a_pass(tmp_path, capsys, content):
    """`0 readable, 0 unreadable` and exit 0 read as a pass: an empty list is one line, exit 2."""
    (tmp_path / "list.csv").write_bytes(content)
    with pytest.raises(SystemExit) as exit_:
        main(["data", "check", str(tmp_path / "list.csv")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("list.csv: the list names no videos")


def test_a_video_given_as_the_list_is_named(videos, capsys):
    """The usual slip, a video where the list goes: one line naming it, not a bare UnicodeDecodeError."""
    with pytest.raises(SystemExit) as exit_:
        main(["data", "check", str(videos / "good.mp4")])
    assert exit_.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "good.mp4: not a text file" in line and "expected a CSV or JSONL list" in line, line
    with pytest.raises(SystemExit):  # the videos' folder, not "not found"
        main(["data", "check", str(videos)])
    assert capsys.readouterr().err.strip().endswith(": is a folder; expected a video list file")
