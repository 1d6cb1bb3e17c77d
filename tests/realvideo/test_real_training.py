"""A few training steps of the video classification recipe on the real files, through ``vidlit.cli.main``."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from real_media import NAMES

from vidlit.cli import main

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "video_cls.yaml")


@pytest.mark.slow
def test_video_cls_recipe_trains_on_real_videos_with_finite_losses(real_videos, tmp_path, one_thread):
    data, runs = tmp_path / "real", tmp_path / "runs"
    data.mkdir()
    rows = "".join(f"{real_videos[n]},{'animation' if n == 'bigbuckbunny' else 'camera'}\n" for n in NAMES)
    (data / "train.csv").write_text("path,label\n" + rows)
    (data / "val.csv").write_text("path,label\n" + rows)
    data_args = {"root": str(data), "synthetic": "false", "classes": "null", "batch_size": "2",
                 "strict": "true"}  # fmt: skip
    trainer_args = {"default_root_dir": str(runs), "max_steps": "4", "log_every_n_steps": "1",
                    "limit_val_batches": "1", "callbacks": "[]"}  # fmt: skip
    args = [x for k, v in data_args.items() for x in (f"--data.init_args.{k}", v)]
    args += [x for k, v in trainer_args.items() for x in (f"--trainer.{k}", v)]
    main(["fit", "--config", RECIPE, *args])  # strict: an unreadable real file would stop the run
    metrics = list(csv.DictReader((runs / "version_0" / "metrics.csv").open()))
    train = [float(r["train/loss"]) for r in metrics if r.get("train/loss")]
    val = [float(r["val/loss"]) for r in metrics if r.get("val/loss")]
    assert len(train) == 4 and len(val) == 2, metrics  # 4 steps: 2 epochs of 2 batches, one val batch each
    assert all(math.isfinite(x) for x in train + val), (train, val)
