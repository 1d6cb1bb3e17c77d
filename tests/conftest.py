"""Shared fixtures: sample datasets are generated once per test session."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")

# Under pytest-xdist every worker gets its share of the cores, and so do the processes a test
# starts (they inherit OMP_NUM_THREADS). Two workers of two intra-op threads each on two cores
# stall each other's OpenMP barriers: a 30 s test took 110 s beside another.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, len(os.sched_getaffinity(0)) // _WORKERS))  # the cores this process may use
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))
torch.set_num_threads(min(_THREADS, torch.get_num_threads()))

ROOT = Path(__file__).resolve().parents[1]


class _ExclusiveLock:
    """Tests marked ``exclusive`` (they start processes of their own: DDP, several nodes, Ray, a
    run killed and resumed) run with no test of another xdist worker beside them; the others run
    side by side as usual. A readers-writer lock on two files shared by the run's workers: an
    exclusive test first takes the ``turn`` file, so that the other worker's next test waits
    instead of overtaking it, then waits for the running test to finish."""

    def __init__(self, folder: Path):
        self.turn = open(folder / "vidlit-turn.lock", "a+")  # noqa: SIM115 (held for the worker's life)
        self.running = open(folder / "vidlit-running.lock", "a+")  # noqa: SIM115

    @contextlib.contextmanager
    def hold(self, exclusive: bool):
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        fcntl.flock(self.turn, mode)
        if not exclusive:
            fcntl.flock(self.turn, fcntl.LOCK_UN)
        fcntl.flock(self.running, mode)
        try:
            yield
        finally:
            fcntl.flock(self.running, fcntl.LOCK_UN)
            fcntl.flock(self.turn, fcntl.LOCK_UN)


_lock: _ExclusiveLock | None = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _lock
    if not hasattr(item.config, "workerinput") or _WORKERS < 2:
        yield
        return
    if _lock is None:  # the run's temporary folder (pytest-N), above each worker's popen-gwK
        _lock = _ExclusiveLock(item.config._tmp_path_factory.getbasetemp().parent)
    # the wait is outside setup / call / teardown, so --durations times the test alone
    with _lock.hold(exclusive="exclusive" in item.keywords):
        yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# what Lightning's seed_everything exports for the rest of the process; a test file that runs
# the CLI would otherwise hand its seed to whichever file runs next in the same (xdist) worker
_SEED_VARIABLES = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")


@pytest.fixture(autouse=True, scope="module")
def _seed_does_not_leak_into_the_next_file():
    saved = {name: os.environ.get(name) for name in _SEED_VARIABLES}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def one_thread():
    """Run a test with one intra-op thread: tiny tensors gain nothing from more, and OpenMP
    threads spin badly on a busy CI machine."""
    from vidlit.core.device import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture
def fit_one_step():
    """``fit_one_step(*args, root=data, runs=folder)``: ``vidlit fit ARGS`` for one training and one
    validation batch, data from ``root``, the run under ``runs``; returns its ``last.ckpt``."""
    from vidlit.cli import main

    def run(*args: str, root: Path, runs: Path) -> Path:
        one_step = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1"]
        one_step += ["--trainer.limit_val_batches", "1"]
        main(
            [
                "fit",
                *args,
                "--data.init_args.root",
                str(root),
                "--trainer.default_root_dir",
                str(runs),
                *one_step,
            ]
        )
        (ckpt,) = Path(runs).glob("version_*/checkpoints/last.ckpt")
        return ckpt

    return run


@pytest.fixture
def infer(capsys):
    """``infer(*args)``: run ``vidlit infer ARGS`` (warnings silenced) and return the JSON it printed."""
    from vidlit.cli import main

    def run(*args: str):
        capsys.readouterr()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main(["infer", *args])
        return json.loads(capsys.readouterr().out)

    return run


@pytest.fixture
def zero_frames():
    """``zero_frames(source, target, first, count)``: copy an MP4 with
    the packets of frames ``first`` to ``first + count - 1`` zeroed: the video opens, and decoding
    fails part way (as a download with a hole does), after good frames."""
    return _zero_frames


def _zero_frames(source: Path, target: Path, first: int, count: int) -> None:
    import av

    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.pts is not None and p.size]  # not the flush
        packets = sorted((p.pts, p.pos, p.size) for p in packets)
    data = bytearray(source.read_bytes())
    for _, pos, size in packets[first : first + count]:
        data[pos : pos + size] = bytes(size)
    target.write_bytes(bytes(data))


@pytest.fixture(scope="session")
def mq_root(tmp_path_factory) -> Path:
    """The synthetic Ego4D MQ sample dataset the recipe uses, generated once."""
    from vidlit.data.synth.ego4d_mq import write_ego4d_mq

    return write_ego4d_mq(tmp_path_factory.mktemp("ego4d_mq") / "data")


class NLQRun(NamedTuple):
    """A tiny trained NLQ checkpoint and what trained it."""

    data: Path  # the synthetic dataset (features under ``features/``)
    ckpt: Path  # ``last.ckpt`` of the run
    args: list[str]  # the configs, data root and run folder ``fit`` was given, for ``predict`` with them


# the NLQ recipe at CPU-test size; text_test is the tiny text tower
NLQ_SMALL = """
model:
  init_args:
    head:
      init_args: {dim: 32, num_heads: 4, conv_layers: 2, dropout: 0.0, text_encoder: text_test}
data:
  init_args: {feature_dim: 64, batch_size: 8}
"""


@pytest.fixture(scope="session")
def nlq_run(tmp_path_factory) -> NLQRun:
    """``recipes/ego4d_nlq.yaml`` at test size, one epoch on a few synthetic videos, trained once."""
    from vidlit.cli import main
    from vidlit.data.synth.ego4d_nlq import write_ego4d_nlq

    root = tmp_path_factory.mktemp("nlq_run")
    data = write_ego4d_nlq(
        root / "data", num_train_videos=4, num_val_videos=2, num_test_videos=1, feature_dim=64,
        clip_steps=(24, 48),
    )  # fmt: skip
    small = root / "small.yaml"
    small.write_text(NLQ_SMALL)
    runs = root / "runs"
    args = ["--config", str(ROOT / "recipes" / "ego4d_nlq.yaml"), "--config", str(small)]
    args += ["--data.init_args.root", str(data), "--trainer.default_root_dir", str(runs)]
    main(["fit", *args, "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1"])
    return NLQRun(data, runs / "version_0" / "checkpoints" / "last.ckpt", args)
