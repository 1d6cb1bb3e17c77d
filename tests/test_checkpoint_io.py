import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from vidlit.checkpoint_io import (
    AtomicCheckpointIO,
    config_differences,
    find_last_checkpoint,
    is_complete,
    remove_stale_temporaries,
)
from vidlit.core.io import atomic_open

ROOT = Path(__file__).resolve().parents[1]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_round_trip_and_no_temporary_left(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "sub" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 2}, path)
    assert os.listdir(path.parent) == ["last.ckpt"]
    loaded = io.load_checkpoint(path)
    assert loaded["epoch"] == 2 and torch.equal(loaded["state_dict"]["w"], torch.ones(3))


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1}, path)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        io.save_checkpoint({"epoch": 2, "bad": lambda: None}, path)  # torch.save fails mid-way
    assert io.load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_load_is_weights_only(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"payload": _Evil()}, path)
    with pytest.raises(pickle.UnpicklingError):
        AtomicCheckpointIO().load_checkpoint(path)


def test_missing_checkpoint_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.ckpt"):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "nothing.ckpt")


def test_checkpoint_has_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        AtomicCheckpointIO().save_checkpoint({"epoch": 0}, tmp_path / "a.ckpt")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.ckpt").stat().st_mode & 0o777 == 0o644


# --- stale temporaries, --ckpt_path last ---------------------------------------------------------

_WRITER = """
import sys, time
from vidlit.core.io import atomic_open
with atomic_open(sys.argv[1], "wb") as f:
    f.write(b"x" * 1000)
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def test_killed_writers_temporary_is_removed_and_a_live_ones_kept(tmp_path):
    target = tmp_path / "run" / "checkpoints" / "last.ckpt"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert writer.stdout.readline().strip() == "writing"
        (orphan,) = target.parent.glob(".last.ckpt.*.tmp")
        assert remove_stale_temporaries(tmp_path) == []  # the writer is alive: its file stays
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        writer.kill()
    (tmp_path / ".notes.tmp").write_text("not vidlit's")  # other names are never touched
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / ".clip.pt.abcd1234.tmp").write_bytes(b"half")  # extract's naming
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([orphan, tmp_path / "features" / ".clip.pt.abcd1234.tmp"])
    assert not orphan.exists() and (tmp_path / ".notes.tmp").exists()
    with atomic_open(tmp_path / "live.ckpt") as f:  # a write in progress in this process
        f.write(b"y")
        assert remove_stale_temporaries(tmp_path) == []
    assert (tmp_path / "live.ckpt").read_bytes() == b"y"


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _run(root, name, config, checkpoints, mtime):
    """A run folder as ``vidlit fit`` leaves it: config.yaml and checkpoints/ (given mtime)."""
    folder = root / name
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    for i, checkpoint in enumerate(checkpoints):
        path = folder / "checkpoints" / checkpoint
        AtomicCheckpointIO().save_checkpoint({"epoch": i}, path)
        os.utime(path, (mtime + i, mtime + i))
    return folder


CONFIG = {"seed_everything": 42, "trainer": {"max_epochs": 10, "logger": None}, "model": {"lr": 0.1}}


def test_last_picks_the_newest_run_of_this_configuration_and_says_why(tmp_path):
    ten = _run(tmp_path, "version_0", CONFIG, ["epoch09.ckpt", "last.ckpt"], 1000)
    wandb = {**CONFIG, "trainer": {"max_epochs": 10, "logger": {"class_path": "WandbLogger"}}}
    same_but_logger = _run(tmp_path, "lightning_logs/abc", wandb, ["last.ckpt"], 2000)
    one_epoch = {**CONFIG, "trainer": {"max_epochs": 1, "logger": None}}
    _run(tmp_path, "version_1", one_epoch, ["epoch00.ckpt", "last.ckpt"], 3000)
    choice = find_last_checkpoint(tmp_path, CONFIG)
    # the logger is not the configuration; max_epochs is: the 1-epoch run is named and skipped
    assert choice.path == same_but_logger / "checkpoints" / "last.ckpt"
    assert "version_1 differs in trainer.max_epochs (run: 1, now: 10)" in choice.reason
    (same_but_logger / "checkpoints" / "last.ckpt").unlink()
    (same_but_logger / "config.yaml").unlink()
    choice = find_last_checkpoint(tmp_path, CONFIG)
    assert choice.path == ten / "checkpoints" / "last.ckpt" and choice.run_dir == ten


def test_last_refuses_when_no_run_has_this_configuration(tmp_path):
    _run(tmp_path, "version_0", CONFIG, ["last.ckpt"], 1000)
    other = {**CONFIG, "model": {"lr": 0.2}}
    with pytest.raises(FileNotFoundError, match=r"no run under .* has this configuration .*model\.lr"):
        find_last_checkpoint(tmp_path, other)
    with pytest.raises(FileNotFoundError, match="no checkpoint under"):
        find_last_checkpoint(tmp_path / "empty", CONFIG)


def test_last_falls_back_to_the_newest_complete_checkpoint(tmp_path):
    run = _run(tmp_path, "version_0", CONFIG, ["epoch00.ckpt", "epoch01.ckpt"], 1000)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 half a zip")  # not from atomic_open
    (run / "checkpoints" / ".last.ckpt.abcd1234.tmp").write_bytes(b"killed during the first write")
    choice = find_last_checkpoint(tmp_path, CONFIG)
    assert choice.path == run / "checkpoints" / "epoch01.ckpt"
    assert "no complete last.ckpt" in choice.reason
    assert not is_complete(run / "checkpoints" / "last.ckpt") and is_complete(choice.path)


def test_config_differences_ignore_run_control_keys():
    saved = {"trainer": {"max_epochs": 3, "logger": None, "limit_test_batches": 2}, "ckpt_path": None}
    current = {"trainer": {"max_epochs": 3, "logger": True, "limit_test_batches": 1}, "ckpt_path": "last"}
    assert config_differences(saved, current) == {}
    assert config_differences({"a": {"b": 1}}, {"a": {"b": 2, "c": 3}}) == {"a.b": (1, 2), "a.c": (None, 3)}


def test_evaluating_on_other_data_may_ignore_the_data_section(tmp_path):
    trained = {**CONFIG, "data": {"root": "data/train", "split": "val"}}
    run = _run(tmp_path, "version_0", trained, ["last.ckpt"], 1000)
    predict_test_split = {**CONFIG, "data": {"root": "data/train", "split": "test"}}
    with pytest.raises(FileNotFoundError, match=r"data\.split \(run: 'val', now: 'test'\)"):
        find_last_checkpoint(tmp_path, predict_test_split)  # resuming: the data must match
    assert find_last_checkpoint(tmp_path, predict_test_split, ignore=("data",)).run_dir == run


def test_evaluation_falls_back_to_the_newest_run_and_names_the_differences(tmp_path):
    _run(tmp_path, "version_0", CONFIG, ["last.ckpt"], 1000)
    newest = _run(tmp_path, "version_1", {**CONFIG, "model": {"lr": 0.3}}, ["last.ckpt"], 2000)
    sampler = {**CONFIG, "model": {"lr": 0.2}}  # matches neither run
    with pytest.raises(FileNotFoundError, match="no run under"):
        find_last_checkpoint(tmp_path, sampler)  # resuming: refused
    choice = find_last_checkpoint(tmp_path, sampler, fallback=True)
    assert choice.path == newest / "checkpoints" / "last.ckpt"
    assert choice.reason.startswith("NO run has this configuration; taking the newest run")
    assert "model.lr (run: 0.3, now: 0.2)" in choice.reason
    # a matching run still wins over a newer other one
    assert find_last_checkpoint(tmp_path, CONFIG, fallback=True).run_dir == tmp_path / "version_0"


def test_evaluation_prefers_the_exact_run_then_the_same_model_trained_otherwise(tmp_path):
    def config(seed, epochs, lr=0.2):
        return {**CONFIG, "seed_everything": seed, "trainer": {"max_epochs": epochs}, "model": {"lr": lr}}

    near = ("trainer", "seed_everything")
    seed3 = _run(tmp_path, "version_0", config(3, 100), ["last.ckpt"], 1000)
    seed5 = _run(tmp_path, "version_1", config(5, 100), ["last.ckpt"], 2000)
    smoke = _run(tmp_path, "version_2", config(3, 1), ["last.ckpt"], 3000)
    _run(tmp_path, "version_3", config(3, 100, lr=0.3), ["last.ckpt"], 4000)  # another model, newest
    # the exact configuration wins over newer runs that differ in trainer / seed settings
    exact = find_last_checkpoint(tmp_path, config(3, 100), fallback=True, near=near)
    assert exact.run_dir == seed3 and exact.reason.startswith("last.ckpt of the newest run with this")
    assert find_last_checkpoint(tmp_path, config(5, 100), fallback=True, near=near).run_dir == seed5
    # none exact: the newest run of this model, over the newer run of another model, said so
    other = find_last_checkpoint(tmp_path, config(3, 20), fallback=True, near=near)
    assert other.run_dir == smoke
    assert other.reason.startswith("NO run has exactly this configuration; taking the newest run that")
    assert "trainer.max_epochs (run: 1, now: 20)" in other.reason and "model.lr" in other.reason
    # without `near`, the newest run of any model, as before
    assert find_last_checkpoint(tmp_path, config(3, 20), fallback=True).run_dir == tmp_path / "version_3"


def test_last_compares_configs_first_and_opens_only_the_chosen_runs_checkpoints(tmp_path, monkeypatch):
    """Twelve old runs of other configurations and one match: one zip check, not one per file."""
    import vidlit.checkpoint_io as checkpoint_io

    checked = []

    def counting(path):  # observation only: the real check runs
        checked.append(Path(path))
        return is_complete(path)

    match = _run(tmp_path, "version_0", CONFIG, ["epoch00.ckpt", "epoch01.ckpt", "last.ckpt"], 1000)
    for i in range(1, 13):
        other = {**CONFIG, "model": {"lr": 0.1 + i}}
        _run(tmp_path, f"version_{i}", other, ["epoch00.ckpt", "epoch01.ckpt", "last.ckpt"], 1000 + 10 * i)
    monkeypatch.setattr(checkpoint_io, "is_complete", counting)
    choice = find_last_checkpoint(tmp_path, CONFIG)
    assert choice.path == match / "checkpoints" / "last.ckpt"
    assert checked == [choice.path]
    assert choice.reason.count("differs in model.lr") == 12  # every newer run is still named

    # last.ckpt broken: the run's checkpoints are checked newest first, and no other run's
    (match / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 half a zip")
    os.utime(match / "checkpoints" / "last.ckpt", (1002, 1002))
    checked.clear()
    choice = find_last_checkpoint(tmp_path, CONFIG)
    assert choice.path == match / "checkpoints" / "epoch01.ckpt"
    assert checked == [match / "checkpoints" / n for n in ("last.ckpt", "epoch01.ckpt")]

    # evaluation's fallback to the newest run checks that run's last.ckpt only
    checked.clear()
    choice = find_last_checkpoint(tmp_path, {**CONFIG, "model": {"lr": 99.0}}, fallback=True)
    assert choice.path == tmp_path / "version_12" / "checkpoints" / "last.ckpt"
    assert checked == [choice.path]


def test_a_matching_run_without_a_complete_checkpoint_is_skipped_and_named(tmp_path):
    older = _run(tmp_path, "version_0", CONFIG, ["last.ckpt"], 1000)
    broken = tmp_path / "version_1" / "checkpoints"
    broken.mkdir(parents=True)
    (broken.parent / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    (broken / "last.ckpt").write_bytes(b"PK\x03\x04 half a zip")
    choice = find_last_checkpoint(tmp_path, CONFIG)
    assert choice.path == older / "checkpoints" / "last.ckpt"
    assert f"{broken.parent} has this configuration but no complete checkpoint" in choice.reason
    (older / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(
        FileNotFoundError, match="no run under .* with this configuration has a complete checkpoint"
    ):
        find_last_checkpoint(tmp_path, CONFIG)


@pytest.mark.slow
def test_a_slurm_requeue_continues_its_wandb_run(mq_root, tmp_path, monkeypatch, capsys):
    """No ``--ckpt_path`` under SLURM: Lightning resumes ``hpc_ckpt_N.ckpt`` of default_root_dir by
    itself; the W&B run id recorded inside the checkpoint continues the same run."""
    import shutil

    from vidlit.cli import main
    from vidlit.config import WANDB_RUN_KEY

    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    wandb.finish()  # W&B keeps a run and its settings process-wide: start from none, as a process does
    wandb.teardown()
    runs = tmp_path / "runs"
    args = ["fit", "--config", "recipes/ego4d_mq.yaml", "--data.init_args.root", str(mq_root)]
    args += ["--trainer.default_root_dir", str(runs), "--trainer.limit_train_batches", "1"]
    args += ["--trainer.limit_val_batches", "1", "--trainer.enable_model_summary", "false"]
    args += ["--trainer.logger", "lightning.pytorch.loggers.WandbLogger"]
    args += ["--trainer.logger.save_dir", str(runs)]
    try:
        main([*args, "--trainer.max_epochs", "1"])
        wandb.finish()
        (first,) = (runs / "lightning_logs").iterdir()
        checkpoint = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)
        assert checkpoint[WANDB_RUN_KEY] == {"id": first.name, "project": "lightning_logs"}
        # what Lightning's SLURM requeue leaves (hpc_save: the same dump as any checkpoint)
        shutil.copy(first / "checkpoints" / "last.ckpt", runs / "hpc_ckpt_1.ckpt")
        for key, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "7"}.items():
            monkeypatch.setenv(key, value)
        for key in ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID"):
            monkeypatch.setenv(key, "0")
        monkeypatch.setenv("SLURM_NODELIST", "localhost")
        main([*args, "--trainer.max_epochs", "2"])
        wandb.finish()
    finally:
        wandb.teardown()
    out = capsys.readouterr().out
    assert f"vidlit: continuing W&B run {first.name} of project lightning_logs" in out
    assert list((runs / "lightning_logs").iterdir()) == [first]  # no second run folder
    assert torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1


def test_a_legacy_checkpoint_keeps_torchs_explanation(tmp_path):
    # torch.save's pre-1.6 format is no zip archive, but a checkpoint: weights-only loading's
    # refusal (a path object in it) is torch's own message, not "not a checkpoint"
    from pathlib import PurePosixPath

    path = tmp_path / "legacy.ckpt"
    torch.save({"weights": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(AtomicCheckpointIO().load_checkpoint(path)["weights"], torch.zeros(2))
    torch.save({"root": PurePosixPath("/data")}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        AtomicCheckpointIO().load_checkpoint(path)


def test_a_zip_that_torch_did_not_write_is_not_a_checkpoint(tmp_path):
    # an .npz is a zip archive too, without torch's data.pkl: one line, not torch's RuntimeError
    import numpy as np

    path = tmp_path / "features.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(ValueError, match=r"features.npz: not a checkpoint"):
        AtomicCheckpointIO().load_checkpoint(path)
