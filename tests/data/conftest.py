"""Tiny synthetic videos shared by the data tests (written once per session)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import fsspec
import pytest

from vidlit.data.synth.videos import write_corrupt_videos, write_synthetic_videos

NUM_FRAMES = 24
SIZE = 64
FPS = 15


@pytest.fixture(scope="session")
def synthetic_videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Eight labelled clips (two per motion direction), with a tone audio track."""
    root = tmp_path_factory.mktemp("synthetic_videos")
    records = write_synthetic_videos(root, 8, num_frames=NUM_FRAMES, size=SIZE, fps=FPS, seed=0, audio=True)
    return root, records


@pytest.fixture(scope="session")
def video_path(synthetic_videos: tuple[Path, list[dict]]) -> str:
    """One clip of :func:`synthetic_videos`."""
    return synthetic_videos[1][0]["path"]


@pytest.fixture(scope="session")
def corrupt_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Zero-byte, random-bytes and truncated ``.mp4`` files by kind."""
    return write_corrupt_videos(tmp_path_factory.mktemp("corrupt_videos"))


@pytest.fixture
def memory_url():
    """A fresh ``memory://`` dataset root (fsspec's in-process filesystem), removed afterwards."""
    url = f"memory://vidlit-test-{uuid.uuid4().hex}/data"
    yield url
    fs, path = fsspec.core.url_to_fs(url)
    if fs.exists(path.rpartition("/")[0]):
        fs.rm(path.rpartition("/")[0], recursive=True)


@pytest.fixture
def memory_requests(monkeypatch):
    """The paths the ``memory://`` file system is asked to list (``"ls"``) or asked about one by one
    (``"stat"``: ``info``, ``isfile``, ``isdir``, ``exists``); on an object store each is a request.

    A spy on the real file system object (fsspec caches one; every ``memory://`` URL opens it): the
    calls run as they would. Calls the in-memory implementation makes to itself (its ``open`` checks
    the parent folders in its dict) are not counted. Tests clear the lists before the part they count.
    """
    fs = fsspec.filesystem("memory")
    calls: dict[str, list[str]] = {"ls": [], "stat": []}

    def spy(method):
        real, paths = getattr(fs, method), calls["ls" if method == "ls" else "stat"]

        def call(path, *args, **kwargs):
            if sys._getframe(1).f_globals.get("__name__") != type(fs).__module__:
                paths.append(fs._strip_protocol(path))
            return real(path, *args, **kwargs)

        return call

    for method in ("ls", "info", "isfile", "isdir", "exists"):
        monkeypatch.setattr(fs, method, spy(method))
    return calls
