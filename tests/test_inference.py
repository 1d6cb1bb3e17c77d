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


def test_infer_matches_predict_classification(tmp_path, infer):
    data = tmp_path / "videos"
    ckpt, predicted = _fit_predict("video_cls.yaml", data, tmp_path / "runs", tmp_path)
    rows = list(csv.DictReader((data / "val.csv").open()))
    for row in rows[:2]:
        video = data / row["path"]
        printed = infer("--ckpt_path", str(ckpt), str(video))
        assert printed["version"] == "1.0"
        got = printed["results"][str(video)]
        want = predicted["results"][row["path"]]
        assert [g["label"] for g in got] == [w["label"] for w in want]
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)


def test_infer_matches_predict_moment_queries(mq_root, tmp_path, infer):
    data = Path(shutil.copytree(mq_root, tmp_path / "data"))
    ckpt, predicted = _fit_predict("ego4d_mq.yaml", data, tmp_path / "runs", tmp_path)
    uid = next(iter(predicted["detect_results"]))
    features = next((data).rglob(f"{uid}.pt"))
    printed = infer("--ckpt_path", str(ckpt), str(features))
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


def test_infer_runs_an_mvm_backbone(tmp_path, infer, fit_one_step):
    from vidlit.inference import load
    from vidlit.serve.regions import grow_region

    data = tmp_path / "videos"
    ckpt = fit_one_step("--config", str(RECIPES / "pretrain_mvm.yaml"), root=data, runs=tmp_path / "runs")
    video = data / next(csv.DictReader((data / "val.csv").open()))["path"]
    printed = infer("--ckpt_path", str(ckpt), str(video))
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


def test_infer_matches_predict_natural_language_queries(nlq_run, tmp_path, infer):
    data, ckpt, common = nlq_run
    submission = tmp_path / "submission.json"
    main(["predict", *common, "--ckpt_path", str(ckpt), "--submission.path", str(submission)])
    predicted = {
        (r["clip_uid"], r["annotation_uid"], r["query_idx"]): r["predicted_times"]
        for r in json.loads(submission.read_text())["results"]
    }

    # the second clip of the first val video: a window that does not start at the file's start
    video = json.loads((data / "nlq_val.json").read_text())["videos"][0]
    clip = video["clips"][-1]
    annotation = clip["annotations"][0]
    texts = [q["query"] for q in annotation["language_queries"]]
    features = data / "features" / f"{video['video_uid']}.pt"
    window = ["--start", str(clip["video_start_sec"]), "--end", str(clip["video_end_sec"])]
    printed = infer("--ckpt_path", str(ckpt), str(features), *window, "--texts", *texts)
    assert printed["challenge"] == "ego4d_nlq_challenge"
    assert [r["query_idx"] for r in printed["results"]] == list(range(len(texts)))
    for result in printed["results"]:
        assert result["clip_uid"] == video["video_uid"]
        want = predicted[(clip["clip_uid"], annotation["annotation_uid"], result["query_idx"])]
        assert len(result["predicted_times"]) == len(want) == 5
        assert [x for w in result["predicted_times"] for x in w] == pytest.approx(
            [x for w in want for x in w], abs=1e-4
        )


def test_infer_matches_predict_xd_violence(tmp_path, infer):
    """Frame-level violence scores of one video equal the data module's predict loop's for it.

    ``vidlit predict`` cannot write XD-Violence (the data module has no submission format), so
    the reference is the same checkpoint run by a Trainer over the data module's predict loader:
    batches of several videos, padded, against ``vidlit infer`` reading one video's files.
    """
    import lightning as L

    from vidlit.inference import load

    data, runs = tmp_path / "data", tmp_path / "runs"
    common = ["--config", str(RECIPES / "xd_violence.yaml"), "--data.init_args.root", str(data)]
    common += ["--data.init_args.feature_dim", "64", "--trainer.default_root_dir", str(runs)]
    main(["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
          "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false"])  # fmt: skip
    ckpt = runs / "version_0" / "checkpoints" / "last.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = load(ckpt)
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
        batches = trainer.predict(predictor.module, datamodule=predictor.datamodule)
    predicted = {p["video_id"]: p["scores"] for batch in batches for p in batch}
    videos = predictor.datamodule.videos("test")
    lengths = {len(s) for s in predicted.values()}
    assert len(lengths) > 1  # videos of different lengths: the loader pads, infer does not

    # the VGGish file found through the data module's lists, and given with --audio
    for video, audio in ((videos[0], []), (videos[-1], ["--audio", str(videos[-1].audio)])):
        printed = infer("--ckpt_path", str(ckpt), str(video.rgb[2]), *audio)
        assert printed["clip_len"] == 16
        got = printed["results"][video.name]
        want = predicted[video.name]
        assert got["snippet_scores"] == pytest.approx(want.tolist(), abs=1e-5)
        assert len(got["frame_scores"]) == 16 * len(want)
        assert got["frame_scores"][16:32] == pytest.approx([float(want[1])] * 16, abs=1e-5)
