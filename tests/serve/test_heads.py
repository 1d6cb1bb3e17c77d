"""The server on task heads: a classification head's top-5 for a region, MQ moments for a timeline."""

import shutil
import warnings
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vidlit.cli import main

pytestmark = pytest.mark.slow

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _fit(recipe: str, data: Path, runs: Path):
    from vidlit.inference import load

    main(
        [
            "fit",
            "--config",
            str(RECIPES / recipe),
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(runs / "version_0" / "checkpoints" / "last.ckpt")


def test_classification_head_region_top5(tmp_path):
    from vidlit.serve.app import create_app

    data = tmp_path / "videos"
    predictor = _fit("video_cls.yaml", data, tmp_path / "runs")
    app = create_app(predictor, folder=data / "videos")
    client = TestClient(app)
    name = client.get("/api/info").json()["folder_videos"][0]
    video_id = client.post("/api/videos/folder", json={"name": name}).json()["video_id"]
    region = client.post(f"/api/videos/{video_id}/region", json={"points": [[0.5, 0.5]], "threshold": -1.0})
    assert region.status_code == 200, region.text
    (ranked,) = region.json()["submission"]["results"].values()
    assert sorted(r["label"] for r in ranked) == ["down", "left", "right", "up"]  # top-5 of 4 classes
    assert sum(r["score"] for r in ranked) == pytest.approx(1.0, abs=1e-4)
    box = client.post(f"/api/videos/{video_id}/region", json={"box": [0.0, 0.0, 0.5, 0.5]})
    assert box.status_code == 200 and len(box.json()["predictions"]) == 1
    app.state.store.close()


def test_moment_queries_head_on_an_uploaded_feature_file(mq_root, tmp_path):
    from vidlit.serve.app import create_app

    data = Path(shutil.copytree(mq_root, tmp_path / "data"))
    predictor = _fit("ego4d_mq.yaml", data, tmp_path / "runs")
    app = create_app(predictor)
    client = TestClient(app)
    assert client.get("/api/info").json()["accepts"] == [".pt", ".npy"]
    features = next(data.rglob("*.pt"))
    opened = client.post("/api/videos", files={"file": ("clip.pt", features.read_bytes())})
    assert opened.status_code == 200, opened.text
    assert opened.json()["frames"] is False and opened.json()["duration"] > 0
    video_id = opened.json()["video_id"]
    whole = client.post(f"/api/videos/{video_id}/query", json={})
    assert whole.status_code == 200
    (moments,) = whole.json()["submission"]["detect_results"].values()
    assert moments and all(0 <= m["segment"][0] <= m["segment"][1] for m in moments)
    assert client.get(f"/api/videos/{video_id}/frames/0").status_code == 422
    assert client.post(f"/api/videos/{video_id}/region", json={"points": [[0.5, 0.5]]}).status_code == 422
    video = client.post("/api/videos", files={"file": ("clip.mp4", b"\0" * 100)})
    assert video.status_code == 415
    bad = client.post("/api/videos", files={"file": ("bad.pt", b"garbage" * 10)})
    assert bad.status_code == 422 and "cannot read" in bad.json()["detail"]
    app.state.store.close()
