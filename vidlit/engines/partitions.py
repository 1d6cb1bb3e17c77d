"""Deterministic partitions, done markers and the staged pipeline both engines run.

A resumable job (``vidlit curate``, ``vidlit extract``) splits its input list into consecutive
partitions of ``size`` items: partition ``p`` holds items ``[p * size, (p + 1) * size)`` of the
list, whatever engine runs it and however many workers it has. A partition's outputs have
names derived from ``p`` (or from its items), are written atomically, and then a **done
marker** (``partitions/part-000003.json``) records the partition's items (each name with a
digest of its input row: :func:`row_digest`) and what became of them. A rerun skips every
partition whose marker exists and lists the same items with the same digests; the rest (never
finished, killed mid-way, or made from other items or other rows, e.g. edited captions, because
the input list changed) are done again, writing the same names.

Each item goes through three stages (:class:`Pipeline`):

1. ``decode(item)`` on a CPU worker yields the item's rows (one row, or e.g. one per chunk of
   windows of a long video, so no video is ever whole in memory);
2. ``model(row)`` runs the model on each row, in a pool of model workers (Ray actors, each
   with a GPU when there is one) or in this process;
3. ``finish(row)`` (optional) is CPU work after the model (e.g. encoding the kept clips).

The driver gathers each item's finished rows in order (``on_item``) and, once every item of a
partition is in, writes the partition (``on_partition``). :func:`run_local` runs the stages in
this process (decoding optionally in DataLoader worker processes);
:func:`vidlit.engines.ray_data.run_ray` runs them on Ray Data. Both call the same stage
functions and the same writers, so their outputs are identical.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vidlit.core.storage import OutputFolder

__all__ = [
    "MARKERS",
    "Partition",
    "Pipeline",
    "pending_partitions",
    "row_digest",
    "run_local",
    "split_partitions",
]

MARKERS = "partitions"  # folder of the done markers inside an output folder
MARKER_PATTERN = MARKERS + "/part-%06d.json"


@dataclass(frozen=True)
class Partition:
    """Items ``[index * size, index * size + len(items))`` of the input list.

    Attributes:
        index: the partition's number (names its outputs and its done marker).
        items: the work items (picklable: they travel to Ray workers).
        names: one name per item, recorded in the done marker (e.g. the video's path as listed).
        digests: one :func:`row_digest` per item (empty: none), recorded beside its name.
    """

    index: int
    items: tuple[Any, ...]
    names: tuple[str, ...]
    digests: tuple[str, ...] = ()

    @property
    def marker(self) -> str:
        """The done marker's name in the output folder."""
        return MARKER_PATTERN % self.index

    @property
    def marker_items(self) -> list[Any]:
        """The done marker's ``items``: ``[name, digest]`` per item (the bare names without digests)."""
        if not self.digests:
            return list(self.names)
        return [[name, digest] for name, digest in zip(self.names, self.digests)]


def row_digest(row: Any) -> str:
    """SHA-256 of ``row``'s canonical JSON (sorted keys, no spaces): a done marker records it per
    item, so that a row edited under the same name (other captions, another id) is done again."""
    canonical = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def split_partitions(
    items: Sequence[Any], names: Sequence[str], size: int, rows: Sequence[Any] | None = None
) -> list[Partition]:
    """Consecutive partitions of ``size`` items (the last holds the rest).

    Args:
        items: the work items.
        names: one name per item.
        size: items per partition.
        rows: one JSON-serializable input row per item (what the item was made from); its
            :func:`row_digest` goes into the done marker. None: names only.

    Raises:
        ValueError: ``size`` is not positive, or ``names`` or ``rows`` does not match ``items``.
    """
    if size < 1:
        raise ValueError(f"the partition size must be positive, got {size}")
    if len(names) != len(items):
        raise ValueError(f"{len(items)} items but {len(names)} names")
    if rows is not None and len(rows) != len(items):
        raise ValueError(f"{len(items)} items but {len(rows)} rows")
    digests = [row_digest(row) for row in rows] if rows is not None else []
    return [
        Partition(
            p // size, tuple(items[p : p + size]), tuple(names[p : p + size]), tuple(digests[p : p + size])
        )
        for p in range(0, len(items), size)
    ]


def pending_partitions(
    folder: OutputFolder, partitions: Sequence[Partition], complete: Callable[[Partition, dict], bool]
) -> tuple[list[Partition], dict[int, dict[str, Any]]]:
    """``(partitions to do, {index: marker} of those done earlier)``.

    A partition is done when its marker exists, lists the same items with the same row digests
    (:attr:`Partition.marker_items`), and ``complete(partition, marker)`` holds (e.g. its output
    files are all there, and none of its items failed).
    """
    todo, done = [], {}
    markers = set(folder.list(MARKERS))  # one listing, not a request per partition (object stores)
    for partition in partitions:
        marker = folder.read_json(partition.marker, "done marker") if partition.marker in markers else None
        if (
            isinstance(marker, dict)
            and marker.get("items") == partition.marker_items
            and complete(partition, marker)
        ):
            done[partition.index] = marker
        else:
            todo.append(partition)
    return todo, done


@dataclass(frozen=True)
class Pipeline:
    """The stages of one item (see the module docstring); every callable must pickle (module-level
    functions, ``functools.partial`` of them, or instances of module-level classes).

    Attributes:
        decode: ``item -> iterable of rows``, CPU work.
        model: builds the model stage where it will run (once per worker): ``() -> (row -> row)``.
        finish: ``row -> row`` CPU work after the model, or None.
    """

    decode: Callable[[Any], Iterable[Any]]
    model: Callable[[], Callable[[Any], Any]]
    finish: Callable[[Any], Any] | None = None


class Gather:
    """Collects finished rows per item and per partition, in any arrival order, and hands each
    complete item (its rows in order) and then each complete partition to the callbacks."""

    def __init__(
        self,
        partitions: Sequence[Partition],
        on_item: Callable[[Partition, int, list[Any]], Any],
        on_partition: Callable[[Partition, list[Any]], None],
    ):
        self.partitions = {p.index: p for p in partitions}
        self.on_item, self.on_partition = on_item, on_partition
        self.rows: dict[tuple[int, int], dict[int, Any]] = {}
        self.totals: dict[tuple[int, int], int] = {}
        self.items: dict[int, dict[int, Any]] = {p.index: {} for p in partitions if p.items}
        for p in partitions:  # a partition of no items (nothing to do in it) is complete now
            if not p.items:
                self.on_partition(p, [])

    def add(self, partition: int, position: int, seq: int, last: bool, row: Any) -> None:
        key = (partition, position)
        self.rows.setdefault(key, {})[seq] = row
        if last:
            self.totals[key] = seq + 1
        if len(self.rows[key]) != self.totals.get(key):
            return
        rows = self.rows.pop(key)
        del self.totals[key]
        part = self.partitions[partition]
        self.items[partition][position] = self.on_item(part, position, [rows[i] for i in range(len(rows))])
        if len(self.items[partition]) == len(part.items):
            results = self.items.pop(partition)
            self.on_partition(part, [results[i] for i in range(len(part.items))])

    def check_finished(self) -> None:
        """Raise when an engine ended with items or partitions still open (a lost row)."""
        if self.rows or self.items:
            open_parts = sorted(set(self.items) | {p for p, _ in self.rows})
            raise RuntimeError(f"the engine ended before partitions {open_parts} were complete")


def item_rows(decode: Callable[[Any], Iterable[Any]], item: Any) -> Iterator[tuple[int, bool, Any]]:
    """``(seq, last, row)`` for each row ``decode(item)`` yields (an item yields at least one row)."""
    iterator = iter(decode(item))
    try:
        row = next(iterator)
    except StopIteration:
        raise ValueError("a pipeline's decode stage must yield at least one row per item") from None
    seq = 0
    for following in iterator:
        yield seq, False, row
        seq, row = seq + 1, following
    yield seq, True, row


class _DecodedRows(IterableDataset):
    """The decoded rows of every item, items split over DataLoader workers (local engine)."""

    def __init__(self, work: list[tuple[int, int, Any]], decode: Callable[[Any], Iterable[Any]]):
        self.work, self.decode = work, decode

    def __iter__(self) -> Iterator[tuple[int, int, int, bool, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for partition, position, item in self.work[worker::workers]:
            for seq, last, row in item_rows(self.decode, item):
                yield partition, position, seq, last, row


def run_local(
    partitions: Sequence[Partition],
    pipeline: Pipeline,
    on_item: Callable[[Partition, int, list[Any]], Any],
    on_partition: Callable[[Partition, list[Any]], None],
    num_workers: int = 0,
) -> None:
    """Run the pipeline over the partitions in this process.

    Args:
        partitions: the partitions to do.
        pipeline: the stages.
        on_item: ``(partition, position, rows) -> item result``, called as each item completes.
        on_partition: ``(partition, item results) -> None``, called as each partition completes.
        num_workers: DataLoader processes running ``decode`` (0: this process, item by item).
    """
    gather = Gather(partitions, on_item, on_partition)
    model = pipeline.model()
    work = [(p.index, i, item) for p in partitions for i, item in enumerate(p.items)]
    rows: Iterable[tuple[int, int, int, bool, Any]] = _DecodedRows(work, pipeline.decode)
    if num_workers > 0:
        rows = DataLoader(rows, batch_size=None, num_workers=num_workers)
    with torch.inference_mode():
        for partition, position, seq, last, row in rows:
            row = model(row)
            if pipeline.finish is not None:
                row = pipeline.finish(row)
            gather.add(int(partition), int(position), int(seq), bool(last), row)
    gather.check_finished()
