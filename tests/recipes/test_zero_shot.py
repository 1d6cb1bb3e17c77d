"""Done-when of issue 14 (zero-shot): a tiny ViCLIP-style model trained by recipes/pretrain_viclip.yaml,
evaluated zero-shot through recipes/zeroshot_cls.yaml and recipes/retrieval_eval.yaml, far above chance.

Chance on the synthetic evaluation sets: classification (36 clips, 9 classes "red square", "blue
circle", ...; CLIP's 28 Kinetics templates) top-1 1/9 = 0.111; MSR-VTT 1k-A style retrieval (24
videos, one caption each) t2v R@1 1/24 = 0.042, median rank 12.5.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from vidlit.cli import main

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _test_metrics(run: Path) -> dict[str, float]:
    (metrics,) = run.glob("version_*/metrics.csv")
    row = next(r for r in csv.DictReader(metrics.open()) if r.get("test/t2v/R@1") or r.get("test/top1"))
    return {k: float(v) for k, v in row.items() if k.startswith("test/") and v}


def _pretrain_then_zero_shot(tmp_path: Path, *configs: Path) -> tuple[dict[str, float], dict[str, float]]:
    """``vidlit fit`` with ``configs``, then ``vidlit test`` of zeroshot_cls.yaml and retrieval_eval.yaml.

    Returns:
        the classification and the retrieval test metrics.
    """
    runs = tmp_path / "runs"
    pretrain = [arg for config in configs for arg in ("--config", str(config))]
    main(["fit", *pretrain, "--data.init_args.root", str(tmp_path / "internvid_synth"),
          "--trainer.default_root_dir", str(runs / "pretrain")])  # fmt: skip
    (checkpoint,) = (runs / "pretrain").glob("version_0/checkpoints/last.ckpt")

    for recipe, data in (("zeroshot_cls.yaml", "kinetics_synth"), ("retrieval_eval.yaml", "msrvtt_synth")):
        main(["test", "--config", str(RECIPES / recipe), "--model.init_args.checkpoint", str(checkpoint),
              "--data.init_args.root", str(tmp_path / data),
              "--trainer.default_root_dir", str(runs / recipe)])  # fmt: skip
    classification = _test_metrics(runs / "zeroshot_cls.yaml")
    retrieval = _test_metrics(runs / "retrieval_eval.yaml")
    print(f"zero-shot top-1 {classification['test/top1']:.3f}, t2v R@1 {retrieval['test/t2v/R@1']:.3f}")
    return classification, retrieval


@pytest.mark.slow
def test_pretrained_tiny_viclip_is_far_above_chance_zero_shot(tmp_path):
    """Pretraining: the shipped recipe (vit_test video tower, frozen MiniLM text tower, 128-d space)
    for 8 epochs on the synthetic InternVid captions, no validation. Then, zero-shot:

    - classification: development runs reached top-1 0.42; the test asks for >= 0.25 (2.25x chance);
    - retrieval: development runs reached t2v R@1 0.29 (R@5 0.83, median rank 3); the test asks for
      R@1 >= 0.125 (3x chance) and a median rank of at most 6 (chance: 12.5).
    """
    short = tmp_path / "short.yaml"
    short.write_text("trainer:\n  max_epochs: 8\n  limit_val_batches: 0\n")
    classification, retrieval = _pretrain_then_zero_shot(tmp_path, RECIPES / "pretrain_viclip.yaml", short)
    assert classification["test/top1"] >= 0.25, classification  # chance 0.111
    assert retrieval["test/t2v/R@1"] >= 0.125 and retrieval["test/t2v/MdR"] <= 6, retrieval  # chance 0.042


@pytest.mark.slow
def test_pretrained_tiny_viclip_clip_towers_are_far_above_chance_zero_shot(tmp_path):
    """ViCLIP's own architecture: recipes/pretrain_viclip.yaml with recipes/viclip_clip_towers.yaml
    (CLIPVideoViT ``viclip_test``: class token after ``ln_post``; CLIP text tower ``clip_test`` with
    CLIP's BPE tokenizer; both from random weights, the text tower trained), and a short overlay:
    20 epochs, no validation, lr 4e-3 (shipped 1e-3, for 30 epochs) and drop_ratio 0.5 (64 of
    viclip_test's 128 tokens kept; shipped 0.75). As shipped, 30 epochs reach top-1 0.42 and
    t2v R@1 0.21 but take ~45 s CPU for the pretraining alone; with the overlay at 15 or 20 epochs
    the shipped drop 0.75 reached only R@1 0.08-0.17.

    Development runs of the overlay (seeds 42 / 0 / 1 / 2 / 3 via ``seed_everything``; the test
    runs the recipe's 42): zero-shot top-1 0.556 / 0.333 / 0.500 / 0.472 / 0.417, t2v R@1 0.208 /
    0.125 / 0.167 / 0.125 / 0.250, median rank 3 / 4.5 / 4 / 4 / 4. The minimum (top-1 0.333 = 3x
    chance, R@1 0.125 = 3x chance) sets the bounds below with a margin of one step of the 24-video
    R@1: top-1 >= 2x chance (8 of 36 clips), R@1 >= 2x chance (2 of 24 videos) and a median rank
    of at most 6 (chance 12.5). About 40 s CPU in all, pytest's imports included (one intra-op thread).
    """
    overlay = tmp_path / "clip_short.yaml"
    overlay.write_text(
        "trainer:\n  max_epochs: 20\n  limit_val_batches: 0\n"
        "model:\n  init_args:\n    drop_ratio: 0.5\n    optimizer:\n      init_args: {lr: 4.0e-3}\n"
    )
    classification, retrieval = _pretrain_then_zero_shot(
        tmp_path, RECIPES / "pretrain_viclip.yaml", RECIPES / "viclip_clip_towers.yaml", overlay
    )
    # literal bounds: 8/36 and 2/24 pass, 7/36 and 1/24 fail, without float32-vs-float64 ties
    assert classification["test/top1"] >= 0.22, classification  # 2x chance 0.111
    assert retrieval["test/t2v/R@1"] >= 0.08 and retrieval["test/t2v/MdR"] <= 6, retrieval  # 2x chance 0.042
