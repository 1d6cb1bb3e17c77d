"""The Ray Data engine: the stages of :mod:`vidlit.engines.partitions` on a Ray cluster.

Needs the optional extra ``pip install "vidlit[ray]"`` (``ray[data]``). The dataset is one row
per item of the pending partitions; ``decode`` runs as CPU tasks (``flat_map``), the model stage
in a pool of actors (``map_batches`` with a callable class, a fixed pool of ``workers`` actors,
each with ``gpus_per_worker`` GPUs), ``finish`` as CPU tasks again. The driver streams the
results (``iter_rows``) and writes each partition as it completes, so outputs land in the output
folder (local or any fsspec URL) from one place, with the same writers as the local engine.

Rows travel between stages as pickled bytes: the stages exchange tensors and nested records
that Arrow tables cannot hold as they are.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Iterable, Sequence
from inspect import signature
from typing import Any

from vidlit.engines.partitions import Gather, Partition, Pipeline, item_rows

log = logging.getLogger(__name__)

__all__ = ["RayOptions", "run_ray"]


def _require_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError(
            "--engine ray needs Ray Data: pip install 'vidlit[ray]' (or 'ray[data]>=2.9')"
        ) from None
    return ray


class RayOptions:
    """Where and how wide the Ray engine runs.

    Args:
        address: a running cluster (``auto``, ``ray://head:10001``, ``host:6379``); None connects to
            the cluster this process already joined (``ray.init`` called earlier), else starts a
            local one for the run and stops it after.
        workers: model actors (one model copy each).
        gpus_per_worker: GPUs each model actor reserves; None: 1 when the cluster has GPUs, else 0.
        cpus_per_worker: CPUs each model actor reserves (when it has no GPU).
        cpus_per_task: CPUs each decode / finish task reserves.
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int = 1,
        gpus_per_worker: float | None = None,
        cpus_per_worker: float = 1.0,
        cpus_per_task: float = 1.0,
    ):
        if workers < 1:
            raise ValueError(f"workers must be positive, got {workers}")
        if cpus_per_worker <= 0 or cpus_per_task <= 0:
            raise ValueError(
                f"CPUs per worker and per task must be positive, got {cpus_per_worker}, {cpus_per_task}"
            )
        self.address, self.workers = address, workers
        self.gpus_per_worker, self.cpus_per_worker, self.cpus_per_task = (
            gpus_per_worker,
            cpus_per_worker,
            cpus_per_task,
        )


def _decode(row: dict[str, Any], decode: Callable[[Any], Iterable[Any]]) -> Iterable[dict[str, Any]]:
    item = pickle.loads(row["item"])
    for seq, last, out in item_rows(decode, item):
        yield {
            "partition": row["partition"],
            "position": row["position"],
            "seq": seq,
            "last": last,
            "payload": pickle.dumps(out, protocol=5),
        }


def _finish(row: dict[str, Any], finish: Callable[[Any], Any]) -> dict[str, Any]:
    return {**row, "payload": pickle.dumps(finish(pickle.loads(row["payload"])), protocol=5)}


class _ModelActor:
    """One model worker: builds the model stage once, then runs it on each row of its batches."""

    def __init__(self, build: Callable[[], Callable[[Any], Any]]):
        import torch

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.stage = build()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import torch

        with torch.inference_mode():
            payloads = [pickle.dumps(self.stage(pickle.loads(p)), protocol=5) for p in batch["payload"]]
        return {**batch, "payload": payloads}


def run_ray(
    partitions: Sequence[Partition],
    pipeline: Pipeline,
    on_item: Callable[[Partition, int, list[Any]], Any],
    on_partition: Callable[[Partition, list[Any]], None],
    options: RayOptions | None = None,
    progress: bool = False,
) -> None:
    """Run the pipeline over the partitions on Ray Data (see the module docstring).

    Args:
        partitions: the partitions to do.
        pipeline: the stages (everything in it is pickled to the workers).
        on_item: as :func:`~vidlit.engines.partitions.run_local`; runs on the driver.
        on_partition: as :func:`~vidlit.engines.partitions.run_local`; runs on the driver.
        options: cluster address and pool sizes.
        progress: show Ray Data's progress bars.

    Raises:
        ImportError: Ray Data is not installed.
    """
    ray = _require_ray()
    options = options or RayOptions()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
    started = False
    if ray.is_initialized() and options.address is not None:
        log.warning(
            "--ray-address %s ignored: this process already joined a Ray cluster (ray.init called earlier)",
            options.address,
        )
    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=False, logging_level=logging.WARNING)
        started = True
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress
        context.execution_options.verbose_progress = False
        resources = ray.cluster_resources()
        gpus = options.gpus_per_worker
        if gpus is None:
            gpus = 1 if resources.get("GPU", 0) > 0 else 0
        cpus = resources.get("CPU", 0)
        work = [
            {"partition": p.index, "position": i, "item": pickle.dumps(item, protocol=5)}
            for p in partitions
            for i, item in enumerate(p.items)
        ]
        actors = min(options.workers, len(work))  # the pool is no larger than the items to do
        if work and not gpus and actors * options.cpus_per_worker + options.cpus_per_task > cpus:
            # Ray Data would wait forever: the actors hold every CPU and no decoding task can start
            raise ValueError(
                f"--ray-workers {options.workers}: {actors} model actors of {options.cpus_per_worker:g} CPU "
                f"each leave no CPU for the decoding tasks ({options.cpus_per_task:g} CPU each) on a "
                f"cluster of {cpus:g} CPUs; use fewer workers"
            )
        gather = Gather(partitions, on_item, on_partition)
        if work:
            from functools import partial

            # one block per item, so items spread over the workers (``parallelism`` before Ray 2.10)
            blocks = (
                "override_num_blocks"
                if "override_num_blocks" in signature(ray.data.from_items).parameters
                else "parallelism"
            )
            dataset = ray.data.from_items(work, **{blocks: len(work)})
            dataset = dataset.flat_map(
                partial(_decode, decode=pipeline.decode), num_cpus=options.cpus_per_task
            )
            actor = {"num_gpus": gpus} if gpus else {"num_cpus": options.cpus_per_worker}
            dataset = dataset.map_batches(
                _ModelActor,
                fn_constructor_kwargs={"build": pipeline.model},
                compute=ray.data.ActorPoolStrategy(size=actors),
                batch_size=1,  # a row is a video or a chunk of windows: already a batch for the model
                **actor,
            )
            if pipeline.finish is not None:
                dataset = dataset.map(
                    partial(_finish, finish=pipeline.finish), num_cpus=options.cpus_per_task
                )
            for row in dataset.iter_rows():
                gather.add(
                    int(row["partition"]),
                    int(row["position"]),
                    int(row["seq"]),
                    bool(row["last"]),
                    pickle.loads(row["payload"]),
                )
        gather.check_finished()
    finally:
        if started:
            ray.shutdown()
