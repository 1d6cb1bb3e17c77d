"""Engines that run vidlit's resumable jobs (``curate``, ``extract``): in this process, or on Ray Data.

:mod:`~vidlit.engines.partitions` splits the input into deterministic partitions with done
markers and defines the staged :class:`~vidlit.engines.partitions.Pipeline`;
:func:`~vidlit.engines.partitions.run_local` and :func:`~vidlit.engines.ray_data.run_ray` run it;
:class:`~vidlit.core.storage.OutputFolder` writes the outputs to any fsspec URL.
"""

from __future__ import annotations

import argparse

from vidlit.core.storage import OutputFolder
from vidlit.engines.partitions import Partition, Pipeline, pending_partitions, run_local, split_partitions
from vidlit.engines.ray_data import RayOptions

ENGINES = ("local", "ray")


def add_engine_arguments(parser: argparse.ArgumentParser, per_partition: int, what: str) -> None:
    """``--engine``, ``--ray-*`` and ``--videos_per_partition``, shared by ``curate`` and ``extract``."""
    group = parser.add_argument_group("engine (resumable partitions; Ray Data to scale out)")
    group.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this process (default); ray: Ray Data (pip install 'vidlit[ray]')",
    )
    group.add_argument(
        "--ray-address",
        dest="ray_address",
        default=None,
        help="Ray cluster to join (auto, ray://head:10001, host:6379); default: start a local one",
    )
    group.add_argument(
        "--ray-workers", dest="ray_workers", type=int, default=1, help="model actors (one model copy each)"
    )
    group.add_argument(
        "--ray-gpus-per-worker",
        dest="ray_gpus_per_worker",
        type=float,
        default=None,
        help="GPUs per model actor (default: 1 when the cluster has GPUs, else 0)",
    )
    group.add_argument(
        "--videos_per_partition",
        type=int,
        default=per_partition,
        help=f"videos per partition: each writes {what} and a done marker; a rerun skips done ones",
    )


def ray_options(options: argparse.Namespace) -> RayOptions:
    """The :class:`RayOptions` of parsed :func:`add_engine_arguments` flags."""
    return RayOptions(options.ray_address, options.ray_workers, options.ray_gpus_per_worker)


__all__ = [
    "ENGINES",
    "OutputFolder",
    "RayOptions",
    "add_engine_arguments",
    "Partition",
    "Pipeline",
    "pending_partitions",
    "ray_options",
    "run_local",
    "split_partitions",
]
