"""End to end: the video classification recipe through ``vidlit.cli.main`` on synthetic videos."""

import csv
import json
from pathlib import Path

import pytest

from vidlit.cli import main

pytestmark = pytest.mark.slow

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "video_cls.yaml")


def test_recipe_trains_a_video_classifier_from_scratch(tmp_path, capsys):
    data, runs = tmp_path / "videos_synth", tmp_path / "runs"
    common = ["--config", RECIPE, "--data.init_args.root", str(data), "--trainer.default_root_dir", str(runs)]
    # the recipe as shipped: random-init vit_test trained with a linear-probe head, backbone NOT frozen
    main(["fit", *common])
    classes = (data / "classes.txt").read_text().split()
    assert (data / "train.csv").is_file() and classes == ["left", "right", "up", "down"]
    run = runs / "version_0"
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/top1")]
    top1 = float(rows[-1]["val/top1"])
    # 4 motion directions, 8 val clips each: chance is 1/4 = 0.25; the recipe ends at 0.97-1.0
    assert top1 >= 0.8, [r["val/top1"] for r in rows]
    assert float(rows[0]["val/top1"]) <= 0.5  # it learned during the run, it did not start there
    assert "val/top1" in capsys.readouterr().out

    main(["test", *common, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    test = next(csv.DictReader((runs / "version_1" / "metrics.csv").open()))
    assert float(test["test/top1"]) == pytest.approx(top1, abs=1e-6)

    submission = tmp_path / "cls_submission.json"
    main(["predict", *common, "--ckpt_path", "last", "--submission.path", str(submission)])
    results = json.loads(submission.read_text())["results"]
    val = [row["path"] for row in csv.DictReader((data / "val.csv").open())]
    assert sorted(results) == sorted(val)
    labels = {row["path"]: row["label"] for row in csv.DictReader((data / "val.csv").open())}
    hits = sum(results[v][0]["label"] == labels[v] for v in val)
    assert hits / len(val) == pytest.approx(top1)
