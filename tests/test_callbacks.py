import pytest
import torch
from lightning import Trainer
from lightning.pytorch.demos.boring_classes import BoringModel

from vidlit.callbacks import ResumableCheckpoint


class _GetsWorse(BoringModel):
    def on_validation_epoch_end(self):
        self.log("score", float(-self.current_epoch))  # best at epoch 0, never improves


def test_last_checkpoint_is_latest_even_when_best_is_older(tmp_path):
    callback = ResumableCheckpoint(
        dirpath=tmp_path, monitor="score", mode="max", save_top_k=1, save_last=True
    )
    trainer = Trainer(
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_GetsWorse())
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    best = torch.load(callback.best_model_path, weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == 6
    assert best["epoch"] == 0


def test_submission_writer_averages_the_views_of_a_multi_view_prediction(tmp_path):
    """A real ``predict`` with 2 views per video: one submission row per video, scores = view mean.

    Before the fix the writer keyed the 2 x B predictions of a batch by video id and kept the
    first view only, so the written scores were that view's, not the mean.
    """
    import json

    from vidlit.backbones import create_backbone
    from vidlit.callbacks import SubmissionWriter
    from vidlit.data.video_list import VideoListDataModule, write_synthetic_video_list
    from vidlit.heads import LinearProbeHead
    from vidlit.tasks import TaskModule

    root = write_synthetic_video_list(tmp_path / "videos", num_videos=6, num_frames=16, size=32)
    data = VideoListDataModule(
        root, val_list="videos.csv", num_frames=4, frame_stride=3, num_clips=2, size=32, batch_size=4
    )
    backbone = create_backbone("vit_test", num_frames=4, img_size=32)
    torch.manual_seed(0)
    model = TaskModule(LinearProbeHead(backbone.embed_dim, data.num_classes), backbone=backbone)
    path = tmp_path / "submission.json"
    trainer = Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[SubmissionWriter(str(path))]
    )
    batches = trainer.predict(model, datamodule=data, return_predictions=True)
    views = [p for batch in batches for p in batch]
    assert len(views) == 12  # 6 videos x 2 views, the views of a video differ
    results = json.loads(path.read_text())["results"]
    video_ids = [row["video_id"] for row in views[::2]]
    assert sorted(results) == sorted(video_ids)  # one row per video
    for video_id in video_ids:
        first, second = (p["scores"].double() for p in views if p["video_id"] == video_id)
        assert not torch.allclose(first, second)
        mean = (first + second) / 2
        top = mean.topk(min(5, len(mean)))
        written = results[video_id]
        assert [row["label"] for row in written] == [data.class_names[i] for i in top.indices.tolist()]
        assert [row["score"] for row in written] == pytest.approx(top.values.tolist(), abs=1e-9)


def _views(*video_ids: str) -> list[dict]:
    return [{"video_id": v, "view": i} for i, v in enumerate(video_ids)]


def test_submission_keys_of_views_and_of_padding_copies():
    from vidlit.callbacks import _first_of_each, _sample_keys

    # two views per item, runs line up with the three dataset indices
    keys = _sample_keys(_views("a", "a", "b", "b", "c", "c"), [3, 4, 5], 0)
    assert keys == [(0, 0, 3, 0), (0, 0, 3, 1), (0, 0, 4, 0), (0, 0, 4, 1), (0, 0, 5, 0), (0, 0, 5, 1)]
    # runs that do not line up with the indices (a video skipped): keyed by (video_id, view)
    keys = _sample_keys(_views("a", "a", "b", "b"), [3, 4, 5], 0)
    assert keys == [(1, 0, "a", 0), (1, 0, "a", 1), (1, 0, "b", 0), (1, 0, "b", 1)]
    # DistributedSampler padding repeats item 3 in a later batch: both its views are kept once
    first = _views("a", "a", "b", "b")
    padded = _views("a", "a")
    keyed = [*zip(_sample_keys(first, [3, 4], 0), first), *zip(_sample_keys(padded, [3], 0), padded)]
    kept = _first_of_each(keyed)
    assert [(s["video_id"], s["view"]) for s in kept] == [("a", 0), ("a", 1), ("b", 2), ("b", 3)]


class _LogsScore(BoringModel):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("train/loss", out["loss"], on_epoch=True, on_step=False)
        return out

    def on_validation_epoch_end(self):
        self.log("val/score", float(self.current_epoch) / 10)


def test_epoch_lines_when_stdout_is_not_a_terminal(tmp_path, capsys):
    from vidlit.callbacks import EpochLines

    trainer = Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[EpochLines()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(_LogsScore())
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("epoch", "valid"))]
    # pytest captures stdout, as nohup / SLURM / `> log` do: not a terminal
    assert [line.split(":")[0].split(" done")[0] for line in lines] == [
        "validation after epoch 0",
        "epoch 0/2",
        "validation after epoch 1",
        "epoch 1/2",
    ]
    assert "val/score 0.1000" in lines[2] and "train/loss" in lines[3] and "val/" not in lines[3]


def test_rich_progress_bar_shows_the_version_as_an_integer(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    from vidlit.callbacks import VersionTextRichProgressBar, run_dir

    bar = VersionTextRichProgressBar()
    trainer = Trainer(
        logger=CSVLogger(tmp_path, name=""), callbacks=[bar], max_epochs=1, limit_train_batches=1
    )
    assert bar.get_metrics(trainer, BoringModel())["v_num"] == "0"  # rich formats numbers as 0.000
    assert run_dir(trainer) == tmp_path / "version_0"


def test_fast_dev_run_writes_no_checkpoint(tmp_path):
    """``--trainer.fast_dev_run true`` is a smoke run: no end-of-training ``last.ckpt`` (Lightning's).

    Before the fix every smoke run of a recipe left ``<default_root_dir>/checkpoints/last-vN.ckpt``.
    """
    callback = ResumableCheckpoint(
        dirpath=tmp_path / "checkpoints", monitor="score", mode="max", save_last=True
    )
    trainer = Trainer(
        fast_dev_run=True, callbacks=[callback], enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(_GetsWorse())
    assert trainer.global_step == 1
    assert not (tmp_path / "checkpoints").exists()
    assert callback.last_model_path == ""
