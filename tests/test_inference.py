"""``vidlit infer`` prints, for one video, what ``vidlit predict`` writes for it (classification, MQ)."""

import csv
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from vidlit.cli import main

pytestmark = pytest.mark.slow

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _fit_predict(recipe: str, data: Path, runs: Path, tmp_path: Path) -> tuple[Path, dict]:
    common = [
        "--config",
        str(RECIPES / recipe),
        "--data.init_args.root",
        str(data),
        "--trainer.default_root_dir",
        str(runs),
    ]
    main(
        [
            "fit",
            *common,
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "1",
        ]
    )
    ckpt = runs / "version_0" / "checkpoints" / "last.ckpt"
    submission = tmp_path / "submission.json"
    main(["predict", *common, "--ckpt_path", str(ckpt), "--submission.path", str(submission)])
    return ckpt, json.loads(submission.read_text())


def _infer(capsys, *args: str) -> dict:
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(["infer", *args])
    return json.loads(capsys.readouterr().out)


def test_infer_matches_predict_classification(tmp_path, capsys):
    data = tmp_path / "videos"
    ckpt, predicted = _fit_predict("video_cls.yaml", data, tmp_path / "runs", tmp_path)
    rows = list(csv.DictReader((data / "val.csv").open()))
    for row in rows[:2]:
        video = data / row["path"]
        printed = _infer(capsys, "--ckpt_path", str(ckpt), str(video))
        assert printed["version"] == "1.0"
        got = printed["results"][str(video)]
        want = predicted["results"][row["path"]]
        assert [g["label"] for g in got] == [w["label"] for w in want]
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)


def test_infer_matches_predict_moment_queries(mq_root, tmp_path, capsys):
    data = Path(shutil.copytree(mq_root, tmp_path / "data"))
    ckpt, predicted = _fit_predict("ego4d_mq.yaml", data, tmp_path / "runs", tmp_path)
    uid = next(iter(predicted["detect_results"]))
    features = next((data).rglob(f"{uid}.pt"))
    printed = _infer(capsys, "--ckpt_path", str(ckpt), str(features))
    assert printed["challenge"] == "ego4d_moment_queries"
    got, want = printed["detect_results"][uid], predicted["detect_results"][uid]
    assert len(got) == len(want) > 0
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert [x for g in got for x in g["segment"]] == pytest.approx(
        [x for w in want for x in w["segment"]], abs=1e-4
    )
    assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)


def test_load_errors_name_the_missing_file(tmp_path):
    from vidlit.inference import find_config, load

    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load(tmp_path / "missing.ckpt")
    (tmp_path / "x.ckpt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        find_config(tmp_path / "x.ckpt")


def test_infer_runs_an_mvm_backbone(tmp_path, capsys):
    from vidlit.inference import load
    from vidlit.serve.regions import grow_region

    data, runs = tmp_path / "videos", tmp_path / "runs"
    main(
        [
            "fit",
            "--config",
            str(RECIPES / "pretrain_mvm.yaml"),
            "--data.init_args.root",
            str(data),
            "--trainer.default_root_dir",
            str(runs),
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "1",
            "--trainer.limit_val_batches",
            "1",
        ]
    )
    ckpt = runs / "version_0" / "checkpoints" / "last.ckpt"
    video = data / next(csv.DictReader((data / "val.csv").open()))["path"]
    printed = _infer(capsys, "--ckpt_path", str(ckpt), str(video))
    assert len(printed[0]["embedding"]) == 64  # vit_test's width
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = load(ckpt)
    clip = predictor.prepare(video)
    tokens, grid = predictor.tokens(clip)
    assert tuple(grid) == (4, 4, 4) and tokens.shape == (4, 4, 4, 64)
    region = grow_region(tokens, [(0, 1, 1)], threshold=0.0)
    embedding = predictor.predict_region(clip, region).predictions[0]["embedding"]
    assert embedding.shape == (64,) and torch.isfinite(embedding).all()
