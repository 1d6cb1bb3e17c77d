"""``vidlit data check``: find the unreadable videos of a list before training does.

    vidlit data check data/k400/train.csv --workers 8           # quick: open, first and last frame
    vidlit data check data/k400/train.csv --workers 8 --full    # decode every frame

What each mode verifies, per video of the list (CSV or JSONL, see
:func:`~vidlit.data.lists.read_video_list`):

- **default (quick)**: the file exists and is not empty, a video backend opens it (container,
  video stream, frame count, frame rate), and its first and last frame decode. This finds
  missing, zero-byte, truncated and random-bytes files, and damage at the end, in about the time
  of two seeks per video.
- **``--full``**: every frame decodes, in order, in chunks. This also finds damage in the middle
  of a file (overwritten or lost packets) that the quick check cannot see and that training would
  hit only when it samples there. It costs a full decode of the dataset.

Videos are checked in DataLoader worker processes (``--workers``), with a progress bar. Exit
status: 0 when every video is readable, 1 when any is not (each listed with its line and reason),
2 for a malformed list.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import DataLoader, Dataset

from vidlit.core.progress import progress_bar
from vidlit.data.video import BACKENDS, VideoDecodeError, open_video

__all__ = ["check_video", "check_videos"]

FULL_CHUNK = 16  # frames decoded at once by --full: memory stays at a few frames of the video


def check_video(path: str | Path, backend: str = "auto", full: bool = False) -> str | None:
    """Open a video and decode its first and last frame, or every frame with ``full``.

    Returns:
        None when it decodes, else why not.
    """
    try:
        with open_video(path, backend) as reader:
            length = len(reader)
            if not full:
                reader.get_frames([0, length - 1])
            else:
                for first in range(0, length, FULL_CHUNK):
                    reader.get_frames(list(range(first, min(length, first + FULL_CHUNK))))
    except VideoDecodeError as e:
        return e.reason
    return None


class _CheckVideos(Dataset):
    def __init__(self, paths: Sequence[Path], backend: str, full: bool):
        self.paths = list(paths)
        self.backend = backend
        self.full = full

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> str | None:
        return check_video(self.paths[index], self.backend, self.full)


def check_videos(
    paths: Sequence[str | Path],
    backend: str = "auto",
    num_workers: int = 0,
    progress: bool = False,
    full: bool = False,
) -> list[str | None]:
    """:func:`check_video` on many videos, in DataLoader worker processes.

    Args:
        paths: video files.
        backend: video backend.
        num_workers: worker processes (0 checks in this process).
        progress: show a progress bar (``rich``).
        full: decode every frame instead of the first and last.

    Returns:
        For each path, in order, None (readable) or the reason it is not.
    """
    loader = DataLoader(
        _CheckVideos([Path(p) for p in paths], backend, full),
        batch_size=None,  # one reason (or None) per video, unbatched
        num_workers=num_workers,
    )
    results = []
    description = "checking videos" + (" (every frame)" if full else "")
    with progress_bar(description, len(paths), progress) as advance:
        for reason in loader:
            results.append(reason)
            advance()
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``vidlit data check`` arguments."""
    parser.add_argument("list", type=Path, help="video list: CSV with a 'path' column, or JSONL")
    parser.add_argument(
        "--full",
        action="store_true",
        help="decode every frame (finds damage in the middle of a file; costs a full decode)",
    )
    parser.add_argument("--backend", default="auto", choices=("auto", *BACKENDS))
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (0: this one)")


HELP = (
    "check that every video of a list decodes: by default that it opens and its first and last frame "
    "decode; with --full every frame. Exit 1 if any fails"
)


def check_main(options: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Run ``vidlit data check`` with parsed ``options``; print the unreadable videos; exit 1 if any."""
    from vidlit.data.lists import read_video_list

    try:
        entries = read_video_list(options.list)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    if not entries:  # "0 readable, 0 unreadable" and exit 0 would read as a pass
        parser.error(f"{options.list}: the list names no videos")
    reasons = check_videos(
        [e.path for e in entries], options.backend, options.workers, progress=True, full=options.full
    )
    bad = [(entry, reason) for entry, reason in zip(entries, reasons) if reason is not None]
    mode = "every frame decoded" if options.full else "opened, first and last frame decoded"
    print(f"{options.list}: {len(entries) - len(bad)} readable, {len(bad)} unreadable ({mode})")
    for entry, reason in bad:
        print(f"  {entry.path} (line {entry.line}): {reason}")
    if bad:
        sys.exit(1)
