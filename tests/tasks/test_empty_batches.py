"""Batches whose videos are all unreadable: skipped and counted by every task module, never NaN.

Real bad files (zero-byte, truncated, random-bytes mp4 files), not mocks: the data module drops
them while decoding, so a batch of only bad files reaches the module with a ``[0, ...]`` video.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import lightning as L
import pytest
import torch

from vidlit.backbones import create_backbone
from vidlit.data import VideoListDataModule
from vidlit.data.synth.videos import write_corrupt_videos
from vidlit.data.video_list import write_synthetic_video_list
from vidlit.heads import LinearProbeHead
from vidlit.tasks import MVMPretrain, TaskModule, VideoTextPretrain
from vidlit.tasks.empty_batches import NoReadableVideosError, is_empty_batch
from vidlit.tasks.finetune import check_finite_loss

BAD = ("zero_byte", "truncated", "random_bytes")
CLASSES = ["down", "left", "right", "up"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """4 good 8-frame 32 px clips and 3 bad files; lists: mostly bad, all bad, good."""
    root = tmp_path_factory.mktemp("empty_batches")
    write_synthetic_video_list(root, num_videos=4, num_frames=8, size=32)
    corrupt = write_corrupt_videos(root / "bad")
    with open(root / "videos.csv") as f:
        good = list(csv.reader(f))[1:]
    bad = [[f"bad/{corrupt[kind].name}", "left"] for kind in BAD]
    lists = {"mostly_bad.csv": bad + good[:1], "all_bad.csv": bad, "good.csv": good}
    for name, rows in lists.items():
        with open(root / name, "w", newline="") as f:
            csv.writer(f).writerows([["path", "label"], *rows])
    return root


def data(root: Path, train: str, val: str, batch_size: int) -> VideoListDataModule:
    module = VideoListDataModule(
        # the class list is explicit: a val label outside the train list's labels is an error
        str(root), train_list=train, val_list=val, classes=CLASSES, num_frames=8, size=32, short_side=32,
        batch_size=batch_size,
    )  # fmt: skip
    # deterministic order: the bad files come first, so the first batches are empty
    module.train_dataloader = lambda: module._loader(module._split("train"), module._collate(), train=False)
    return module


def trainer(tmp_path, **kwargs) -> L.Trainer:
    args = dict(
        default_root_dir=tmp_path, max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
    )  # fmt: skip
    return L.Trainer(**{**args, **kwargs})


def mvm() -> MVMPretrain:
    torch.manual_seed(0)
    return MVMPretrain(
        create_backbone("vit_test"), mask_ratio=0.75, decoder_dim=32, decoder_depth=1, decoder_heads=4
    )


def classifier() -> TaskModule:
    torch.manual_seed(0)
    backbone = create_backbone("vit_test")
    return TaskModule(LinearProbeHead(in_dim=backbone.embed_dim, num_classes=4), backbone)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_mvm_pretraining_skips_batches_of_unreadable_videos(root, tmp_path, batch_size, caplog):
    module = mvm()
    before = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    dm = data(root, "mostly_bad.csv", "good.csv", batch_size)
    with caplog.at_level(logging.WARNING):
        trainer(tmp_path, limit_val_batches=1).fit(module, datamodule=dm)
    # the readable clip trained the backbone; the empty batches did not reach the loss
    assert any(not torch.equal(v, before[k]) for k, v in module.backbone.state_dict().items())
    expected_empty = 3 if batch_size == 1 else 1
    assert f"skipped {expected_empty} of {4 if batch_size == 1 else 2} batches" in caplog.text
    assert len(dm.skipped_videos["train"]) == 3


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_split_of_only_unreadable_videos_stops_with_one_line(root, tmp_path, batch_size):
    with pytest.raises(NoReadableVideosError, match=r"^train epoch 0: no readable video in any of its "
                       r"[23] batches \(3 unreadable: .*zero_byte\.mp4 \(empty file") as error:  # fmt: skip
        trainer(tmp_path).fit(mvm(), datamodule=data(root, "all_bad.csv", "good.csv", batch_size))
    assert "\n" not in str(error.value)


def test_video_cls_with_every_val_video_bad_does_not_report_nan(root, tmp_path):
    with pytest.raises(NoReadableVideosError, match=r"^val epoch 0: no readable video"):
        trainer(tmp_path, limit_train_batches=1).fit(
            classifier(), datamodule=data(root, "good.csv", "all_bad.csv", 2)
        )
    with pytest.raises(NoReadableVideosError, match=r"^val epoch 0: no readable video"):
        trainer(tmp_path).validate(mvm(), datamodule=data(root, "good.csv", "all_bad.csv", 1), verbose=False)


def test_cli_exits_nonzero_with_one_line_when_every_video_is_bad(root, tmp_path, capsys):
    from vidlit.cli import main

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "video_cls.yaml"
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(recipe), "--data.init_args.root", str(root),
              "--data.init_args.train_list", "all_bad.csv", "--data.init_args.val_list", "all_bad.csv",
              "--data.init_args.classes", "null", "--trainer.default_root_dir", str(tmp_path),
              "--trainer.max_epochs", "1", "--trainer.num_sanity_val_steps", "0"])  # fmt: skip
    assert exit_.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    # validation closes the training epoch: the val split is found out first
    assert last.startswith("vidlit: error: val epoch 0: no readable video in its only batch"), last


def test_every_module_skips_an_empty_batch_without_a_false_alarm():
    empty = {"video": torch.zeros(0, 3, 8, 32, 32), "video_ids": [], "captions": [],
             "labels": torch.zeros(0, dtype=torch.long), "targets": [], "skipped": ["a.mp4"],
             "skip_reasons": ["empty file"]}  # fmt: skip
    assert is_empty_batch(empty) and not is_empty_batch({"video": torch.zeros(1, 3, 8, 32, 32)})
    viclip = VideoTextPretrain(create_backbone("vit_test"), text="text_test", proj_dim=16, mvm_weight=1.0,
                               decoder_dim=32, decoder_depth=1, decoder_heads=4)  # fmt: skip
    modules = [mvm(), classifier(), viclip]
    for module in modules:
        assert module.training_step(empty, 0) is None, type(module).__name__
        assert module.empty_batches.empty["train"] == 1
    # the mean over no clip is NaN: the finite check says why instead of blaming "samples: []"
    nan = torch.zeros(0).mean()
    with pytest.raises(
        FloatingPointError, match=r"batch 0 at step 0 holds no readable video \(skipped: \['a.mp4'\]\)"
    ):
        check_finite_loss(modules[0], {"loss": nan}, empty, 0)
