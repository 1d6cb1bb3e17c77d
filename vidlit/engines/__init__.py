"""Engines that run vidlit's resumable jobs (``curate``, ``extract``): in this process, or on Ray Data.

:mod:`~vidlit.engines.partitions` splits the input into deterministic partitions with done
markers and defines the staged :class:`~vidlit.engines.partitions.Pipeline`;
:func:`~vidlit.engines.partitions.run_local` and :func:`~vidlit.engines.ray_data.run_ray` run it;
:class:`~vidlit.engines.storage.OutputFolder` writes the outputs to any fsspec URL.
"""

from vidlit.engines.partitions import Partition, Pipeline, pending_partitions, run_local, split_partitions
from vidlit.engines.storage import OutputFolder

ENGINES = ("local", "ray")

__all__ = [
    "ENGINES",
    "OutputFolder",
    "Partition",
    "Pipeline",
    "pending_partitions",
    "run_local",
    "split_partitions",
]
