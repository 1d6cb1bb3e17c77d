"""Checkpoint files: written atomically, read without running pickled code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from vidlit.core.io import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save checkpoints through a temporary file in the same folder and an atomic rename.

    Written by :func:`vidlit.core.io.atomic_open` (flushed and fsynced before the rename, with a
    plain file's permissions): a run killed while saving leaves the previous checkpoint intact,
    never half a file. Loading
    always uses ``torch.load(weights_only=True)``: a checkpoint is data and never executes code.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: checkpoint not found")
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)
