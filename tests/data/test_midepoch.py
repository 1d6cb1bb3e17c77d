"""Mid-epoch resume: a run SIGKILLed inside an epoch and resumed with ``ckpt_path="last"`` trains on
exactly the samples of an uninterrupted run, in the same order and with the same crops
(WebDataset shards through the InternVid data module, and a video list), with 0 and 2 DataLoader
workers; and the same through ``vidlit fit --ckpt_path last`` on the ViCLIP recipe.

The killed run is this file run as a script (or ``python -m vidlit.cli fit``) in a subprocess: it
checkpoints every :data:`EVERY` steps (``ResumableCheckpoint(every_n_train_steps=...)``, as a
recipe would) and kills itself with SIGKILL after step :data:`KILL_AT` (a batch after the last
checkpoint has been trained and the next one prefetched, so both must be read again). Every
training step appends its sample keys to a file.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from killed_runs import TESTS, KillAfterStep

from vidlit.callbacks import ResumableCheckpoint
from vidlit.data import InternVidDataModule, VideoListDataModule

EVERY = 4  # checkpoint interval in steps
KILL_AT = 9  # the killed run dies after this many steps (2 epochs of 6 steps: inside epoch 1)
EPOCHS = 2
HERE = Path(__file__).resolve()


class KeyRecorder(L.LightningModule):
    """One parameter; every training step appends ``epoch<TAB>step<TAB>key,key,...<TAB>crops`` to ``keys``."""

    def __init__(self, keys: str):
        super().__init__()
        self.keys = keys
        self.weight = torch.nn.Parameter(torch.ones(2))

    def training_step(self, batch, batch_idx):
        with open(self.keys, "a") as f:
            # the keys, and the cropped clips' sum: after a resume, the crops must match too
            crops = f"{batch['video'].double().sum().item():.6f}"
            f.write(f"{self.current_epoch}\t{self.global_step}\t{','.join(batch['video_ids'])}\t{crops}\n")
        return (self.weight**2).sum() + batch["video"].float().mean() * 0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _datamodule(kind: str, root: Path, workers: int) -> L.LightningDataModule:
    if kind == "shards":
        return InternVidDataModule(
            root=str(root), shards=str(root / "shard-{00..04}.tar"), shard_shuffle=3, num_frames=2,
            size=16, short_side=16, batch_size=2, num_workers=workers,
        )  # fmt: skip
    return VideoListDataModule(
        root=str(root), num_frames=2, frame_stride=1, size=16, short_side=16, hflip=0.0,
        batch_size=2, num_workers=workers,
    )  # fmt: skip


def fit(kind: str, root: Path, workers: int, out: Path, kill_at: int | None = None, resume: bool = False):
    """Train ``EPOCHS`` epochs, recording keys in ``out/keys.tsv``; checkpoints in ``out/checkpoints``."""
    L.seed_everything(7, verbose=False)
    out.mkdir(parents=True, exist_ok=True)
    callbacks = [
        ResumableCheckpoint(
            dirpath=out / "checkpoints", every_n_train_steps=EVERY, save_top_k=0, save_last=True
        )
    ]
    if kill_at is not None:
        callbacks.insert(0, KillAfterStep(kill_at))
    trainer = L.Trainer(
        max_epochs=EPOCHS, limit_val_batches=0, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=out, accelerator="cpu", callbacks=callbacks,
    )  # fmt: skip
    model = KeyRecorder(str(out / "keys.tsv"))
    trainer.fit(model, datamodule=_datamodule(kind, root, workers), ckpt_path="last" if resume else None)


def _steps(out: Path) -> list[tuple[int, int, list[str], str]]:
    """``(epoch, step, keys, sum of the cropped clips)`` of each training step."""
    lines = (out / "keys.tsv").read_text().splitlines()
    return [
        (int(e), int(s), keys.split(","), crops) for e, s, keys, crops in (line.split("\t") for line in lines)
    ]


# -- data ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shard_root(tmp_path_factory) -> Path:
    """5 shards: 4 of 3 clips, the last of 1 clip and one undecodable sample; an InternVid val list."""
    from vidlit.data.shards import encode_mp4, write_shards
    from vidlit.data.synth.videos import write_video

    root = tmp_path_factory.mktemp("midepoch_shards")
    clip = encode_mp4(np.full((2, 16, 16, 3), 90, dtype=np.uint8), fps=10)
    samples = [{"key": f"s{i:02d}", "mp4": clip, "caption": f"clip {i}"} for i in range(13)]
    samples.insert(12, {"key": "broken", "mp4": b"\x00" * 300, "caption": "no video"})
    write_shards(samples, str(root / "shard-%02d.tar"), maxcount=3)
    line = {"YoutubeID": "v", "Start_timestamp": "00:00:00.0", "End_timestamp": "00:00:01.0", "Caption": "c"}
    (root / "val.jsonl").write_text(json.dumps(line) + "\n")
    (root / "videos").mkdir()
    write_video(root / "videos" / "v.mp4", np.full((12, 16, 16, 3), 60, dtype=np.uint8), fps=10)
    return root


@pytest.fixture(scope="module")
def list_root(tmp_path_factory) -> Path:
    """A 12-video training list (6 steps of 2 per epoch)."""
    from vidlit.data.synth.videos import write_synthetic_video_list

    root = tmp_path_factory.mktemp("midepoch_list")
    write_synthetic_video_list(root, num_videos=16, num_frames=4, size=16)
    with open(root / "videos.csv", newline="") as f:
        rows = list(csv.reader(f))
    with open(root / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows([rows[0], *rows[1:13]])
    return root


# -- tests -----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("kind", ["shards", "list"])
def test_a_run_killed_mid_epoch_resumes_at_the_next_unseen_sample(
    kind, workers, shard_root, list_root, tmp_path
):
    root = shard_root if kind == "shards" else list_root
    fit(kind, root, workers, tmp_path / "full")
    full = _steps(tmp_path / "full")
    for epoch in range(EPOCHS):  # each good sample once per epoch (the shards have a broken one)
        keys = [k for e, _, ks, _ in full if e == epoch for k in ks if k]
        assert len(keys) == len(set(keys)) == (13 if kind == "shards" else 12)
    assert full[KILL_AT][0] == 1 and full[KILL_AT - 2][0] == 1  # the kill and the last checkpoint: epoch 1

    killed = subprocess.run(
        [sys.executable, str(HERE), kind, str(root), str(workers), str(tmp_path / "cut")],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[2]), str(TESTS), os.environ.get("PYTHONPATH", "")])},  # noqa: E501
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = _steps(tmp_path / "cut")
    assert len(before) == KILL_AT  # it trained past its last checkpoint before it died
    saved = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert saved == EVERY * (KILL_AT // EVERY) == 8

    (tmp_path / "cut" / "keys.tsv").rename(tmp_path / "cut" / "keys_killed.tsv")
    fit(kind, root, workers, tmp_path / "cut", resume=True)
    after = _steps(tmp_path / "cut")
    assert after[0][1] == saved  # the resumed run continues at the checkpoint's step
    # the same batches in the same order (none twice, none skipped), cropped the same way
    assert before[:saved] + after == full


@pytest.mark.parametrize("kind", ["shards", "list"])
def test_a_changed_worker_count_is_exact_for_lists_and_refused_for_shards_as_are_changed_ranks(
    kind, shard_root, list_root, tmp_path
):
    """A checkpoint written 3 steps into epoch 0 with 2 workers, resumed with 0 (in one process,
    through the data module's state, as Lightning saves and restores it)."""
    root = shard_root if kind == "shards" else list_root
    data = _datamodule(kind, root, workers=2)
    data.setup("fit")
    loader = data.train_dataloader()
    batches = iter(loader)
    seen = []
    for _ in range(3):  # what Lightning does per step: fetch, then count it as trained
        seen.extend(next(batches)["video_ids"])
        loader.position.trained()
    state = data.state_dict()
    del batches

    resumed = _datamodule(kind, root, workers=0)
    resumed.setup("fit")
    resumed.load_state_dict(state)
    if kind == "shards":
        message = (
            r"^cannot resume mid-epoch: the checkpoint read its shards with 1 rank\(s\) x 2 worker\(s\), "
            r"this run has 1 rank\(s\) x 0 worker\(s\); resume with the same ranks and num_workers, "
            r"or from an end-of-epoch checkpoint$"
        )
        with pytest.raises(ValueError, match=message) as info:
            resumed.train_dataloader()
        assert "\n" not in str(info.value)
        return
    rest = [k for batch in resumed.train_dataloader() for k in batch["video_ids"]]
    # a state written by 2 ranks: this single process cannot continue it
    two_ranks = {"train_loader": {**state["train_loader"], "world_size": 2}}
    two_ranks["train_loader"]["ranks"] = state["train_loader"]["ranks"] * 2
    other = _datamodule(kind, root, workers=0)
    other.setup("fit")
    other.load_state_dict(two_ranks)
    with pytest.raises(
        ValueError, match=r"^cannot resume mid-epoch: .* with 2 rank\(s\), this run has 1 rank\(s\); "
    ):
        other.train_dataloader()
    assert len(seen) == 6 and len(rest) == 6 and not set(seen) & set(rest)
    reference = _datamodule(kind, root, workers=0)
    reference.setup("fit")
    assert seen + rest == [k for batch in reference.train_dataloader() for k in batch["video_ids"]]


class SaveDuringStep(KeyRecorder):
    """Writes a checkpoint in the middle of training step ``step``, as SLURM's requeue signal does."""

    def __init__(self, keys: str, path: str, step: int):
        super().__init__(keys)
        self.path, self.step = path, step

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if self.global_step == self.step and not Path(self.path).exists():
            self.trainer.save_checkpoint(self.path)
        return loss


def test_a_checkpoint_written_during_a_step_resumes_with_that_step(list_root, tmp_path):
    """Lightning trains the interrupted step's batch again; the loader must give it again."""
    L.seed_everything(7, verbose=False)
    args = dict(
        max_epochs=1, limit_val_batches=0, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, accelerator="cpu", default_root_dir=tmp_path,
    )  # fmt: skip
    ckpt = tmp_path / "during.ckpt"
    L.Trainer(**args).fit(
        SaveDuringStep(str(tmp_path / "full.tsv"), str(ckpt), 3), datamodule=_datamodule("list", list_root, 0)
    )
    L.Trainer(**args).fit(
        KeyRecorder(str(tmp_path / "resumed.tsv")),
        datamodule=_datamodule("list", list_root, 0),
        ckpt_path=ckpt,
    )
    full, resumed = (tmp_path / "full.tsv").read_text(), (tmp_path / "resumed.tsv").read_text()
    assert resumed == "".join(full.splitlines(keepends=True)[3:])  # steps 3, 4, 5 again, same batches


class AsksForTotalSteps(KeyRecorder):
    """Sizes its schedule like vidlit's ``WarmupCosineLR``: Lightning then builds the training loader
    before it restores a resumed run's loops."""

    def configure_optimizers(self):
        self.trainer.estimated_stepping_batches  # noqa: B018  (loads the training loader)
        return super().configure_optimizers()


@pytest.mark.parametrize("kind", ["shards", "list"])
def test_an_end_of_epoch_resume_reads_the_next_epoch_when_the_loader_is_built_early(
    kind, shard_root, list_root, tmp_path
):
    """Was: the first resumed epoch streamed epoch 0's order (2 workers)."""
    root = shard_root if kind == "shards" else list_root

    def run(out: Path, epochs: int, ckpt_path: Path | None = None) -> list[tuple]:
        L.seed_everything(7, verbose=False)
        out.mkdir()
        trainer = L.Trainer(
            max_epochs=epochs, limit_val_batches=0, logger=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=out, accelerator="cpu",
            callbacks=[ResumableCheckpoint(dirpath=out / "checkpoints", save_top_k=0, save_last=True)],
        )  # fmt: skip
        model = AsksForTotalSteps(str(out / "keys.tsv"))
        trainer.fit(model, datamodule=_datamodule(kind, root, 2), ckpt_path=ckpt_path)
        return _steps(out)

    full = run(tmp_path / "full", 2)
    first = run(tmp_path / "cut", 1)
    resumed = run(tmp_path / "resumed", 2, ckpt_path=tmp_path / "cut" / "checkpoints" / "last.ckpt")
    assert first + resumed == full


@pytest.mark.slow
def test_vidlit_fit_resumes_mid_epoch_with_ckpt_path_last(shard_root, tmp_path):
    """The ViCLIP recipe on shards with 2 workers and step checkpoints, through the CLI."""
    from vidlit.cli import main

    recipe = str(HERE.parents[2] / "recipes" / "pretrain_viclip.yaml")
    data = [
        "--data.init_args.root", str(shard_root), "--data.init_args.synthetic", "false",
        "--data.init_args.shards", str(shard_root / "shard-{00..04}.tar"),
        "--data.init_args.shard_shuffle", "3",
        "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "2",
        "--model.init_args.text", "text_test", "--trainer.max_epochs", str(EPOCHS),
        "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip

    def config(name: str, keys: Path, kill_after: int | None = None) -> list[str]:
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            "trainer:\n  callbacks:\n"
            "    - class_path: vidlit.callbacks.ResumableCheckpoint\n"
            f"      init_args: {{save_top_k: 0, save_last: true, every_n_train_steps: {EVERY}}}\n"
            "    - class_path: killed_runs.KeysToFile\n"
            f"      init_args: {{path: {keys}, kill_after: {'null' if kill_after is None else kill_after}}}\n"
        )
        return ["--config", recipe, "--config", str(path), *data]

    def steps(path: Path) -> list[tuple[str, ...]]:
        return [tuple(line.split("\t")) for line in path.read_text().splitlines()]

    main(
        ["fit", *config("full", tmp_path / "full.tsv"), "--trainer.default_root_dir", str(tmp_path / "full")]
    )
    runs = ["--trainer.default_root_dir", str(tmp_path / "runs")]
    pythonpath = os.pathsep.join([str(HERE.parents[2]), str(TESTS), os.environ.get("PYTHONPATH", "")])
    cut = config("killed", tmp_path / "killed.tsv", KILL_AT)
    killed = subprocess.run(
        [sys.executable, "-m", "vidlit.cli", "fit", *cut, *runs],
        env={**os.environ, "PYTHONPATH": pythonpath}, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-3000:]
    main(["fit", *config("resumed", tmp_path / "resumed.tsv"), *runs, "--ckpt_path", "last"])
    full, before, after = (steps(tmp_path / f"{n}.tsv") for n in ("full", "killed", "resumed"))
    saved = EVERY * (KILL_AT // EVERY)
    assert len(before) == KILL_AT and after[0][:2] == ("1", str(saved))
    assert before[:saved] + after == full


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the run the mid-epoch test kills")
    parser.add_argument("kind")
    parser.add_argument("root", type=Path)
    parser.add_argument("workers", type=int)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    fit(args.kind, args.root, args.workers, args.out, kill_at=KILL_AT)
