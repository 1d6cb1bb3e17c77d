"""Stable ids for strings, so per-sample keys can travel through tensor all-gathers."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch
from torch import Tensor


def stable_id(key: str) -> int:
    """A signed 64-bit id of ``key``, equal on every process and run (unlike ``hash``)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def stable_ids(keys: Iterable[object], device: torch.device | str | None = None) -> Tensor:
    """``[N]`` int64 tensor of :func:`stable_id` of ``str(key)`` for each key."""
    return torch.tensor([stable_id(str(key)) for key in keys], dtype=torch.long, device=device)
