"""What every vidlit data module shares: loaders whose order depends only on (seed, epoch).

The loaders, samplers and seeded-epoch mixin are plain PyTorch and live in
:mod:`vidlit.data.epochs` (so streaming and curation import no Lightning); this module re-exports
them and adds the Lightning side: :class:`VidlitDataModule`, which builds a reproducible training
loader that is resumable mid-epoch, and :class:`CountTrainedBatches`, which tells the loader's
:class:`~vidlit.data.epochs.LoaderPosition` which batches were trained, so a checkpoint written
inside an epoch resumes at the first sample the checkpointed model had not trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from vidlit.core.io import join_path

# re-exported: data modules, readers and older code import these from here
from vidlit.data.epochs import (  # noqa: F401
    EpochSeeded,
    EpochShuffleSampler,
    EpochStreamLoader,
    LoaderPosition,
    ResumableLoader,
    _rank_and_world,
    gather_ranks,
    global_seed,
)

log = logging.getLogger(__name__)


def split_files(
    root: Path | str, train: str, val: str, test: str | None = None, predict: str | None = None
) -> dict[str, Path | str]:
    """The annotation file of each split under ``root`` (a folder or an fsspec URL); ``test`` and
    ``predict`` default to ``val``."""
    return {
        "train": join_path(root, train),
        "val": join_path(root, val),
        "test": join_path(root, test or val),
        "predict": join_path(root, predict or val),
    }


def missing_files(message: str, strict: bool, skipping: str = "skipping them") -> None:
    """Raise or warn about input files that are not there, before any training step.

    Args:
        message: what is missing, naming the folder or list file and a first example.
        strict: raise :class:`FileNotFoundError` with ``message``; when False, log a warning
            and let the caller drop the items.
        skipping: what the caller does with them, said in the warning.
    """
    if strict:
        raise FileNotFoundError(message)
    log.warning("%s; %s (strict=False)", message, skipping)


class CountTrainedBatches(L.Callback):
    """Tell the training loader's :class:`LoaderPosition` that a training batch is done.

    :class:`VidlitDataModule` puts it first among its trainer's callbacks when it builds a training
    loader, so the count is up to date when a ``ModelCheckpoint`` (always run last) saves after
    the same batch.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if isinstance(trainer.datamodule, VidlitDataModule):
            trainer.datamodule.train_batch_done(last=trainer.is_last_batch)


@dataclass
class InferenceInput:
    """One input of ``vidlit infer``, prepared as the data module's evaluation pipeline prepares it.

    Attributes:
        batch: the collated batch (the data module's own dataset class and collate function, in
            evaluation mode), before :meth:`~VidlitDataModule.on_after_batch_transfer`.
        video_id: the name the input's predictions are keyed by.
        submit: writes this input's submission document from the head's predictions (a path in,
            the path out); None: the data module's ``write_submission`` (if it has one).
    """

    batch: dict[str, Any]
    video_id: str
    submit: Callable[[list[dict[str, Any]], Path], Path] | None = None


class VidlitDataModule(L.LightningDataModule):
    """Base data module: builds train/eval loaders with reproducible, resumable shuffling.

    A subclass defines ``dataset(split)`` and ``_collate()`` (the batch collate function); the
    default ``setup`` builds the splits each stage reads (:attr:`STAGE_SPLITS`) and the four
    ``*_dataloader`` hooks serve them.

    Args:
        batch_size: samples per batch.
        num_workers: DataLoader worker processes (0 loads in the main process).
    """

    def __init__(self, batch_size: int = 8, num_workers: int = 0):
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers

    #: applied to ``batch["video"]`` on the training device after transfer (e.g. a
    #: :class:`~vidlit.data.transforms.VideoBatchTransform`: uint8 ``[b, t, h, w, 3]`` frames to
    #: normalized float ``[b, 3, t, h, w]``); None leaves batches as collated
    transform: Callable | None = None

    #: builds the training sampler as ``train_sampler(dataset, epoch_fn=...)`` (e.g.
    #: ``functools.partial(vidlit.data.augment.RepeatAugSampler, num_repeats=2)``); None uses
    #: :class:`EpochShuffleSampler`
    train_sampler: Callable[..., Sampler] | None = None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Apply :attr:`transform` to ``batch["video"]``, on the device the batch was moved to."""
        if self.transform is not None and isinstance(batch, dict) and "video" in batch:
            batch["video"] = self.transform(batch["video"])
        return batch

    def _trainer_epoch(self) -> int:
        """The epoch about to be iterated: the fit loop's ``processed`` count, as Lightning gives samplers.

        ``trainer.current_epoch`` lags one behind while a run resumed from a checkpoint saved at an
        epoch's end (``on_train_epoch_end``) builds its first epoch's iterator. One case stays
        wrong, with either count: a checkpoint saved by validation on an epoch's last batch
        resumes with ``processed`` not yet advanced, so with ``num_workers > 0`` (indices drawn
        eagerly) the resumed epoch replays the saved epoch's order.
        """
        trainer = getattr(self, "trainer", None)
        fit_loop = getattr(trainer, "fit_loop", None)
        if fit_loop is not None:
            return fit_loop.epoch_progress.current.processed
        return getattr(trainer, "current_epoch", 0)

    def _current_epoch(self) -> int:
        # EpochShuffleSampler asks for the epoch in this process as an epoch's iteration starts,
        # before any index reaches a worker: the moment to publish it to a training dataset
        # whose sampling depends on the epoch (``set_epoch``). The training loader's position
        # has just started that epoch (from the trainer, or from a resumed checkpoint).
        position = getattr(self, "_train_position", None)
        epoch = position.epoch if position is not None and position.epoch >= 0 else self._trainer_epoch()
        set_epoch = getattr(getattr(self, "datasets", {}).get("train"), "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        return epoch

    def train_batch_done(self, last: bool = False) -> None:
        """A training step is over (:class:`CountTrainedBatches`): checkpoints now count its batch as read
        (``last``: the epoch's last batch)."""
        position = getattr(self, "_train_position", None)
        if position is not None:
            position.trained(last)

    def state_dict(self) -> dict[str, Any]:
        """The training loader's position (:class:`LoaderPosition`); Lightning saves it in every checkpoint.

        Restored here (:meth:`load_state_dict`, which Lightning calls before it builds any
        loader), not only through the loader's own ``state_dict``: Lightning applies that one
        only when it builds the training loader after restoring its loops, which it does not when
        ``configure_optimizers`` asks for ``estimated_stepping_batches``.
        """
        position = getattr(self, "_train_position", None)
        state = position.state_dict() if position is not None else {}
        return {"train_loader": state} if state else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep a checkpoint's training-loader position for the next training loader."""
        self._resume_train_loader = state.get("train_loader")

    def _loader(self, dataset: Dataset, collate_fn: Callable, train: bool) -> DataLoader:
        if isinstance(dataset, IterableDataset):
            resumable = train and hasattr(dataset, "set_epoch") and hasattr(dataset, "set_start")
            # a training loader records how far training read (resumable mid-epoch, LoaderPosition)
            position = self._make_train_position(self.num_workers) if resumable else None
            # it shuffles itself (if it trains): the loader gives it the epoch as each one starts,
            # before the (persistent) workers read on
            loader = EpochStreamLoader(
                dataset,
                epoch_fn=self._trainer_epoch if train and hasattr(dataset, "set_epoch") else None,
                position=position,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                persistent_workers=self.num_workers > 0,
                collate_fn=collate_fn,
            )
            self._resume_position(loader)
            return loader
        make_sampler = self.train_sampler or EpochShuffleSampler
        sampler = make_sampler(dataset, epoch_fn=self._current_epoch) if train else None
        loader = ResumableLoader(
            dataset,
            position=self._make_train_position(None) if train else None,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False if sampler is None else None,
            drop_last=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_fn,
        )
        self._resume_position(loader)
        return loader

    def _make_train_position(self, num_workers: int | None) -> LoaderPosition:
        self._train_position = LoaderPosition(self._trainer_epoch, num_workers)
        callbacks = getattr(getattr(self, "trainer", None), "callbacks", None)
        if isinstance(callbacks, list) and not any(isinstance(c, CountTrainedBatches) for c in callbacks):
            callbacks.insert(0, CountTrainedBatches())
        return self._train_position

    def _resume_position(self, loader: EpochStreamLoader | ResumableLoader) -> None:
        state = getattr(self, "_resume_train_loader", None)
        if state and loader.position is not None:
            self._resume_train_loader = None
            loader.load_state_dict(state)

    #: the splits each Lightning stage reads
    STAGE_SPLITS: dict[str, tuple[str, ...]] = {
        "fit": ("train", "val"),
        "validate": ("val",),
        "test": ("test",),
        "predict": ("predict",),
    }

    def dataset(self, split: str) -> Dataset:
        raise NotImplementedError(f"{type(self).__name__} does not define dataset(split)")

    def _collate(self) -> Callable:
        raise NotImplementedError(f"{type(self).__name__} does not define _collate()")

    def inference_inputs(self, path: Path, video_id: str, **given: Any) -> InferenceInput:
        """One input file prepared as this data module's ``predict`` loader prepares its items.

        ``vidlit infer`` (:mod:`vidlit.inference`) calls it for a checkpoint trained on this data
        module. A family overrides it: ``path`` is its main input (a video, or a feature file
        where the family reads stored features), and its keyword arguments are the other inputs
        its model needs, each a ``vidlit infer`` option of the same name (``texts``, ``window``,
        ``audio``, ``music``, ``frame``, ``boxes``, ...); an option the family's signature lacks
        is refused before this is called. Decoding, sampling and transforms are those of the
        ``predict`` split, read from this data module's own settings.

        Raises:
            ValueError: the data module has no one-input inference, or the input is unfit (the
                message names it and the option at fault).
            FileNotFoundError: a file the input needs is missing.
        """
        raise ValueError(f"{type(self).__name__}: vidlit infer has no one-input path for this data module")

    def setup(self, stage: str) -> None:
        self.datasets = {split: self.dataset(split) for split in self.STAGE_SPLITS[stage]}

    def _split(self, split: str) -> Dataset:
        datasets = getattr(self, "datasets", {})
        if split not in datasets:
            raise ValueError(f"{type(self).__name__} has no {split!r} split here (built: {sorted(datasets)})")
        return datasets[split]

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._split("train"), self._collate(), train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._split("val"), self._collate(), train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._split("test"), self._collate(), train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self._split("predict"), self._collate(), train=False)
