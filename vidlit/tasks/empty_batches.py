"""Batches in which every video was unreadable: skipped and counted, never a NaN loss.

A raw-video data module drops the videos it cannot decode and lists them under
``batch["skipped"]`` (see :class:`~vidlit.data.video_list.RawVideoDataModule`). When every video
of a batch fails, the batch holds a ``[0, ...]`` video tensor: a loss over it is the mean of
nothing (NaN). Every task module asks :class:`EmptyBatches` first: such a step is skipped (a
training step returns None, which Lightning's automatic optimization treats as "no backward, no
optimizer step"), counted, and reported at the end of the epoch. An epoch in which *every* batch
was empty means the split (or the part of it the epoch reads) is unreadable: the run stops with
:class:`NoReadableVideosError`.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from torch import Tensor

log = logging.getLogger(__name__)

_NAMED = 3  # unreadable videos named in the error


class NoReadableVideosError(RuntimeError):
    """Every batch of an epoch of one split held no readable video."""


def is_empty_batch(batch: Any) -> bool:
    """Whether a batch holds no clip at all (its ``video`` tensor has batch size 0)."""
    video = batch.get("video") if isinstance(batch, dict) else None
    return isinstance(video, Tensor) and video.shape[0] == 0


class EmptyBatches:
    """Per-stage counts of the batches that held no readable video, for one LightningModule.

    Under DDP a skipped training step on one rank and not on the others would leave the gradient
    all-reduce waiting; keep ``strict: true`` or check the list (``vidlit data check``) there.
    """

    def __init__(self) -> None:
        self.batches: dict[str, int] = {}
        self.empty: dict[str, int] = {}
        self.skipped: dict[str, list[tuple[str, str]]] = {}

    def skip(self, module: L.LightningModule, batch: Any, stage: str) -> bool:
        """Count ``batch`` for ``stage``; True when it is empty and the step must be skipped."""
        self.batches[stage] = self.batches.get(stage, 0) + 1
        if isinstance(batch, dict):
            reasons = batch.get("skip_reasons") or [""] * len(batch.get("skipped") or [])
            self.skipped.setdefault(stage, []).extend(zip(batch.get("skipped") or [], reasons))
        if not is_empty_batch(batch):
            return False
        self.empty[stage] = self.empty.get(stage, 0) + 1
        return True

    def end_epoch(self, module: L.LightningModule, stage: str) -> None:
        """Report the epoch's empty batches and reset; raise when every batch was empty.

        Raises:
            NoReadableVideosError: every batch of the epoch held no readable video (not raised
                for the sanity check, which sees only a few batches).
        """
        batches, empty = self.batches.pop(stage, 0), self.empty.pop(stage, 0)
        skipped = self.skipped.pop(stage, [])
        trainer = module._trainer
        if not empty or (trainer is not None and trainer.sanity_checking):
            return
        epoch = module.current_epoch
        if empty == batches:
            # the first with its reason (the others usually fail alike), then paths only
            named = "; ".join(
                f"{p} ({r})" if r and i == 0 else p for i, (p, r) in enumerate(skipped[:_NAMED])
            )
            more = f" and {len(skipped) - _NAMED} more" if len(skipped) > _NAMED else ""
            span = "its only batch" if batches == 1 else f"any of its {batches} batches"
            raise NoReadableVideosError(
                f"{stage} epoch {epoch}: no readable video in {span} ({len(skipped)} "
                f"unreadable: {named}{more}); run `vidlit data check LIST` on the {stage} list"
            )
        log.warning(
            "%s epoch %d: skipped %d of %d batches in which no video could be read (see the skipped videos)",
            stage,
            epoch,
            empty,
            batches,
        )
