"""DDP on the CPU: the Ego4D MQ recipe in two gloo processes, exact metrics and submissions across ranks."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from vidlit.callbacks import SubmissionWriter
from vidlit.cli import main

TESTS = Path(__file__).resolve().parents[1]
RECIPE = str(TESTS.parent / "recipes" / "ego4d_mq.yaml")
SMALL = [
    "--model.init_args.head.init_args.embed_dim",
    "32",
    "--model.init_args.head.init_args.head_dim",
    "32",
]
DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]


class _Recorder:
    def __init__(self):
        self.written = None

    def write_submission(self, predictions, path):
        self.written = predictions
        return path


def test_submission_writer_writes_each_sample_once_in_dataset_order(tmp_path):
    # rank 0 saw dataset indices [0, 2], [4, 0]: index 0 again is DistributedSampler's padding
    datamodule = _Recorder()
    trainer = SimpleNamespace(
        datamodule=datamodule, world_size=1, is_global_zero=True, log_dir=str(tmp_path), default_root_dir="."
    )
    batches = [[{"video_id": "c"}, {"video_id": "a"}], [{"video_id": "b"}, {"video_id": "c"}]]
    SubmissionWriter().write_on_epoch_end(trainer, None, batches, [[[2, 0], [4, 2]]])
    assert [p["video_id"] for p in datamodule.written] == ["a", "c", "b"]
    # without batch indices (not a DataLoader), repeats are recognized by video_id
    SubmissionWriter().write_on_epoch_end(trainer, None, batches, [])
    assert [p["video_id"] for p in datamodule.written] == ["c", "a", "b"]


@pytest.fixture
def odd_data_root(mq_root, tmp_path):
    """The sample data with an odd number of val clips (31), so two ranks need a padding copy."""
    root = shutil.copytree(mq_root, tmp_path / "data")
    doc = json.loads((root / "moments_val.json").read_text())
    doc["videos"] = doc["videos"][:-1]
    (root / "moments_val_odd.json").write_text(json.dumps(doc))
    return root


def _metric_values(row: dict[str, str]) -> dict[str, float]:
    # val/loss is left out: Lightning's sync_dist averages the ranks' means, padding copy included
    return {k: float(v) for k, v in row.items() if k.startswith("val/") and k != "val/loss" and v}


def _clip_uids(annotations: Path) -> list[str]:
    return [c["clip_uid"] for v in json.loads(annotations.read_text())["videos"] for c in v["clips"]]


def _vidlit(*args: str) -> subprocess.CompletedProcess:
    """``python -m vidlit.cli ...`` in a fresh process, as a user launches DDP (Lightning re-executes it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "LOCAL_RANK", "NODE_RANK"))}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline")
    proc = subprocess.run(
        [sys.executable, "-m", "vidlit.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.mark.exclusive
@pytest.mark.slow
def test_ddp_two_processes_fit_and_predict(odd_data_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    common = [
        "--config",
        RECIPE,
        "--data.init_args.root",
        str(odd_data_root),
        "--data.init_args.val_annotations",
        "moments_val_odd.json",
        "--trainer.default_root_dir",
        str(runs),
        *SMALL,
    ]
    fit = _vidlit("fit", *common, *DDP, "--trainer.max_epochs", "1")
    assert "Starting with 2 processes" in fit.stderr + fit.stdout
    (run,) = runs.glob("version_*")
    checkpoints = run / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file() and list(checkpoints.glob("epoch*-mAP*.ckpt"))
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/mAP")]
    assert len(rows) == 1  # one validation, logged once (by rank 0)
    ddp = _metric_values(rows[0])
    assert ddp["val/mAP"] > 0

    # The metric deduplicates DistributedSampler's padding copy of clip 0: one process scoring the
    # same 31 clips with the same weights gets the same mAP and recall.
    last = str(run / "checkpoints" / "last.ckpt")
    main(["validate", *common, "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--ckpt_path", last])
    capsys.readouterr()
    (single,) = (r for r in csv.DictReader((runs / "version_1" / "metrics.csv").open()) if r.get("val/mAP"))
    assert _metric_values(single) == pytest.approx(ddp, abs=1e-6)

    submission = tmp_path / "submission.json"
    predict = _vidlit(
        "predict",
        *common,
        *DDP,
        "--data.init_args.predict_annotations",
        "moments_val_odd.json",
        "--ckpt_path",
        last,
        "--submission.path",
        str(submission),
    )
    clips = _clip_uids(odd_data_root / "moments_val_odd.json")
    assert len(clips) == 31
    # 32 predictions over two ranks, one of them the padding copy, written once
    assert f"({len(clips)} predictions)" in predict.stdout
    pairs = json.loads(submission.read_text(), object_pairs_hook=lambda kv: kv)
    results = dict(pairs)["detect_results"]
    assert [uid for uid, _ in results] == clips  # every clip exactly once, in file order
