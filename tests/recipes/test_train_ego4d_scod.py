"""End to end: the Ego4D SCOD recipe through ``vidlit.cli.main`` on the synthetic sample data.

Chance: the official CenterBox baseline (one centred box covering 10% of the frame at a fixed
score) scores val AP50 ~0.0 on this data (objects cover ~5-10% of the frame at random places;
the test computes it with the same metric), and so do random boxes. The trained two-stage DETR
head must find the one shape of three that changes colour at the PNR frame: after 6 epochs (the
recipe's 20 shortened, learning rate 2e-3) it reached val AP50 0.92; the test asserts >= 0.5.
Its boxes must also be tight: the recipe's sub-token refinement (``refine_stride: 2``) reached
val AP75 0.35 there, where the same run without it (``refine_stride: 0``, boxes on the 8 px
token cells) stays at AP75 0.035 (0.13 after the full 20 epochs); the test asserts AP75 >= 0.2.
"""

import csv
import json
from pathlib import Path

import pytest
import torch

from vidlit.cli import main
from vidlit.data.ego4d_scod import read_scod_annotations
from vidlit.data.synth import synthesize
from vidlit.metrics.coco_detection import COCODetectionAP

pytestmark = pytest.mark.slow

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "ego4d_scod.yaml")


def center_box_ap50(root: Path) -> float:
    """The official CenterBox baseline (centre box covering 10% of the frame) on the val split."""
    metric = COCODetectionAP()
    for clip in read_scod_annotations(root / "fho_scod_val.json"):
        w, h = clip.pnr.width, clip.pnr.height
        r = 0.1**0.5
        box = torch.tensor([[w / 2 - w * r / 2, h / 2 - h * r / 2, w * r, h * r]])
        metric.update(
            [{"image_id": clip.image_id(), "boxes": box, "scores": torch.tensor([0.99])}],
            [{"image_id": clip.image_id(), "boxes": clip.pnr.boxes}],
        )
    return metric.compute()["AP50"].item()


def test_recipe_fit_test_predict(tmp_path):
    data = synthesize("ego4d_scod", tmp_path / "data")
    runs = tmp_path / "runs"
    common = ["--config", RECIPE, "--data.init_args.root", str(data), "--trainer.default_root_dir", str(runs)]
    # validated once, after the last epoch: the same weights and figures as validating every epoch
    main(["fit", *common, "--trainer.max_epochs", "6", "--trainer.check_val_every_n_epoch", "6",
          "--model.init_args.optimizer.init_args.lr", "0.002"])  # fmt: skip
    run = runs / "version_0"
    (row,) = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/AP50")]
    ap50, ap75 = float(row["val/AP50"]), float(row["val/AP75"])
    chance = center_box_ap50(data)
    assert chance < 0.05
    assert ap50 >= 0.5, row
    assert ap75 >= 0.2, row

    main(["test", *common, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    test = next(csv.DictReader((runs / "version_1" / "metrics.csv").open()))
    assert float(test["test/AP50"]) == pytest.approx(ap50, abs=1e-6)

    submission = tmp_path / "scod_results.json"
    main(["predict", *common, "--ckpt_path", "last", "--submission.path", str(submission)])
    results = json.loads(submission.read_text())
    coco = json.loads((data / "coco_annotations" / "val.json").read_text())
    assert {r["image_id"] for r in results} == {image["id"] for image in coco["images"]}
    assert set(results[0]) == {"image_id", "category_id", "bbox", "score"} and results[0]["category_id"] == 1
