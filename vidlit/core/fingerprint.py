"""What a resumable output folder was made with: a model's weights hash and a settings record.

``vidlit extract`` and ``vidlit curate`` resume by skipping what an earlier run wrote. That is
only sound when the earlier run used the same model and settings; otherwise the folder silently
mixes two kinds of output. Both record their settings (with :func:`weights_fingerprint` of the
model) in the folder and refuse a rerun whose settings differ (:func:`settings_changes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["settings_changes", "weights_fingerprint"]


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 (hex) of a module's state dict: every key, dtype, shape and value, in key order.

    Two modules have the same fingerprint exactly when their state dicts are equal bit for bit
    (compile wrappers' ``_orig_mod.`` prefixes are ignored), whatever device they are on.
    """
    digest = hashlib.sha256()
    state = module.state_dict()
    for key in sorted(state):
        value = state[key]
        name = key.replace("._orig_mod", "").removeprefix("_orig_mod.")
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}\n".encode())
        data = value.detach().to("cpu").contiguous()
        # bytes of any dtype (bfloat16 has no numpy type): a uint8 view of the storage
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def settings_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``["window 25 -> 4", ...]``: the keys of ``new`` whose value differs from ``old``'s."""

    def short(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 20 else text[:12] + "..."  # fingerprints: a prefix says enough

    return [f"{k} {short(old.get(k))} -> {short(v)}" for k, v in new.items() if old.get(k) != v]
