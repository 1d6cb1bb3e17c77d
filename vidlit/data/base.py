"""What every vidlit data module shares: loaders whose order depends only on (seed, epoch)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

log = logging.getLogger(__name__)


def split_files(
    root: Path, train: str, val: str, test: str | None = None, predict: str | None = None
) -> dict[str, Path]:
    """The annotation file of each split under ``root``; ``test`` and ``predict`` default to ``val``."""
    return {
        "train": root / train,
        "val": root / val,
        "test": root / (test or val),
        "predict": root / (predict or val),
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


def global_seed() -> int:
    """The run's seed: ``seed_everything``'s (the ``PL_GLOBAL_SEED`` it exports), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class EpochSeeded:
    """Mixin for datasets whose randomness is a pure function of ``(seed, epoch, key...)``.

    The epoch lives in a shared-memory tensor, so :meth:`set_epoch` called in the main process
    reaches persistent DataLoader workers too, and an item draws from a generator seeded by
    its own key (its index, or a reader's ``(rank, worker)``), never from the worker's global
    RNG state: the same item gets the same draws in every worker, every run and after a resume.
    List it before the torch base (``class Clips(EpochSeeded, Dataset)``) and call
    ``super().__init__(seed)``. The seed sequence is ``[seed, epoch, *key]`` in that order:
    reordering it would change every stream (and the figures recipes reach).

    Args:
        seed: base seed (taken modulo ``2**32``).
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = seed % 2**32
        self.epoch = torch.zeros((), dtype=torch.long).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose randomness the next items use (also in live workers)."""
        self.epoch.fill_(epoch)

    def rng(self, *key: int) -> np.random.Generator:
        """A generator seeded by ``[seed, epoch, *key]`` (NumPy ``SeedSequence`` entropy)."""
        return np.random.default_rng([self.seed, int(self.epoch), *key])


class EpochShuffleSampler(Sampler[int]):
    """A random permutation that is a pure function of ``(seed, epoch)``.

    The epoch is read when iteration starts, from ``epoch_fn``. Lightning draws the first
    batch before it calls ``set_epoch``, so a sampler that relied on ``set_epoch`` would
    shuffle the first epoch after a resume with the wrong seed; asking the trainer instead
    makes a run killed mid-epoch and resumed from its last checkpoint see the same order
    as a run that was never interrupted.

    Args:
        data_source: the dataset (only its length is used).
        seed: base seed; defaults to ``PL_GLOBAL_SEED`` (set by ``seed_everything``) or 0.
        epoch_fn: returns the epoch about to be iterated.
    """

    def __init__(
        self, data_source: Sized, seed: int | None = None, epoch_fn: Callable[[], int] | None = None
    ):
        self.data_source = data_source
        self.seed = global_seed() if seed is None else seed
        self.epoch_fn = epoch_fn or (lambda: 0)

    def __len__(self) -> int:
        return len(self.data_source)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch_fn())
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class EpochStreamLoader(DataLoader):
    """A ``DataLoader`` over an ``IterableDataset`` with ``set_epoch``, told the epoch at each ``iter``.

    For a map-style dataset, Lightning hands the epoch to the sampler; an ``IterableDataset``
    has none, so its ``set_epoch`` is never called and every epoch would repeat the first
    one's order. This loader asks ``epoch_fn`` (e.g. the trainer's epoch) each time
    an iteration starts, in the main process and before any worker starts (or, with
    ``persistent_workers``, resumes) reading, and passes it to ``dataset.set_epoch``. Lightning
    calls ``iter`` once per epoch, after restoring a checkpoint's epoch on resume, so a resumed
    run streams epoch ``k`` exactly as an uninterrupted one does.

    Args:
        dataset: an ``IterableDataset`` with ``set_epoch(int)`` (e.g. :class:`VideoTextShards`).
        epoch_fn: returns the epoch about to be iterated; None leaves the dataset's epoch alone.
        kwargs: ``DataLoader`` arguments.
    """

    def __init__(self, dataset: IterableDataset, epoch_fn: Callable[[], int] | None = None, **kwargs: Any):
        super().__init__(dataset, **kwargs)
        self.epoch_fn = epoch_fn

    def __iter__(self) -> Iterator[Any]:
        if self.epoch_fn is not None:
            self.dataset.set_epoch(self.epoch_fn())
        return super().__iter__()


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
        # whose sampling depends on the epoch (``set_epoch``)
        epoch = self._trainer_epoch()
        set_epoch = getattr(getattr(self, "datasets", {}).get("train"), "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        return epoch

    def _loader(self, dataset: Dataset, collate_fn: Callable, train: bool) -> DataLoader:
        if isinstance(dataset, IterableDataset):
            # it shuffles itself (if it trains): the loader gives it the epoch as each one starts,
            # before the (persistent) workers read on
            return EpochStreamLoader(
                dataset,
                epoch_fn=self._trainer_epoch if train and hasattr(dataset, "set_epoch") else None,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                persistent_workers=self.num_workers > 0,
                collate_fn=collate_fn,
            )
        make_sampler = self.train_sampler or EpochShuffleSampler
        sampler = make_sampler(dataset, epoch_fn=self._current_epoch) if train else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False if sampler is None else None,
            drop_last=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_fn,
        )

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
