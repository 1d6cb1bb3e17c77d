"""Device names as the command-line tools take them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; anything else as ``torch.device(device)``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def torch_threads(threads: int = 1) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads, then restore the caller's setting.

    For CPU code made of many small ops (metric computation, post-processing, a temporal head's
    forward): intra-op threads only wait on each other there, and 3-13x slower when the other
    cores are busy (``benchmarks/bench_contention.py``).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
