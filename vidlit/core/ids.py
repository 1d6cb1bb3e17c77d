"""Stable ids for strings, so per-sample keys can travel through tensor all-gathers."""

from __future__ import annotations

import hashlib


def stable_id(key: str) -> int:
    """A signed 64-bit id of ``key``, equal on every process and run (unlike ``hash``)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)
