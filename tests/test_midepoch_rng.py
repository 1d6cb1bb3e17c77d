"""A run killed mid-epoch and resumed from its step checkpoint trains bit-identically to an uninterrupted
run, model-side randomness included: :class:`vidlit.callbacks.ReproducibleEpochs` keeps each rank's
random state in the checkpoint as the next unseen step starts from it, and restores it there.

The end-to-end test runs ``vidlit fit`` on ``recipes/pretrain_mvm.yaml`` (random tube masks) with
dropout and drop path on, validation inside the epoch and ``num_workers: 0`` (the model's draws
are made in the main process; DataLoader workers would change nothing here, since vidlit's datasets
draw from per-sample generators, and would only add start-up time), SIGKILLs it after a step past
its last step checkpoint, resumes it with ``--ckpt_path last`` and compares every tensor of the
final checkpoint and the logged loss of every resumed step with the uninterrupted run's.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from killed_runs import TESTS
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from vidlit.callbacks import ReproducibleEpochs, random_state, set_random_state
from vidlit.data.base import VidlitDataModule

ROOT = TESTS.parent
EVERY = 4  # step checkpoint interval
KILL_AT = 9  # 2 epochs of 6 steps: the kill, and the checkpoint at step 8, are inside epoch 1


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """12 training videos (6 steps of 2 per epoch) and 4 validation videos, 32 px, 16 frames."""
    from vidlit.data.synth.videos import write_synthetic_video_list

    return write_synthetic_video_list(
        tmp_path_factory.mktemp("rng_videos"), num_videos=16, num_frames=16, size=32
    )


def _equal_tensors(a, b, where: str = "") -> list[str]:
    """Where two nested checkpoint structures differ (tensors compared with ``torch.equal``)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"]
        return [d for k in a for d in _equal_tensors(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _equal_tensors(x, y, f"{where}/{i}")]
    return [] if a == b else [where]


def _train_losses(run: Path) -> dict[int, str]:
    """``step -> train/loss`` as the CSV logger wrote it (every version folder of the run)."""
    losses = {}
    for path in sorted(run.glob("version_*/metrics.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    losses[int(row["step"])] = row["train/loss"]
    return losses


@pytest.mark.slow
def test_vidlit_fit_killed_mid_epoch_resumes_bit_identically(videos, tmp_path):
    recipe = str(ROOT / "recipes" / "pretrain_mvm.yaml")
    args = [
        "--data.init_args.root", str(videos), "--data.init_args.synthetic", "false",
        "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0",
        "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1",
        # validation inside the epoch, right after the step the checkpoint is written at (8)
        "--trainer.check_val_every_n_epoch", "1", "--trainer.val_check_interval", "2",
        "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip

    def config(name: str, kill_after: int | None = None) -> list[str]:
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            # random operations beyond the tube masks: dropout and drop path in the encoder
            "model:\n  init_args:\n    backbone:\n"
            "      dict_kwargs: {drop_rate: 0.1, drop_path_rate: 0.2}\n"
            "trainer:\n  callbacks:\n"
            "    - class_path: vidlit.callbacks.ResumableCheckpoint\n"
            f"      init_args: {{save_top_k: 0, save_last: true, every_n_train_steps: {EVERY}}}\n"
            "    - class_path: killed_runs.KeysToFile\n"
            f"      init_args: {{path: {tmp_path / name}.tsv, kill_after: {kill_after or 'null'}}}\n"
        )
        return ["--config", recipe, "--config", str(path), *args]

    from vidlit.cli import main

    main(["fit", *config("full"), "--trainer.default_root_dir", str(tmp_path / "full")])
    runs = ["--trainer.default_root_dir", str(tmp_path / "runs")]
    killed = subprocess.run(
        [sys.executable, "-m", "vidlit.cli", "fit", *config("killed", KILL_AT), *runs],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])},  # noqa: E501
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-3000:]
    (cut,) = (tmp_path / "runs").glob("version_*/checkpoints/last.ckpt")
    assert torch.load(cut, weights_only=True)["global_step"] == 8  # killed one step after it
    main(["fit", *config("resumed"), *runs, "--ckpt_path", "last"])

    steps = {
        name: (tmp_path / f"{name}.tsv").read_text().splitlines() for name in ("full", "killed", "resumed")
    }
    assert len(steps["killed"]) == KILL_AT and steps["resumed"][0].startswith("1\t8\t")
    assert steps["killed"][:8] + steps["resumed"] == steps["full"]  # the same batches

    (full,) = (tmp_path / "full").glob("version_*/checkpoints/last.ckpt")
    (resumed,) = (tmp_path / "runs").glob("version_*/checkpoints/last.ckpt")
    full, resumed = torch.load(full, weights_only=True), torch.load(resumed, weights_only=True)
    assert full["global_step"] == resumed["global_step"] == 12
    assert _equal_tensors(full["state_dict"], resumed["state_dict"]) == []  # every weight, bit for bit
    assert _equal_tensors(full["optimizer_states"], resumed["optimizer_states"]) == []
    losses, resumed_losses = _train_losses(tmp_path / "full"), _train_losses(tmp_path / "runs")
    assert len(losses) == 12
    assert {step: resumed_losses.get(step) for step in range(8, 12)} == {s: losses[s] for s in range(8, 12)}


# -- in one process: where a checkpoint is written, and what it holds --------------------------------


class Numbers(VidlitDataModule):
    """24 fixed 8-d vectors, 6 batches of 4 per epoch, through vidlit's resumable training loader."""

    def __init__(self):
        super().__init__(batch_size=4)

    def dataset(self, split: str) -> list[torch.Tensor]:
        return list(torch.randn(24, 8, generator=torch.Generator().manual_seed(0)))

    def _collate(self):
        return torch.stack


class Noisy(L.LightningModule):
    """A step draws from every source ``ReproducibleEpochs`` carries: dropout (torch's generator), NumPy,
    Python and a generator of its own; validation draws from them too. Records ``(step, loss)``."""

    def __init__(self, save_during: tuple[int, Path] | None = None):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.Dropout(0.5), nn.Linear(32, 1))
        self.noise = torch.Generator().manual_seed(3)
        self.save_during = save_during
        self.losses: list[tuple[int, float]] = []

    def training_step(self, batch, batch_idx):
        noise = (
            torch.randn(batch.shape, generator=self.noise).to(batch.device) * np.random.rand()
            + random.random()
        )
        loss = self.net(batch + noise).pow(2).mean()
        if self.save_during is not None and self.global_step == self.save_during[0]:
            self.trainer.save_checkpoint(self.save_during[1])  # as SLURM's requeue signal does
        self.losses.append((self.global_step, loss.item()))
        return loss

    def validation_step(self, batch, batch_idx):
        torch.rand(3), np.random.rand(), random.random(), torch.randn(1, generator=self.noise)
        self.log("val/loss", self.net(batch).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _fit(
    out: Path,
    ckpt_path: Path | None = None,
    every: int | None = None,
    save_during: int | None = None,
    epochs: int = 2,
    accelerator: str = "cpu",
) -> Noisy:
    """``epochs`` epochs with validation inside each; a checkpoint every ``every`` steps (all kept),
    with ``every=0`` at each epoch's end."""
    L.seed_everything(7, verbose=False)
    # a resumed run starts with other global states than the interrupted one had there
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    callbacks = [ReproducibleEpochs()]
    if every is not None:
        callbacks.append(
            ModelCheckpoint(dirpath=out, filename="{step}", every_n_train_steps=every or None, save_top_k=-1)
        )
    trainer = L.Trainer(
        max_epochs=epochs, val_check_interval=2, limit_val_batches=1, num_sanity_val_steps=0, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=every is not None,
        accelerator=accelerator, devices=1, default_root_dir=out, callbacks=callbacks,
    )  # fmt: skip
    model = Noisy(None if save_during is None else (save_during, out / "during.ckpt"))
    trainer.fit(model, datamodule=Numbers(), ckpt_path=ckpt_path)
    return model


def test_a_resume_from_any_step_checkpoint_trains_as_the_uninterrupted_run(tmp_path):
    """Checkpoints after steps 3 (inside epoch 0), 6 (the last step of epoch 0) and 8 (inside epoch 1,
    right before a validation)."""
    full = _fit(tmp_path, every=1)
    for step in (3, 6, 8):
        resumed = _fit(tmp_path / "resumed", ckpt_path=tmp_path / f"step={step}.ckpt")
        assert resumed.losses == full.losses[step:], step  # the same loss at every resumed step
        weights, reference = resumed.state_dict(), full.state_dict()
        assert all(torch.equal(weights[k], reference[k]) for k in reference), step


@pytest.mark.gpu
def test_a_resume_on_a_gpu_goes_on_with_its_cuda_generator(tmp_path):
    """Dropout on the GPU draws from the device's generator, which the checkpoint carries too."""
    full = _fit(tmp_path, every=1, accelerator="gpu")
    resumed = _fit(tmp_path / "resumed", ckpt_path=tmp_path / "step=8.ckpt", accelerator="gpu")
    assert resumed.losses == full.losses[8:]
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), full.parameters(), strict=True))
    saved = torch.load(tmp_path / "step=8.ckpt", weights_only=True)["callbacks"]
    (state,) = (v for k, v in saved.items() if k.startswith("ReproducibleEpochs"))
    assert state["ranks"][0]["cuda"]["state"].numel() > 0


def test_a_resume_from_an_end_of_epoch_checkpoint_trains_as_the_uninterrupted_run(tmp_path):
    """Was not exact: the resumed run's training loader drew its seed from torch's generator before the
    epoch's reseed, the uninterrupted run's after it; and the model's own generator started afresh."""
    full = _fit(tmp_path / "full")
    _fit(tmp_path / "cut", epochs=1, every=0)
    resumed = _fit(tmp_path / "resumed", ckpt_path=tmp_path / "cut" / "step=6.ckpt")
    assert resumed.losses == full.losses[6:]
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), full.parameters(), strict=True))


def test_a_checkpoint_written_during_a_step_resumes_with_that_step(tmp_path):
    full = _fit(tmp_path, save_during=4)
    resumed = _fit(tmp_path / "resumed", ckpt_path=tmp_path / "during.ckpt")
    assert resumed.losses == full.losses[4:]
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), full.parameters(), strict=True))


def test_the_random_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    model = Noisy()
    state = random_state(model)
    torch.save({"state": state}, tmp_path / "state.pt")
    draws = (
        torch.rand(4),
        np.random.rand(4),
        [random.random() for _ in range(4)],
        torch.rand(4, generator=model.noise),
    )
    random.seed(1), np.random.seed(1), torch.manual_seed(1), model.noise.manual_seed(1)
    set_random_state(model, torch.load(tmp_path / "state.pt", weights_only=True)["state"])
    again = (
        torch.rand(4),
        np.random.rand(4),
        [random.random() for _ in range(4)],
        torch.rand(4, generator=model.noise),
    )
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]
    assert torch.equal(draws[3], again[3])
    # only the model's own generator: the global ones stay as they are
    before = torch.rand(4, generator=model.noise)
    random.seed(2), torch.manual_seed(2)
    set_random_state(model, state, global_generators=False)
    assert torch.equal(torch.rand(4, generator=model.noise), draws[3]) and not torch.equal(
        torch.rand(4), draws[0]
    )
    assert not torch.equal(before, draws[3])


# -- two processes: each rank gets its own state back ------------------------------------------------


def _ddp_fit(out: Path, ckpt_path: Path | None) -> None:
    """What each of 2 ranks runs (started by torchrun): :func:`_fit`'s run under DDP on CPU, each rank's
    ``(step, loss)`` written to ``out/rank<r>.pt``; checkpoints after every step."""
    torch.set_num_threads(1)
    L.seed_everything(7, verbose=False)
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, limit_val_batches=0, logger=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=out,
        callbacks=[
            ReproducibleEpochs(),
            ModelCheckpoint(dirpath=out, filename="{step}", every_n_train_steps=1, save_top_k=-1),
        ],
    )  # fmt: skip
    model = Noisy()
    trainer.fit(model, datamodule=Numbers(), ckpt_path=ckpt_path)
    torch.save({"losses": model.losses, "weights": model.state_dict()}, out / f"rank{trainer.global_rank}.pt")


@pytest.mark.exclusive
@pytest.mark.slow
def test_each_rank_resumes_with_its_own_random_state(tmp_path):
    """2 DDP processes (gloo) draw different dropout and noise; resumed after step 2 of an epoch of 3,
    each continues its own draws: the same losses per rank and the same weights."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "LOCAL_RANK", "RANK"))}
    env.update(
        OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    )

    def torchrun(out: Path, ckpt_path: Path | None = None) -> list[dict]:
        out.mkdir()
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2"]
        command += ["--master-addr=127.0.0.1", f"--master-port={port}"]
        command += [str(Path(__file__)), str(out), str(ckpt_path or "")]
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]

    full = torchrun(tmp_path / "full")
    assert len(full[0]["losses"]) == 6 and full[0]["losses"] != full[1]["losses"]  # 3 steps per epoch
    state = torch.load(tmp_path / "full" / "step=2.ckpt", weights_only=True)["callbacks"]
    (saved,) = (v for k, v in state.items() if k.startswith("ReproducibleEpochs"))
    assert len(saved["ranks"]) == 2 and not torch.equal(
        saved["ranks"][0]["torch"], saved["ranks"][1]["torch"]
    )
    resumed = torchrun(tmp_path / "resumed", tmp_path / "full" / "step=2.ckpt")
    for rank in range(2):
        assert resumed[rank]["losses"] == full[rank]["losses"][2:]
        weights, reference = resumed[rank]["weights"], full[rank]["weights"]
        assert all(torch.equal(weights[k], reference[k]) for k in reference)


if __name__ == "__main__":
    _ddp_fit(Path(sys.argv[1]), Path(sys.argv[2]) if sys.argv[2] else None)
