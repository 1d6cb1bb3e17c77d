"""Seeded epochs and resumable loaders: data order that depends only on ``(seed, epoch)``, without Lightning.

Everything here runs in plain PyTorch, so the streaming and curation paths (:mod:`vidlit.data.shards`,
``vidlit curate``, ``vidlit extract`` and their Ray Data workers) use it without importing Lightning,
whose import alone costs seconds per process. :mod:`vidlit.data.base` re-exports every name and
adds the Lightning side: :class:`~vidlit.data.base.VidlitDataModule`, which builds these loaders,
and :class:`~vidlit.data.base.CountTrainedBatches`, which tells a loader's :class:`LoaderPosition`
which batches were trained.

Training loaders are resumable mid-epoch: they implement ``state_dict`` / ``load_state_dict``,
which Lightning saves in every checkpoint (with the fit loop's state) and restores when a run
resumes from a checkpoint written inside an epoch (``ModelCheckpoint``'s ``every_n_train_steps``),
so the resumed run reads on from the first sample the checkpointed model had not trained on: no
sample twice, none skipped (:class:`LoaderPosition`).
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable, Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, Sampler, get_worker_info

__all__ = [
    "EpochSeeded",
    "EpochShuffleSampler",
    "EpochStreamLoader",
    "LoaderPosition",
    "ResumableLoader",
    "gather_ranks",
    "global_seed",
]


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


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather_ranks(mine: Any) -> list[Any]:
    """Every rank's ``mine``, in rank order (``[mine]`` in one process); every rank must call it.

    For state a checkpoint keeps per rank: Lightning asks every rank for its state when it writes a
    checkpoint, and rank 0 writes the file.
    """
    _, world = _rank_and_world()
    if world == 1:
        return [mine]
    ranks = [None] * world
    torch.distributed.all_gather_object(ranks, mine)
    return ranks


class LoaderPosition:
    """How far training has read the current epoch of a training loader: what a checkpoint stores.

    A batch counts as read once its training step is done
    (:class:`~vidlit.data.base.CountTrainedBatches` calls :meth:`trained`), not when the loader
    yields it: Lightning fetches one batch ahead, so a checkpoint written after step ``k`` must not
    count batch ``k + 1``, and one written during step ``k`` (SLURM's requeue signal) must not
    count batch ``k``, which Lightning trains again.
    Positions are kept per reader: for a map-style dataset, the samples of this rank's sampler
    order trained so far (one reader, 0); for a stream (an ``IterableDataset``
    with ``set_start``), the items each reader's stream (one per DataLoader worker) had given up
    to its last trained batch, which the stream skips on resume, and the reader of the last
    trained batch: a DataLoader takes its workers' batches in turn, so the resumed epoch must go
    on with the reader after it (:class:`EpochStreamLoader`).

    The state (:meth:`state_dict`) also holds the epoch the trainer would iterate next if it
    resumed from this checkpoint (``epoch_fn()`` when it is written), so a resumed loader knows its
    epoch even when Lightning builds its iterator before restoring the trainer's loops (it does,
    when ``configure_optimizers`` asks for ``estimated_stepping_batches``), and whether the
    checkpoint is inside that epoch (then its positions apply) or at its end (they do not).

    Resuming a map-style loader inside an epoch with another ``num_workers`` or ``batch_size`` is
    exact (indices are drawn in the main process); a stream's shards are dealt to
    ``ranks x workers`` readers, so a changed reader count, like a changed rank count for either
    kind, is refused with one line (:meth:`check`).

    Args:
        epoch_fn: the epoch the trainer is about to iterate.
        num_workers: the stream's DataLoader workers; None for a map-style loader.
    """

    def __init__(self, epoch_fn: Callable[[], int], num_workers: int | None = None) -> None:
        self.epoch_fn = epoch_fn
        self.num_workers = num_workers
        self.epoch = -1  # the epoch being read; -1 before the first
        self.consumed: dict[int, int] = {}  # reader -> position reached by trained batches
        self.last_reader = -1  # reader of the last trained batch (-1: none yet this epoch)
        self.epoch_done = False  # the epoch's last batch is trained: a checkpoint now resumes the next
        self._pending: deque[tuple[int, int]] = deque()  # (reader, position) of yielded batches
        self._resume: dict[str, Any] | None = None

    # -- while an epoch runs ---------------------------------------------------------------------

    def start_epoch(self) -> tuple[int, dict[int, int], int]:
        """Begin an epoch: ``(epoch, position to start each reader at, reader of the last trained batch)``.

        The epoch is ``epoch_fn()``, or a loaded state's resume epoch; positions are empty and the
        reader -1 unless the loaded state was written inside that epoch.
        """
        resume, self._resume = self._resume, None
        self.epoch = self.epoch_fn() if resume is None else int(resume["resume_epoch"])
        self._pending.clear()
        self.epoch_done = False
        mine = {"positions": {}, "last_reader": -1}
        if resume is not None and self._inside(resume):
            mine = resume["ranks"][_rank_and_world()[0]]
        self.consumed = {int(k): int(v) for k, v in mine["positions"].items()}
        self.last_reader = int(mine["last_reader"])
        return self.epoch, dict(self.consumed), self.last_reader

    def yielded(self, reader: int, position: int) -> None:
        """A batch left the loader: ``reader``'s stream had then given ``position`` items."""
        self._pending.append((reader, position))

    def trained(self, last: bool = False) -> None:
        """The oldest yielded batch goes to a training step (``last``: the epoch's last batch)."""
        if self._pending:
            reader, position = self._pending.popleft()
            self.consumed[reader] = position
            self.last_reader = reader
        # a step checkpoint after it is at the epoch's end, though the trainer still counts the epoch
        self.epoch_done = self.epoch_done or last

    # -- checkpoints ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "resume_epoch", "world_size", "num_workers", "ranks": [{"positions",
        "last_reader"}, ...]}``; empty before the first epoch.

        Under ``torch.distributed`` every rank's positions are gathered (every rank calls this
        when Lightning writes a checkpoint; rank 0 writes the file).
        """
        if self.epoch < 0:
            return {}
        _, world = _rank_and_world()
        mine = {
            "positions": {int(k): int(v) for k, v in self.consumed.items()},
            "last_reader": self.last_reader,
        }
        ranks = gather_ranks(mine)
        return {
            "epoch": self.epoch,
            "resume_epoch": self.epoch + 1 if self.epoch_done else self.epoch_fn(),
            "world_size": world,
            "num_workers": self.num_workers,
            "ranks": ranks,
        }

    @staticmethod
    def _inside(state: dict[str, Any]) -> bool:
        # written inside the epoch a resumed trainer iterates (not at its end: then it moved on)
        return int(state["epoch"]) == int(state["resume_epoch"])

    def load_state_dict(self, state: dict[str, Any], what: str = "its samples") -> None:
        """Resume from ``state`` at the next :meth:`start_epoch`.

        Raises:
            ValueError: the state is inside an epoch and was written with another number of ranks,
                or (streams) of DataLoader workers: one line naming both.
        """
        if not state:
            return
        _, world = _rank_and_world()
        streams = self.num_workers is not None  # a stream's readers are its rank's workers

        def readers(ranks: int, workers: int | None) -> str:
            return f"{ranks} rank(s)" + (f" x {workers} worker(s)" if streams else "")

        saved_world, saved_workers = int(state["world_size"]), state.get("num_workers")
        changed = saved_world != world or (streams and saved_workers != self.num_workers)
        if changed and self._inside(state):
            had = readers(saved_world, saved_workers)
            raise ValueError(
                f"cannot resume mid-epoch: the checkpoint read {what} with {had}, "
                f"this run has {readers(world, self.num_workers)}; resume with the same ranks"
                f"{' and num_workers' if streams else ''}, or from an end-of-epoch checkpoint"
            )
        self._resume = state


class _TaggedBatch:
    """A batch from a stream, with the reader that made it and its stream position (see ``_TagBatches``)."""

    __slots__ = ("batch", "position", "reader")

    def __init__(self, batch: Any, reader: int, position: int):
        self.batch, self.reader, self.position = batch, reader, position


class _TagBatches:
    """Collate, then tag the batch with the reader that made it and how far its stream has read.

    Runs where the batch is collated (the DataLoader worker, or the main process), right after
    the items were taken: the stream's ``stream_position()`` then gives ``(reader, items taken)``.
    """

    def __init__(self, collate_fn: Callable, dataset: IterableDataset):
        self.collate_fn = collate_fn
        self.dataset = dataset

    def __call__(self, samples: Any) -> _TaggedBatch:
        info = get_worker_info()
        dataset = info.dataset if info is not None else self.dataset
        reader, position = dataset.stream_position()
        return _TaggedBatch(self.collate_fn(samples), reader, position)


class EpochStreamLoader(DataLoader):
    """A ``DataLoader`` over an ``IterableDataset`` with ``set_epoch``, told the epoch at each ``iter``.

    For a map-style dataset, Lightning hands the epoch to the sampler; an ``IterableDataset``
    has none, so its ``set_epoch`` is never called and every epoch would repeat the first
    one's order. This loader asks ``epoch_fn`` (e.g. the trainer's epoch) each time
    an iteration starts, in the main process and before any worker starts (or, with
    ``persistent_workers``, resumes) reading, and passes it to ``dataset.set_epoch``. Lightning
    calls ``iter`` once per epoch, after restoring a checkpoint's epoch on resume, so a resumed
    run streams epoch ``k`` exactly as an uninterrupted one does.

    With a ``position`` and a stream that can start mid-way (``set_start(offsets, first_reader)``
    and ``stream_position()``, as :class:`~vidlit.data.shards.VideoTextShards`), the loader is
    resumable mid-epoch: every batch carries the reader (worker stream) that made it and how far
    that stream had read, :meth:`state_dict` holds each reader's position reached by trained
    batches, and after :meth:`load_state_dict` the next ``iter`` of the same epoch starts each
    reader's stream there, worker 0 reading the stream whose turn was next, so the batches come
    in the uninterrupted run's order (see :class:`LoaderPosition`).

    Args:
        dataset: an ``IterableDataset`` with ``set_epoch(int)``
            (e.g. :class:`~vidlit.data.shards.VideoTextShards`).
        epoch_fn: returns the epoch about to be iterated; None leaves the dataset's epoch alone.
        position: tracks how far training read (training loaders); None: not resumable mid-epoch.
        kwargs: ``DataLoader`` arguments.
    """

    def __init__(
        self,
        dataset: IterableDataset,
        epoch_fn: Callable[[], int] | None = None,
        position: LoaderPosition | None = None,
        **kwargs: Any,
    ):
        if position is not None and hasattr(dataset, "set_start") and "collate_fn" in kwargs:
            kwargs["collate_fn"] = _TagBatches(kwargs["collate_fn"], dataset)
        else:
            position = None  # a stream that cannot start mid-way resumes at epoch starts only
        super().__init__(dataset, **kwargs)
        self.epoch_fn = epoch_fn
        self.position = position

    def __iter__(self) -> Iterator[Any]:
        if self.position is None:
            if self.epoch_fn is not None:
                self.dataset.set_epoch(self.epoch_fn())
            return super().__iter__()
        # before the workers start (or resume) reading: they read epoch and start in shared memory
        epoch, offsets, last_reader = self.position.start_epoch()
        self.dataset.set_epoch(epoch)
        self.dataset.set_start(offsets, first_reader=(last_reader + 1) % max(self.num_workers, 1))
        return self._untag(super().__iter__())

    def _untag(self, batches: Iterator[_TaggedBatch]) -> Iterator[Any]:
        for tagged in batches:
            self.position.yielded(tagged.reader, tagged.position)
            yield tagged.batch

    def state_dict(self) -> dict[str, Any]:
        """Each reader's stream position reached by trained batches (Lightning saves it in checkpoints)."""
        return {} if self.position is None else self.position.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the saved epoch where training stopped reading; refuses a changed rank or worker count."""
        if self.position is not None:
            self.position.load_state_dict(state, "its shards")


class _ResumedBatches:
    """The batch sampler of a :class:`ResumableLoader`: skips the trained samples of a resumed epoch
    and tells the position how many samples each batch it hands out holds."""

    def __init__(self, batch_sampler: BatchSampler, position: LoaderPosition):
        self.batch_sampler = batch_sampler
        self.position = position
        self.skip = 0  # set by the loader around the creation of an epoch's iterator

    def __len__(self) -> int:
        # the whole epoch: Lightning counts a resumed epoch's batches on from the checkpoint's
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[list[int]]:
        # read now, not when the first batch is drawn: the loader clears it after iter()
        return self._batches(self.skip)

    def _batches(self, skip: int) -> Iterator[list[int]]:
        sampler = self.batch_sampler
        taken = self.position.consumed.get(0, 0)
        if skip:
            indices = itertools.islice(iter(sampler.sampler), skip, None)
            batches = iter(lambda: list(itertools.islice(indices, sampler.batch_size)), [])
        else:
            batches = iter(sampler)
        for batch in batches:
            if sampler.drop_last and len(batch) < sampler.batch_size:
                return
            taken += len(batch)
            self.position.yielded(0, taken)
            yield batch


class ResumableLoader(DataLoader):
    """A map-style ``DataLoader`` that resumes mid-epoch at the first sample training had not read.

    Its state (:meth:`state_dict`, saved by Lightning in each checkpoint) is the number of samples
    of this epoch's sampler order that reached a training step; after :meth:`load_state_dict`, the
    next ``iter`` of the same epoch skips them by index (nothing is loaded), whatever
    ``num_workers`` or ``batch_size`` is now. The sampler's order must be a function of the epoch
    (:class:`EpochShuffleSampler`), so the skipped prefix is the one the checkpointed run read.

    Args:
        dataset: a map-style dataset.
        position: tracks how far training read (its ``epoch_fn`` gives the epoch); None: a plain
            ``DataLoader``.
        kwargs: ``DataLoader`` arguments.
    """

    def __init__(self, dataset: Dataset, position: LoaderPosition | None = None, **kwargs: Any):
        super().__init__(dataset, **kwargs)
        self.position = position
        self._resumed: _ResumedBatches | None = None

    @property
    def _index_sampler(self) -> Any:
        sampler = super()._index_sampler
        if self.position is None or not isinstance(sampler, BatchSampler):
            return sampler
        if self._resumed is None or self._resumed.batch_sampler is not sampler:
            self._resumed = _ResumedBatches(sampler, self.position)
        return self._resumed

    def __iter__(self) -> Iterator[Any]:
        if self.position is None:
            return super().__iter__()
        # the sampler asks the data module for its epoch, which is the position's from now on
        _, offsets, _ = self.position.start_epoch()
        resumed = self._index_sampler
        resumed.skip = offsets.get(0, 0)
        try:
            return super().__iter__()
        finally:
            resumed.skip = 0

    def state_dict(self) -> dict[str, Any]:
        """The samples of this epoch's order that training read (Lightning saves it in checkpoints)."""
        return {} if self.position is None else self.position.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the saved epoch after its trained samples; refuses a changed number of ranks."""
        if self.position is not None:
            self.position.load_state_dict(state)
