"""End to end: the Ego4D MQ recipe through ``vidlit.cli.main`` on the synthetic sample data."""

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vidlit.cli import main

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]
RECIPE = str(TESTS.parent / "recipes" / "ego4d_mq.yaml")


def _final_val(run_dir: Path) -> dict[str, float]:
    rows = [r for r in csv.DictReader((run_dir / "metrics.csv").open()) if r.get("val/mAP")]
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


def _run_dirs(root: Path) -> list[Path]:
    return sorted(root.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


@pytest.fixture
def data_root(mq_root, tmp_path):
    return str(shutil.copytree(mq_root, tmp_path / "data"))


@pytest.fixture(scope="module")
def fitted(mq_root, tmp_path_factory):
    """The recipe, fitted once for the tests below with its schedule cut to 4 epochs and validated
    once, after the last (as shipped, 10 epochs reach val mAP 0.88; 4 reach 0.63, and 5 reach 0.73):
    ``(data root, runs folder, common arguments, the fit's stdout)``. A validation costs about three
    quarters of a training epoch here; the setup took 24 s alone on 2 cores at load average 2 (50 s
    for 5 epochs validated after each), 35 s beside another xdist worker at load average 5-6."""
    base = tmp_path_factory.mktemp("mq_recipe")
    data_root = str(shutil.copytree(mq_root, base / "data"))
    runs = base / "runs"
    common = ["--config", RECIPE, "--data.init_args.root", data_root, "--trainer.default_root_dir", str(runs)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["fit", *common, "--trainer.max_epochs", "4", "--trainer.check_val_every_n_epoch", "4"])
    return data_root, runs, common, out.getvalue()


def test_recipe_fits_and_prints_its_metrics(fitted):
    _, runs, _, out = fitted
    run = _run_dirs(runs)[0]  # the fit's (a test run adds its own folder)
    val = _final_val(run)
    # chance: the untrained head scores about 0.004 val mAP on this data
    assert val["val/mAP"] >= 0.5, val
    assert "val/mAP" in out and "last checkpoint" in out  # metrics printed at the end
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()


def test_recipe_test_equals_the_last_validation(fitted):
    _, runs, common, _ = fitted
    run = _run_dirs(runs)[0]
    val = _final_val(run)
    before = set(_run_dirs(runs))
    main(["test", *common, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    (test_run,) = set(_run_dirs(runs)) - before
    test = {k: float(v) for k, v in next(csv.DictReader((test_run / "metrics.csv").open())).items() if v}
    for name in ("mAP", "mAP@0.1", "mAP@0.5", "R1x@0.5"):
        assert test[f"test/{name}"] == pytest.approx(val[f"val/{name}"], abs=1e-6), name


def test_recipe_predicts_val_and_the_challenge_test_split(fitted, tmp_path):
    data_root, _, common, _ = fitted
    submission = tmp_path / "mq_submission.json"
    main(["predict", *common, "--ckpt_path", "last", "--submission.path", str(submission)])
    doc = json.loads(submission.read_text())
    assert doc["challenge"] == "ego4d_moment_queries"
    val_clips = {
        c["clip_uid"]
        for v in json.loads((Path(data_root) / "moments_val.json").read_text())["videos"]
        for c in v["clips"]
    }
    assert set(doc["detect_results"]) == val_clips
    first = next(iter(doc["detect_results"].values()))[0]
    assert set(first) == {"label", "score", "segment"} and first["segment"][0] <= first["segment"][1]

    # the challenge submission: the unannotated test clips, in the challenge's layout
    challenge = tmp_path / "mq_test_submission.json"
    main(["predict", *common, "--ckpt_path", "last", "--data.init_args.predict_split", "test",
          "--submission.path", str(challenge)])  # fmt: skip
    doc = json.loads(challenge.read_text())
    assert set(doc) == {"version", "challenge", "detect_results"} and doc["version"] == "1.0"
    test_clips = {
        c["clip_uid"]
        for v in json.loads((Path(data_root) / "moments_test_unannotated.json").read_text())["videos"]
        for c in v["clips"]
    }
    assert set(doc["detect_results"]) == test_clips


SMALL = [
    "--trainer.max_epochs",
    "3",
    "--model.init_args.head.init_args.embed_dim",
    "32",
    "--model.init_args.head.init_args.head_dim",
    "32",
]


def test_sigkilled_run_resumes_to_the_same_metrics(data_root, tmp_path):
    # 2 epochs of 8 batches: killed at epoch 1's batch 5, after epoch 0's checkpoint (a subprocess
    # and two fits: about 3x slower under two xdist workers than alone)
    short = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "8"]
    common = ["--config", RECIPE, "--data.init_args.root", data_root, *SMALL, *short]
    main(["fit", *common, "--trainer.default_root_dir", str(tmp_path / "straight")])
    expected = _final_val(_run_dirs(tmp_path / "straight")[-1])

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    kill = '{"class_path": "downstream_pkg.callbacks.KillAtBatch", "init_args": {"epoch": 1, "batch": 5}}'
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vidlit.cli",
            "fit",
            *common,
            "--trainer.default_root_dir",
            str(killed),
            "--trainer.callbacks+",
            kill,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]  # killed mid-epoch 1, after epoch 0's checkpoint
    assert (_run_dirs(killed)[0] / "checkpoints" / "last.ckpt").is_file()

    main(["fit", *common, "--trainer.default_root_dir", str(killed), "--ckpt_path", "last"])
    resumed = _final_val(_run_dirs(killed)[-1])
    assert resumed.keys() == expected.keys()
    for key in expected:
        assert resumed[key] == pytest.approx(expected[key], abs=1e-6), key


def _fit_with_head(class_path: str, data_root: str, tmp_path: Path, *overrides: str) -> None:
    # swapping class_path in a second config drops the recipe head's init_args, as a user's override would
    head = tmp_path / "head.yaml"
    head.write_text(f"model:\n  init_args:\n    head:\n      class_path: {class_path}\n")
    common = ["--data.init_args.root", data_root, "--trainer.default_root_dir", str(tmp_path / "runs")]
    main(["fit", "--config", RECIPE, "--config", str(head), *common, *overrides])


def test_downstream_head_trains_by_class_path(data_root, tmp_path):
    _fit_with_head(
        "downstream_pkg.heads.FrameThresholdHead", data_root, tmp_path, "--trainer.max_epochs", "6"
    )
    run = _run_dirs(tmp_path / "runs")[-1]
    assert "downstream_pkg.heads.FrameThresholdHead" in (run / "config.yaml").read_text()
    assert _final_val(run)["val/mAP"] > 0.25  # the same head untrained: about 0.07


def test_non_finite_loss_stops_naming_the_clips(data_root, tmp_path):
    expected = r"non-finite training loss at epoch 0, step 2, batch 2.*'[0-9a-f-]{36}'"
    with pytest.raises(FloatingPointError, match=expected):
        _fit_with_head("downstream_pkg.heads.ExplodingHead", data_root, tmp_path)


def test_wandb_logger_offline(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    main(
        [
            "fit",
            "--config",
            RECIPE,
            "--data.init_args.root",
            data_root,
            *SMALL,
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.default_root_dir",
            str(tmp_path / "runs"),
            "--trainer.logger",
            "lightning.pytorch.loggers.WandbLogger",
            "--trainer.logger.save_dir",
            str(tmp_path),
            "--trainer.logger.project",
            "vidlit-test",
        ]
    )
    import wandb

    # one process per command in real use: leave no run open, no process-wide settings behind
    wandb.finish()
    wandb.teardown()
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    assert list(run.glob("*.wandb"))  # the offline run file W&B syncs later
