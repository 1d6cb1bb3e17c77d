"""Full fine-tuning of an MVM-pretrained backbone with the whole fine-tuning recipe beats its linear probe.

Everything runs through ``vidlit.cli.main`` as a user would, on 256 synthetic camera pans
(``vidlit data synth pans``: a smooth colour texture moving left, right, up or down, labelled by
the direction; 192 train / 64 val, chance 0.25):

1. ``recipes/pretrain_mvm.yaml`` pretrains ``vit_test`` for 4 epochs (48 steps) on the train videos
   and exports ``backbone.pt``;
2. ``recipes/finetune_k400.yaml`` fine-tunes all of it from ``backbone.pt`` with the whole recipe:
   layer-wise lr decay (0.75), drop path (0.1), label smoothing (0.1), repeated augmentation (2),
   AdamW (betas, weight decay 0.05 off norms / biases / position tables), warmup + cosine, and the
   batch augmentations as shipped (RandAugment m7-n4-mstd0.5-inc1, random erasing 0.25, mixup 0.8
   / cutmix 1.0), for ``EPOCHS`` epochs;
3. ``recipes/video_cls.yaml`` with ``freeze_backbone: true`` linear-probes the same ``backbone.pt``
   (lr 0.01, as ``scripts/probe_pretrained_vs_random.py``) for the same epochs.

One part of the recipe is overridden: ``use_mean_pooling: false`` (the pretrained final norm, then
the mean over tokens) in place of VideoMAE's fine-tuning layout (the mean of the raw tokens, then a
fresh ``fc_norm``). The mean of a 2-block ViT's raw tokens is mostly its patch embedding plus the
position table (norm 31.5 of 33.4 on the moving-shape videos), linear in the clip's pixels, and the
direction of a motion cancels in a linear average; in ViT-B's 12 blocks the blocks' output
dominates the stream. The recipe exactly as shipped (mean pooling on) does beat the probe on most
seeds, but later and not on all: after 24 epochs, validating once, 0.906 / 0.781 / 0.375 / 0.797 /
0.828 on seeds 0-4 (seed 2 0.03 over its probe).

Why pans and not the moving shapes of ``vidlit data synth videos``: there the class is one small
bright shape on a dark, noisy background, and RandAugment's intensity ops erase it (Equalize
stretches the background noise over the full range, Solarize and Invert flip the shape into the
background). From that data's MVM-pretrained backbone, the whole recipe stayed at chance for 40
fine-tuning epochs (its pooled features vary across clips by 2 % of their norm, and the head's
weights did not grow in 192 steps), at lr 3e-4 to 5e-3, batch 8 or 32, pretraining 4 to 40
epochs, with a smooth or brighter background or a twice larger shape, while its probe reached 0.6.
With the batch augmentations off it beat the probe by 0.17-0.36 (seeds 0-4). A pan moves the
whole frame, as camera motion does in real footage, and the motion of a texture survives
intensity ops.

Observed, final val top-1 fine-tuned / probe (margin), pretraining and fine-tuning on one seed,
validating once after the last epoch (2026-12-07): seed 0: 0.984 / 0.438 (0.55); 1: 1.0 / 0.516
(0.48); 2: 0.609 / 0.344 (0.27); 3: 1.0 / 0.5 (0.5); 4: 1.0 / 0.484 (0.52). Smallest margin 0.27
(seed 2); asserted ``MARGIN`` = 0.2 (one val clip is 0.016). The test runs seed 0. Validating every
epoch (a different run: each validation loader's seed draw from the global RNG moves the training
draws after it), the fine-tuned run sits near chance for about 8 epochs, then climbs (seed 2: 0.52
at epoch 10, 0.91 at 11, 0.98 from 16); when it leaves chance varies with the seed, hence 24 epochs: after
20, seeds 2 and 4 had reached only 0.53 and 0.64 (probes 0.38, 0.44). Without the batch
augmentations it reaches 1.0 at epoch 7 (seed 0): on 192 clips of one distribution there is no
overfitting for them to prevent, so the probe, not the run without them, is the baseline.
Time on the shared 2-core machine (one torch thread, another run beside it): pretraining 10 s,
fine-tuning 40 s, probe 22 s; each test pays one of them (the fixtures are module-scoped).

Fine-tuning and probe validate once, after their last epoch (only the final top-1 is compared).
"""

import csv
import json
from pathlib import Path

import pytest
import yaml

from vidlit.cli import main
from vidlit.data.synth.videos import write_synthetic_video_list

pytestmark = pytest.mark.slow

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SEED = 0
PRETRAIN_EPOCHS = 4
EPOCHS = 24
MARGIN = 0.2  # smallest observed margin 0.27: see the module docstring
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
    """``recipes/finetune_k400.yaml`` from ``backbone``, the whole recipe but mean pooling."""
    backbone_args = {
        "init_args": {"checkpoint_path": str(backbone)},
        "dict_kwargs": {"drop_path_rate": 0.1, "use_mean_pooling": False},
    }
    overrides = {
        "model": {"init_args": {"backbone": backbone_args}},
        "trainer": {"callbacks": [], "enable_checkpointing": False},
    }
    run = _fit("finetune_k400.yaml", out, overrides, data, epochs, seed)
    # the run trained with the recipe's batch augmentations (that TaskModule applies `augment` to
    # training batches: tests/data/test_augment.py::test_task_module_augments_training_batches_only)
    config = yaml.safe_load((run / "version_0" / "config.yaml").read_text())
    augment = config["model"]["init_args"]["augment"]["init_args"]
    parts = {name: (augment.get(name) or {}).get("class_path") for name in ("rand_augment", "erasing", "mix")}
    assert all(parts.values()), parts
    return final_top1(run)


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
    return write_synthetic_video_list(
        tmp_path_factory.mktemp("margin") / "videos", num_videos=256, scene="pans"
    )


@pytest.fixture(scope="module")
def pretrained(videos, tmp_path_factory) -> Path:
    return pretrain(videos, tmp_path_factory.mktemp("pretrain"))


@pytest.fixture(scope="module")
def fine_tuned_top1(videos, pretrained, tmp_path_factory) -> float:
    return fine_tune(videos, pretrained, tmp_path_factory.mktemp("finetune"))


def test_mvm_pretraining_lowers_the_masked_pixel_loss(pretrained):
    # observed 1.13-1.14 -> 0.995 in 48 steps, seeds 0-4 (the per-frame noise is unpredictable)
    losses = logged(pretrained.parent, "train/loss")
    assert pretrained.is_file() and losses[-1] < losses[0] - 0.05, losses


def test_recipe_fine_tunes_a_pretrained_backbone_well_above_chance(fine_tuned_top1):
    assert fine_tuned_top1 >= 0.25 + MARGIN


def test_recipe_fine_tuning_beats_the_linear_probe(videos, pretrained, fine_tuned_top1, tmp_path):
    probe_top1 = linear_probe(videos, pretrained, tmp_path / "probe")
    assert fine_tuned_top1 >= probe_top1 + MARGIN, (fine_tuned_top1, probe_top1)
