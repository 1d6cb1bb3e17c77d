"""The base of the data modules that decode raw videos: skip-and-count, reporting, on-device transforms.

Workers that cannot read a video (missing, zero-byte, truncated, corrupt) return a failure
marker instead of raising; the collate function lists those under ``batch["skipped"]`` /
``batch["skip_reasons"]``. :class:`RawVideoDataModule` counts them in the main process after the
batch reaches the device (so counts are right with any ``num_workers``), raises on the first one
when ``strict``, and :class:`SkippedVideosReport` has it report them: one short warning per
stage when the set of unreadable files changes (the count of distinct files and the first few),
and the full list in ``skipped_videos.tsv`` in the run folder (``trainer.log_dir``).

:class:`RawVideoFolderDataModule` is the lighter base of the readers (Ego4D STA, SCOD, FHP) whose
videos sit in one folder next to one annotation file per split, are checked for existence before
training, and are decoded already at the model's frame size: it holds their shared setup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch

from vidlit.core.io import atomic_open
from vidlit.data.base import (
    VidlitDataModule,
    _rank_and_world,
    gather_ranks,
    global_seed,
    missing_files,
    split_files,
)
from vidlit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, VideoBatchTransform
from vidlit.data.video import VideoDecodeError, VideoNotFoundError

__all__ = ["REPORT_FILE", "RawVideoDataModule", "RawVideoFolderDataModule", "SkippedVideosReport"]

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
        self._saved_generator: tuple[tuple[Any, ...], torch.Tensor] | None = None  # from a checkpoint
        self._done_generator: torch.Tensor | None = None  # its state after the last finished step

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
            saved, self._saved_generator = self._saved_generator, None
            if saved is not None and saved[0] == key:  # resumed inside the epoch it was saved in
                self._generator.set_state(saved[1])
            self._done_generator = self._generator.get_state()
        return self._generator

    def train_batch_done(self, last: bool = False) -> None:
        super().train_batch_done(last)
        if self._generator is not None:
            self._done_generator = self._generator.get_state()

    def state_dict(self) -> dict[str, Any]:
        """The training loader's position and the crops' generator state: a run resumed mid-epoch
        reads and crops as the uninterrupted one.

        Lightning stores it in every checkpoint. The generator's state is the one after the crops of
        the last finished training step: a checkpoint written during a step (SLURM's requeue
        signal) resumes with that step, which must crop its batch again the same way.
        """
        state = super().state_dict()  # the training loader's position
        mine = None
        if self._done_generator is not None and self._generator_key is not None:
            epoch, device = self._generator_key
            mine = {"epoch": epoch, "device": device, "state": self._done_generator}
        ranks = gather_ranks(mine)  # each rank crops with its own generator
        return state if all(r is None for r in ranks) else {**state, "train_generator": {"ranks": ranks}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the saved epoch's crop generator (used only if training resumes in that epoch)."""
        super().load_state_dict(state)
        saved = state.get("train_generator")
        if saved and "ranks" in saved:  # else one generator, as first saved
            rank, world = _rank_and_world()
            saved = saved["ranks"][rank] if len(saved["ranks"]) == world else None
        if saved:
            self._saved_generator = ((int(saved["epoch"]), str(saved["device"])), saved["state"])

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


_Item = TypeVar("_Item")


class RawVideoFolderDataModule(VidlitDataModule):
    """The setup shared by data modules over a folder of raw videos and one annotation file per split.

    Holds what their constructors used to repeat: ``root`` (and the synthetic sample written there
    when asked), the split files, the video folder, the on-device normalization, the backend and
    ``strict``; and what their ``dataset(split)`` shares: each split's annotations read and checked
    once (:meth:`annotations`), and videos missing from the folder found before training
    (:meth:`drop_missing`: raise when ``strict``, else drop their items with one warning).

    Videos are decoded already at ``size x size``, so :attr:`transform` (applied on the device by
    :meth:`~vidlit.data.base.VidlitDataModule.on_after_batch_transfer`) only normalizes: uint8
    ``[b, t, size, size, 3]`` to float ``[b, 3, t, size, size]``. Unlike
    :class:`RawVideoDataModule` there is no skip-and-count while training: a video that is there
    but cannot be decoded raises.

    A subclass sets :attr:`synthetic_name`, overrides :meth:`write_synthetic` and
    :meth:`read_annotations`, and checks its own arguments before calling this ``__init__`` (so a
    bad argument raises before any sample data is written).

    Args:
        root: dataset folder; the split files and ``video_dir`` resolve against it.
        train: train annotation file.
        val: val annotation file.
        test: test annotation file; None uses ``val``.
        predict: predict annotation file; None uses ``val``.
        video_dir: folder of the videos.
        size: frame side the decoder resizes to (and the model sees).
        mean: normalization mean of ``x / 255``.
        std: normalization standard deviation.
        backend: video backend (``auto``, ``decord``, ``pyav``, ``torchcodec``).
        synthetic: when ``root`` does not exist, write the synthetic sample there and say so.
        strict: a missing video raises before training; when False its items are dropped with a
            warning.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
    """

    #: the dataset named in the warning when the synthetic sample is written
    synthetic_name = "sample"

    def __init__(
        self,
        root: str | Path,
        train: str,
        val: str,
        test: str | None,
        predict: str | None,
        video_dir: str,
        size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        backend: str = "auto",
        synthetic: bool = False,
        strict: bool = True,
        batch_size: int = 8,
        num_workers: int = 0,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.root = Path(root)
        if synthetic:
            from vidlit.data.synth import write_sample_if_missing

            # the subclass's logger, as when each reader wrote its own sample
            write_sample_if_missing(
                self.root, self.write_synthetic, f"{self.synthetic_name} sample dataset",
                log=logging.getLogger(type(self).__module__),
            )  # fmt: skip
        self.files = split_files(self.root, train, val, test, predict)
        self.video_dir = self.root / video_dir
        self.size = size
        self.mean, self.std = tuple(mean), tuple(std)
        # frames arrive at size x size: the evaluation crop is the whole frame, so this normalizes
        self.transform = VideoBatchTransform(size, train=False, mean=self.mean, std=self.std)
        self.backend = backend
        self.strict = strict
        self._annotations: dict[str, Any] = {}

    def write_synthetic(self, root: Path) -> None:
        """Write the synthetic sample dataset to ``root`` (``synthetic=True`` and no ``root``)."""
        raise NotImplementedError(f"{type(self).__name__} has no synthetic sample")

    def read_annotations(self, split: str) -> Any:
        """Read and check the annotation file of ``split`` (:meth:`annotations` caches the result)."""
        raise NotImplementedError(f"{type(self).__name__} does not define read_annotations(split)")

    def annotations(self, split: str) -> Any:
        """The checked annotations of ``split`` (``train``, ``val``, ``test``, ``predict``), read once.

        A file that fails its checks is not kept: the next call reads it again (and raises again).
        """
        if split not in self._annotations:
            self._annotations[split] = self.read_annotations(split)
        return self._annotations[split]

    def drop_missing(
        self,
        items: list[_Item],
        path: Callable[[_Item], Path],
        split: str,
        unit: str,
        label: Callable[[_Item], str],
    ) -> list[_Item]:
        """The items whose video file is there; the others raise (``strict``) or are dropped with a warning.

        Args:
            items: a split's samples.
            path: the video file of an item.
            split: the split, for the message.
            unit: what an item is, for the message (``"frames"``, ``"clips"``).
            label: how the message names the first item without a video (``"uid 17"``).

        Raises:
            FileNotFoundError: ``strict`` and some videos are missing: ``<video_dir>: no video for
                3 of 40 val clips, e.g. <name>.mp4 (<label>)``.
        """
        paths = [path(item) for item in items]
        absent = {p for p in set(paths) if not p.is_file()}  # one stat per video
        if not absent:
            return items
        missing = [(item, p) for item, p in zip(items, paths, strict=True) if p in absent]
        first, first_path = missing[0]
        missing_files(
            f"{self.video_dir}: no video for {len(missing)} of {len(items)} {split} {unit}, "
            f"e.g. {first_path.name} ({label(first)})",
            self.strict,
        )
        return [item for item, p in zip(items, paths, strict=True) if p not in absent]
