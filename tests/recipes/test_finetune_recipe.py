"""End to end: recipes/finetune_k400.yaml and finetune_ssv2.yaml as shipped (short), on synthetic videos."""

import csv
import math
from pathlib import Path

import pytest
import torch

from vidlit.cli import main

pytestmark = pytest.mark.slow

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("recipe", ["finetune_k400.yaml", "finetune_ssv2.yaml"])
def test_finetune_recipe_runs_with_layer_decay_augment_and_ema(tmp_path, recipe):
    data, runs = tmp_path / "videos_synth", tmp_path / "runs"
    main([
        "fit", "--config", str(RECIPES / recipe), "--data.init_args.root", str(data),
        "--trainer.default_root_dir", str(runs),
        "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging",
        "--trainer.callbacks.decay", "0.9",
    ])  # fmt: skip
    run = runs / "version_0"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses and all(math.isfinite(x) for x in losses)
    assert any(r.get("val/top1") for r in rows)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    groups = checkpoint["optimizer_states"][0]["param_groups"]
    depth = 2  # vit_test
    assert sorted({g["layer_id"] for g in groups}) == list(range(depth + 2))
    assert {round(g["lr_scale"], 6) for g in groups} == {
        round(0.75 ** (depth + 1 - i), 6) for i in range(depth + 2)
    }
    assert "current_model_state" in checkpoint  # EMA weights in state_dict, the raw ones beside them
    ema, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert not torch.equal(ema["head.fc.weight"], raw["head.fc.weight"])
