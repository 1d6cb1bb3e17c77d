"""Op-heavy code under CPU contention: the MQ metric and the ActionFormer head's forward.

In training the other cores are busy (data-loader workers, the training step itself), and
intra-op parallelism then costs more than it gives: each op waits for a thread that has no core.
This benchmark makes that situation on purpose: it starts one busy-loop process (bounded by
``--busy-seconds`` and stopped at the end), sets 2 torch threads, and times

- ``TemporalActionMAP`` (``update`` + ``compute``) against the plain numpy reference of the same
  protocol (the official Ego4D MQ evaluation, as ``tests/metrics/test_temporal_map.py`` ports
  it) on the same random clips; ratio = reference seconds / vidlit seconds per pass;
- the ActionFormer head's forward (``ActionFormerHead``, Ego4D MQ sizes: 2304 input channels,
  110 classes, 8 levels, eval mode, no grad) at ``--length`` steps, with the torch thread setting
  at 2 and at 1; ratio = 2-thread seconds / 1-thread seconds per pass (about 1 when the forward
  does not depend on the setting).

Rounds alternate the order of the sides; the load average (``os.getloadavg``) is printed before
and after.

    python benchmarks/bench_contention.py
    python benchmarks/bench_contention.py --rounds 7 --length 256 --clips 300
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import os
import statistics
import time
from pathlib import Path

import torch
from _rounds import alternate, ratio_range

from vidlit.heads.ego4d_mq import ActionFormerHead
from vidlit.metrics.temporal_map import TemporalActionMAP

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)


def _busy(deadline: float) -> None:  # pragma: no cover - runs in the busy process
    x = 0
    while time.time() < deadline:
        x += 1


def _reference_module():
    """The numpy port of the official evaluation that the metric's parity test checks against."""
    path = Path(__file__).resolve().parents[1] / "tests" / "metrics" / "test_temporal_map.py"
    spec = importlib.util.spec_from_file_location("_mq_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary(name: str, ta: list[float], tb: list[float], label_a: str, label_b: str, ratio: str) -> None:
    median, low, high = ratio_range(tb, ta) if ratio == "b/a" else ratio_range(ta, tb)
    print(
        f"{name}: {label_a} {statistics.median(ta) * 1e3:.1f} ms, "
        f"{label_b} {statistics.median(tb) * 1e3:.1f} ms, ratio {median:.2f}x ({low:.2f}-{high:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clips", type=int, default=300, help="clips scored by the metric")
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--length", type=int, default=256, help="feature steps of the head's forward")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the contended runs")
    parser.add_argument("--busy-seconds", type=float, default=600.0, help="upper bound of the busy loop")
    parser.add_argument("--no-busy", action="store_true", help="do not start the busy-loop process")
    args = parser.parse_args()

    ref = _reference_module()
    preds, targets = ref.random_clips(0, num_clips=args.clips, num_classes=args.classes)

    def vidlit_metric() -> dict[str, float]:
        metric = TemporalActionMAP(args.classes, tiou_thresholds=THRESHOLDS)
        metric.update(preds, targets)
        return metric.compute()

    def numpy_metric() -> dict[str, float]:
        return ref.reference(preds, targets, THRESHOLDS, (1,), 0.5)

    head = ActionFormerHead(2304, 110).eval()
    features = torch.randn(1, args.length, 2304, generator=torch.Generator().manual_seed(0))

    def forward() -> None:
        with torch.no_grad():
            head(features, {})

    def forward_threads(n: int):
        def run() -> None:
            torch.set_num_threads(n)
            try:
                forward()
            finally:
                torch.set_num_threads(args.threads)

        return run

    busy = None
    if not args.no_busy:
        busy = mp.get_context("spawn").Process(
            target=_busy, args=(time.time() + args.busy_seconds,), daemon=True
        )
        busy.start()
    try:
        torch.set_num_threads(args.threads)
        print(
            f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
            f"busy-loop process: {'no' if busy is None else 'yes'}"
        )
        print("load average at the start: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
        got, want = vidlit_metric(), numpy_metric()
        diff = max(abs(got[k] - want[k]) for k in got)
        print(
            f"metric: {args.clips} clips, {sum(len(p['labels']) for p in preds)} predictions, "
            f"mAP {got['mAP']:.4f}, max |vidlit - numpy| {diff:.2e}"
        )
        forward()  # warm-up
        ta, tb = alternate(args.rounds, vidlit_metric, numpy_metric)
        _summary("TemporalActionMAP", ta, tb, "vidlit", "numpy", "b/a")
        ta, tb = alternate(args.rounds, forward_threads(args.threads), forward_threads(1))
        _summary(
            f"ActionFormerHead forward T={args.length}", ta, tb, f"{args.threads} threads", "1 thread", "a/b"
        )
        print("load average at the end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    finally:
        if busy is not None:
            busy.terminate()
            busy.join()


if __name__ == "__main__":
    main()
