"""The server on task heads: a classification head's top-5 for a region, MQ moments for a timeline,
Ego4D FHP hands and SCOD boxes at the frame the page shows."""

import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

pytestmark = pytest.mark.slow


def test_classification_head_region_top5(fit, tmp_path):
    from vidlit.serve.app import create_app

    data = tmp_path / "videos"
    predictor = fit("video_cls.yaml", data, tmp_path / "runs")
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
    # a model that takes no key frame ignores one
    assert client.get("/api/info").json()["takes_frame"] is False
    whole = client.post(f"/api/videos/{video_id}/query", json={}).json()
    at_frame = client.post(f"/api/videos/{video_id}/query", json={"frame": 3}).json()
    assert (
        at_frame["frame"] is None and at_frame["predictions"][0]["label"] == whole["predictions"][0]["label"]
    )
    torch.testing.assert_close(
        _numbers(at_frame["predictions"], "scores"), _numbers(whole["predictions"], "scores")
    )
    app.state.store.close()


def test_moment_queries_head_on_an_uploaded_feature_file(fit, mq_root, tmp_path):
    from vidlit.serve.app import create_app

    data = Path(shutil.copytree(mq_root, tmp_path / "data"))
    predictor = fit("ego4d_mq.yaml", data, tmp_path / "runs")
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


def _numbers(predictions: list[dict], key: str) -> torch.Tensor:
    return torch.tensor([p[key] for p in predictions])


def _open_first(client: TestClient) -> tuple[dict, dict]:
    info = client.get("/api/info").json()
    opened = client.post("/api/videos/folder", json={"name": info["folder_videos"][0]})
    assert opened.status_code == 200, opened.text
    return info, opened.json()


def test_hand_forecast_at_the_shown_frame(fit, tmp_path):
    """FHP: a query at frame F forecasts from the clip ending before pre_45 = F, in stored-frame pixels."""
    from vidlit.data.synth.ego4d_fhp import write_ego4d_fhp
    from vidlit.data.video import stored_size
    from vidlit.serve.app import create_app

    data = write_ego4d_fhp(tmp_path / "data", num_train=8, num_val=8, num_test=1)
    predictor = fit("ego4d_fhp.yaml", data, tmp_path / "runs")
    app = create_app(predictor, folder=data / "clips")
    client = TestClient(app)
    info, opened = _open_first(client)
    assert info["takes_frame"] is True
    path = data / "clips" / info["folder_videos"][0]
    assert opened["frames"] is True and (opened["height"], opened["width"]) == stored_size(path)
    height, width = opened["height"], opened["width"]
    url = f"/api/videos/{opened['video_id']}/query"
    answers = {}
    for frame in (20, opened["num_frames"] - 1):
        result = client.post(url, json={"frame": frame})
        assert result.status_code == 200, result.text
        body = result.json()
        assert body["frame"] == frame
        # every view is keyed by the official `<clip>_<pre_45 - 1>` of the frame asked for
        assert {p["video_id"] for p in body["predictions"]} == {f"{path.stem}_{frame - 1}"}
        # the same numbers `vidlit infer --frame` gives
        expected = predictor.predict(path, frame=frame).to_json()["predictions"]
        torch.testing.assert_close(_numbers(body["predictions"], "hands"), _numbers(expected, "hands"))
        for prediction in body["predictions"]:
            hands = prediction["hands"]  # key frame, hand, (x, y)
            assert len(hands) == 5 and all(len(h) == 2 for h in hands)
            assert all(0 <= x <= width and 0 <= y <= height for h in hands for x, y in h)
        answers[frame] = body["predictions"][0]["hands"]
    assert answers[20] != answers[opened["num_frames"] - 1]  # another clip, another forecast
    assert client.post(url, json={"frame": opened["num_frames"]}).status_code == 422
    assert client.post(url, json={"frame": -1}).status_code == 422
    default = client.post(url, json={})
    assert default.status_code == 200 and default.json()["frame"] is None
    # a key-frame head is queried at a frame, not on a region of tokens
    region = client.post(f"/api/videos/{opened['video_id']}/region", json={"points": [[0.5, 0.5]]})
    assert region.status_code == 422 and "query it at a frame" in region.json()["detail"]
    app.state.store.close()


def test_state_change_box_at_the_shown_frame(fit, tmp_path):
    """SCOD: a query at frame F boxes the object of change on the clip centred on F, inside the frame."""
    from vidlit.data.synth import synthesize
    from vidlit.serve.app import create_app

    data = synthesize("ego4d_scod", tmp_path / "data")
    predictor = fit("ego4d_scod.yaml", data, tmp_path / "runs")
    app = create_app(predictor, folder=data / "clips")
    client = TestClient(app)
    info, opened = _open_first(client)
    assert info["takes_frame"] is True and opened["frames"] is True
    path = data / "clips" / info["folder_videos"][0]
    url = f"/api/videos/{opened['video_id']}/query"
    boxes = {}
    for frame in (3, opened["num_frames"] - 4):
        result = client.post(url, json={"frame": frame})
        assert result.status_code == 200, result.text
        body = result.json()
        (prediction,) = body["predictions"]
        assert body["frame"] == frame and prediction["image_id"] == f"{path.stem}/{frame}.jpg"
        expected = predictor.predict(path, frame=frame).to_json()["predictions"]
        for key in ("boxes", "scores"):
            torch.testing.assert_close(_numbers([prediction], key), _numbers(expected, key))
        assert prediction["scores"] == sorted(prediction["scores"], reverse=True)
        for x, y, w, h in prediction["boxes"]:
            assert 0 <= x and 0 <= y and w >= 0 and h >= 0
            assert x + w <= opened["width"] + 1e-3 and y + h <= opened["height"] + 1e-3
        boxes[frame] = prediction["boxes"]
    assert boxes[3] != boxes[opened["num_frames"] - 4]
    frame_png = client.get(f"/api/videos/{opened['video_id']}/frames/3")
    assert frame_png.status_code == 200 and frame_png.headers["content-type"] == "image/png"
    # each query decodes the video again: one that became unreadable is a 422 with the reason
    path.write_bytes(path.read_bytes()[:1000])
    broken = client.post(url, json={"frame": 3})
    assert broken.status_code == 422 and broken.json()["detail"].startswith("cannot read the video"), (
        broken.text
    )
    app.state.store.close()


def test_short_term_anticipation_labels_the_box_drawn(fit, tmp_path):
    """STA: a box drawn on frame F is labelled (noun, verb, time to contact) as `vidlit infer` labels it."""
    from vidlit.data.ego4d_sta import read_sta_annotations
    from vidlit.data.synth.ego4d_sta import write_ego4d_sta
    from vidlit.serve.app import create_app

    data = write_ego4d_sta(tmp_path / "data", num_train=8, num_val=4, num_test=2)
    predictor = fit("ego4d_sta.yaml", data, tmp_path / "runs")
    app = create_app(predictor, folder=data / "videos")
    client = TestClient(app)
    item = read_sta_annotations(data / "fho_sta_val.json").frames[0]
    info = client.get("/api/info").json()
    assert info["takes_frame"] is True and info["takes_boxes"] is True
    assert info["class_names"] == predictor.datamodule.noun_names
    assert info["verb_names"] == predictor.datamodule.verb_names
    opened = client.post("/api/videos/folder", json={"name": f"{item.video_uid}.mp4"})
    assert opened.status_code == 200, opened.text
    video = opened.json()
    height, width = video["height"], video["width"]
    x0, y0, x1, y1 = item.boxes[0].tolist()  # the annotated object, drawn as fractions of the frame
    drawn = [x0 / width, y0 / height, x1 / width, y1 / height]
    url = f"/api/videos/{video['video_id']}/region"
    labelled = {}
    for frame in (item.frame, item.frame - 6):
        result = client.post(url, json={"frame": frame, "box": drawn})
        assert result.status_code == 200, result.text
        body = result.json()
        (prediction,) = body["predictions"]
        assert body["frame"] == frame
        # every noun hypothesis is for the drawn box, in the stored frame's pixels
        torch.testing.assert_close(
            _numbers([prediction], "boxes")[0], item.boxes[:1].expand(len(prediction["boxes"]), 4)
        )
        want = predictor.predict(
            data / "videos" / f"{item.video_uid}.mp4",
            frame=frame,
            detections=[{"box": [x0, y0, x1, y1], "score": 1.0}],
        ).to_json()["predictions"]
        assert prediction["nouns"] == want[0]["nouns"] and prediction["verbs"] == want[0]["verbs"]
        for key in ("ttcs", "scores"):
            torch.testing.assert_close(_numbers([prediction], key), _numbers(want, key))
        labelled[frame] = prediction["ttcs"] + prediction["scores"]
    assert labelled[item.frame] != labelled[item.frame - 6]  # another clip observed
    points = client.post(url, json={"frame": item.frame, "points": [[0.5, 0.5]]})
    assert points.status_code == 422 and "drag one" in points.json()["detail"]
    assert client.post(url, json={"frame": video["num_frames"], "box": drawn}).status_code == 422
    flat = client.post(url, json={"frame": item.frame, "box": [0.5, 0.2, 0.5, 0.6]})
    assert flat.status_code == 422 and "no area" in flat.json()["detail"]
    # a drag past the frame's edge keeps the part inside it
    edge = client.post(url, json={"frame": item.frame, "box": [-0.5, 0.5, 0.5, 1.5]})
    assert edge.status_code == 200 and edge.json()["predictions"][0]["boxes"][0] == [
        0,
        height / 2,
        width / 2,
        height,
    ]
    assert (
        client.post(f"/api/videos/{video['video_id']}/query", json={"frame": item.frame}).status_code == 422
    )
    app.state.store.close()
