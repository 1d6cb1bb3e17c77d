"""Retrieval ranks: vidlit's ``retrieval_ranks`` vs a plain numpy rank computation.

The peer is the rank computation written directly in numpy, as retrieval code bases do it:

    best = sim[np.arange(n), positive][:, None]
    ranks = (sim >= best).sum(axis=1)            # the correct item counts itself: 1-based

Both get the same ``N x N`` float32 similarity (random normal) and one correct item per query;
rounds alternate A/B and the ratio is taken per pass (numpy time / vidlit time: > 1 means vidlit
is faster). Peak extra memory is ``tracemalloc``'s peak during one call (numpy reports its
allocations to it; vidlit's CPU path allocates only numpy arrays besides O(N) torch index checks).

    python benchmarks/bench_retrieval.py                  # N = 1000, 5000
    python benchmarks/bench_retrieval.py --sizes 10000 --rounds 7
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tracemalloc

import numpy as np
import torch
from _rounds import alternate, ratio_range

from vidlit.metrics.retrieval import retrieval_ranks


def numpy_ranks(sim: np.ndarray, positive: np.ndarray) -> np.ndarray:
    best = sim[np.arange(len(sim)), positive][:, None]
    return (sim >= best).sum(axis=1)


def make(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, n, generator=g), torch.randint(0, n, (n,), generator=g)


def peak_extra_mib(fn) -> float:
    """Peak traced allocation, in MiB, during one call of ``fn``."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch threads 1; load average at start {os.getloadavg()}")
    header = "| N | similarity MiB | vidlit ms | numpy ms | ratio (median, min-max) |"
    header += " extra peak MiB vidlit / numpy |"
    print(header)
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        sim, pos = make(n)
        s, p = sim.numpy(), pos.numpy()
        ours, peer = functools.partial(retrieval_ranks, sim, pos), functools.partial(numpy_ranks, s, p)
        assert np.array_equal(retrieval_ranks(sim, pos).numpy(), numpy_ranks(s, p))  # also compiles
        ours_s, peer_s = alternate(args.rounds, ours, peer)
        median, low, high = ratio_range(peer_s, ours_s)
        mem = f"{peak_extra_mib(ours):.2f} / {peak_extra_mib(peer):.2f}"
        print(
            f"| {n} | {sim.numel() * 4 / 2**20:.0f} | {1e3 * statistics.median(ours_s):.2f} | "
            f"{1e3 * statistics.median(peer_s):.2f} | {median:.2f}x ({low:.2f}-{high:.2f}) | {mem} |"
        )
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
