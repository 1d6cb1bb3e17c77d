"""The base of the data modules that decode raw videos: skip-and-count, reporting, on-device transforms.

Workers that cannot read a video (missing, zero-byte, truncated, corrupt) return a failure
marker instead of raising; the collate function lists those under ``batch["skipped"]`` /
``batch["skip_reasons"]``. :class:`RawVideoDataModule` counts them in the main process after the
batch reaches the device (so counts are right with any ``num_workers``), raises on the first one
when ``strict``, and :class:`SkippedVideosReport` has it report them: one short warning per
stage when the set of unreadable files changes (the count of distinct files and the first few),
and the full list in ``skipped_videos.tsv`` in the run folder (``trainer.log_dir``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch

from vidlit.core.io import atomic_open
from vidlit.data.base import VidlitDataModule, global_seed
from vidlit.data.video import VideoDecodeError, VideoNotFoundError

__all__ = ["REPORT_FILE", "RawVideoDataModule", "SkippedVideosReport"]

log = logging.getLogger(__name__)

REPORT_FILE = "skipped_videos.tsv"  # the full list, in the run folder
_REPORT_PATHS = 3  # distinct files named in a warning
_STAGES = {"train": "train", "validate": "val", "test": "test", "predict": "predict"}


class SkippedVideosReport(L.Callback):
    """Make a :class:`RawVideoDataModule` report skipped videos at the end of every epoch.

    The data module attaches it to its trainer in ``setup``; data modules do not see epoch ends
    themselves.
    """

    def _report(self, trainer: L.Trainer, stage: str) -> None:
        datamodule = trainer.datamodule
        if isinstance(datamodule, RawVideoDataModule) and not trainer.sanity_checking:
            datamodule.report_skipped(stage)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, "train")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, "test")

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, "predict")


class RawVideoDataModule(VidlitDataModule):
    """What the data modules that decode raw videos share: skip-and-count and on-device transforms.

    Batches carry ``skipped`` / ``skip_reasons`` (videos a worker could not read); after the
    transfer to the device they are counted per stage (or raise, when ``strict``), reported at
    epoch end by :class:`SkippedVideosReport`, and the clips are cropped, flipped and normalized
    by ``train_transform`` / ``eval_transform`` on the device. Subclasses set those transforms and
    ``strict``, call :meth:`_init_skip_counts` in ``__init__`` and :meth:`_attach_skip_report` in
    ``setup``.

    The report: at the end of an epoch in which videos were skipped, one warning naming the stage,
    the number of distinct files (and of skipped reads), and the first few files with their
    reasons, given again only when the set of files changes (an unreadable file stays unreadable:
    repeating it every epoch says nothing new); the full list goes to
    ``<trainer.log_dir>/skipped_videos.tsv`` (``stage``, ``path``, ``reads``, ``reason``).

    Attributes:
        skipped_videos: per stage (``"train"``, ``"val"``, ``"test"``, ``"predict"``), every path
            skipped so far while attached to a trainer, once per time it was skipped
            (sanity-check batches excluded).
    """

    _skip_unit = "videos"  # what the warning counts

    def _init_skip_counts(self) -> None:
        self.skipped_videos: dict[str, list[str]] = {}
        self._skip_reasons: dict[str, dict[str, str]] = {}
        self._epoch_skipped: dict[str, list[tuple[str, str]]] = {}
        self._epoch_seen: dict[str, int] = {}
        self._reported: dict[str, frozenset[str]] = {}
        self._generator: torch.Generator | None = None
        self._generator_key: tuple[Any, ...] | None = None

    def _attach_skip_report(self) -> None:
        trainer = self.trainer
        if trainer is not None and not any(isinstance(c, SkippedVideosReport) for c in trainer.callbacks):
            trainer.callbacks.append(SkippedVideosReport())

    def _count_seen(self, batch: dict[str, Any]) -> int:
        # views of one video share its id: count videos, not views
        return len(set(batch["video_ids"])) + len(batch["skipped"])

    def _stage(self) -> str | None:
        trainer = self.trainer
        if trainer is None or trainer.sanity_checking:
            return None
        return _STAGES.get(str(trainer.state.stage.value) if trainer.state.stage else "")

    def _train_generator(self, device: torch.device) -> torch.Generator:
        # crops and flips of an epoch are a function of (seed, epoch, rank), like the sampling
        trainer = self.trainer
        key = (trainer.current_epoch, str(device))
        if self._generator is None or self._generator_key != key:
            seed = (global_seed() * 1_000_003 + trainer.current_epoch * 1009 + trainer.global_rank) % 2**63
            self._generator = torch.Generator(device=device).manual_seed(seed)
            self._generator_key = key
        return self._generator

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Count (or, when strict, raise on) skipped videos, then crop, flip and normalize on the device."""
        if batch["skipped"]:
            if self.strict:
                path, reason = batch["skipped"][0], batch["skip_reasons"][0]
                local = "://" not in path  # a shard URL names a stream that was read
                error = VideoNotFoundError if local and not Path(path).exists() else VideoDecodeError
                raise error(path, f"{reason} (strict=True; set strict: false to skip unreadable videos)")
        stage = self._stage()
        if stage is not None:
            self.skipped_videos.setdefault(stage, []).extend(batch["skipped"])
            self._epoch_skipped.setdefault(stage, []).extend(zip(batch["skipped"], batch["skip_reasons"]))
            self._epoch_seen[stage] = self._epoch_seen.get(stage, 0) + self._count_seen(batch)
        training = self.trainer is not None and self.trainer.training
        video, frame_size = batch["video"], batch.pop("frame_size", None)
        if training:
            batch["video"] = self.train_transform(video, frame_size, self._train_generator(video.device))
        else:
            batch["video"] = self.eval_transform(video, frame_size)
        return batch

    def _report_path(self) -> Path | None:
        trainer = self.trainer
        log_dir = getattr(trainer, "log_dir", None) if trainer is not None else None
        return None if log_dir is None else Path(log_dir) / REPORT_FILE

    def _write_report(self, path: Path) -> None:
        """Every distinct skipped file of every stage so far, with how often it was skipped and why."""
        with atomic_open(path, "w") as f:
            f.write("stage\tpath\treads\treason\n")
            for stage, paths in self.skipped_videos.items():
                reads: dict[str, int] = {}
                for p in paths:
                    reads[p] = reads.get(p, 0) + 1
                for p, n in reads.items():
                    reason = self._skip_reasons.get(stage, {}).get(p, "")
                    f.write(f"{stage}\t{p}\t{n}\t{' '.join(reason.split())}\n")

    def report_skipped(self, stage: str) -> None:
        """Report the videos skipped in the epoch of ``stage`` that just ended, and reset its count.

        Writes the full list to the run folder; warns (count of distinct files plus the first few)
        only when this stage's set of unreadable files differs from the one last reported.
        """
        skipped = self._epoch_skipped.pop(stage, [])
        seen = self._epoch_seen.pop(stage, 0)
        if not skipped:
            return
        reasons = dict(skipped)  # distinct files in first-seen order, with their (last) reason
        self._skip_reasons.setdefault(stage, {}).update(reasons)
        path = self._report_path()
        if path is not None and self.trainer.is_global_zero:
            self._write_report(path)
        files = frozenset(reasons)
        if self._reported.get(stage) == files:
            return
        self._reported[stage] = files
        named = "; ".join(f"{p} ({r})" for p, r in list(reasons.items())[:_REPORT_PATHS])
        more = f" and {len(reasons) - _REPORT_PATHS} more" if len(reasons) > _REPORT_PATHS else ""
        where = f"; full list: {path}" if path is not None else ""
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        log.warning(
            "%s epoch %d: skipped %d unreadable video file(s) (%d of %d %s read): %s%s%s",
            stage,
            epoch,
            len(reasons),
            len(skipped),
            seen,
            self._skip_unit,
            named,
            more,
            where,
        )
