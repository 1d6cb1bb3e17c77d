"""The HTTP API: uploads (limits, corrupt files), path traversal, region queries, concurrency."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.slow  # the session's demo model trains first (about a minute, once)

RED, BLUE = (0.25, 0.25), (0.75, 0.75)  # frame 0 of two_shapes.mp4: square top-left, circle bottom-right
TEXTS = ["a red square", "a blue circle"]


def _open(client, demo):
    return client.post("/api/videos", files={"file": ("mine.mp4", demo[1].read_bytes(), "video/mp4")})


def test_upload_query_region_and_frames(app, demo):
    client = TestClient(app)
    info = client.get("/api/info").json()
    assert info["kind"] == "video_text" and info["folder_videos"] == ["two_shapes.mp4"]
    opened = _open(client, demo)
    assert opened.status_code == 200, opened.text
    video = opened.json()
    assert video["num_frames"] == 24 and (video["height"], video["width"]) == (64, 64)
    stored = list(app.state.store.root.iterdir())
    # stored under a generated name in the server's folder, never the client's name
    assert len(stored) == 1 and "mine" not in stored[0].name
    png = client.get(f"/api/videos/{video['video_id']}/frames/3")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    for point, first in ((RED, "a red square"), (BLUE, "a blue circle")):
        r = client.post(f"/api/videos/{video['video_id']}/region", json={"points": [point], "texts": TEXTS})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["ranking"][0]["text"] == first, body["ranking"]
        assert body["grid"] == [4, 8, 8] and 0 < sum(map(sum, body["mask"][0])) < 16
    box = client.post(
        f"/api/videos/{video['video_id']}/region", json={"box": [0.5, 0.55, 1.0, 1.0], "texts": TEXTS}
    )
    assert box.status_code == 200 and box.json()["ranking"][0]["text"] == "a blue circle"
    whole = client.post(f"/api/videos/{video['video_id']}/query", json={"texts": TEXTS})
    assert whole.status_code == 200 and len(whole.json()["ranking"]) == 2
    docs = client.get("/openapi.json").json()
    assert "/api/videos/{video_id}/region" in docs["paths"]


def test_upload_limits_and_corrupt_upload_keep_the_server_serving(app, demo):
    client = TestClient(app)
    big = client.post("/api/videos", files={"file": ("big.mp4", b"\0" * (600 * 1024), "video/mp4")})
    assert big.status_code == 413 and "limit" in big.json()["detail"]
    wrong = client.post("/api/videos", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert wrong.status_code == 415
    corrupt = client.post(
        "/api/videos", files={"file": ("bad.mp4", b"not a video at all" * 100, "video/mp4")}
    )
    assert corrupt.status_code == 422 and corrupt.json()["detail"].startswith("cannot read the video")
    truncated = client.post(
        "/api/videos", files={"file": ("cut.mp4", demo[1].read_bytes()[:2000], "video/mp4")}
    )
    assert truncated.status_code == 422
    empty = client.post("/api/videos", files={"file": ("empty.mp4", b"", "video/mp4")})
    assert empty.status_code == 422
    assert list(app.state.store.root.iterdir()) == []  # refused uploads are deleted
    assert _open(client, demo).status_code == 200  # still serving


def test_path_traversal_is_rejected(app, demo, tmp_path):
    client = TestClient(app)
    secret = demo[1].parent.parent / "demo_fit.yaml"
    for name in ("../demo_fit.yaml", str(secret), "../../../../etc/passwd", "..%2Fdemo_fit.yaml"):
        r = client.post("/api/videos/folder", json={"name": name})
        assert r.status_code in (404, 422), (name, r.status_code)
    for video_id in ("..", "..%2F..%2Fetc%2Fpasswd", "0" * 31 + "/", "../" + "0" * 29):
        r = client.get(f"/api/videos/{video_id}/frames/0")
        assert r.status_code in (404, 422), (video_id, r.status_code)
    upload = client.post(
        "/api/videos", files={"file": ("../../escape.mp4", demo[1].read_bytes(), "video/mp4")}
    )
    assert upload.status_code == 200
    assert not (app.state.store.root.parent / "escape.mp4").exists()
    assert [p.parent for p in app.state.store.root.iterdir()] == [app.state.store.root]
    ok = client.post("/api/videos/folder", json={"name": "two_shapes.mp4"})
    assert ok.status_code == 200


def test_uploads_expire(predictor, demo):
    from vidlit.serve.app import create_app

    app = create_app(predictor, ttl=0.0)
    client = TestClient(app)
    video_id = _open(client, demo).json()["video_id"]
    r = client.get(f"/api/videos/{video_id}/frames/0")
    assert r.status_code == 404 and list(app.state.store.root.iterdir()) == []
    app.state.store.close()
    assert not app.state.store.root.exists()


def test_frames_reuse_one_open_reader_per_video_closed_on_expiry(predictor, demo):
    """Scrubbing decodes through one kept reader per video; expiry and shutdown close them."""
    from vidlit.serve.app import create_app

    app = create_app(predictor, folder=demo[1].parent, ttl=600)
    client = TestClient(app)
    store = app.state.store
    first = _open(client, demo).json()["video_id"]
    pngs = [client.get(f"/api/videos/{first}/frames/{i}").content for i in (0, 5, 5, 23)]
    assert len(store.readers) == 1 and pngs[1] == pngs[2] != pngs[0]
    (reader,) = store.readers._readers.values()
    second = client.post("/api/videos/folder", json={"name": "two_shapes.mp4"}).json()["video_id"]
    assert client.get(f"/api/videos/{second}/frames/1").status_code == 200
    assert len(store.readers) == 2 and not reader._closed  # the first video's reader is still the one
    store.ttl = 0.0  # everything open is now stale
    assert client.get(f"/api/videos/{first}/frames/0").status_code == 404
    assert len(store.readers) == 0 and reader._closed
    store.close()


def test_16_concurrent_requests(server, demo):
    with httpx.Client(base_url=server, timeout=120) as client:
        video_id = client.post("/api/videos/folder", json={"name": "two_shapes.mp4"}).json()["video_id"]

        def ask(i):
            point, first = (RED, TEXTS[0]) if i % 2 == 0 else (BLUE, TEXTS[1])
            r = client.post(f"/api/videos/{video_id}/region", json={"points": [point], "texts": TEXTS})
            return r.status_code, r.json()["ranking"][0]["text"], first

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(ask, range(16)))
    assert all(code == 200 and got == want for code, got, want in answers), answers


def test_python_api_takes_a_frame_tensor(predictor):
    import torch

    from vidlit.serve.demo import two_shapes_frames
    from vidlit.serve.regions import grow_region, to_token

    clip = predictor.prepare(torch.from_numpy(two_shapes_frames()))
    assert clip.frame_indices.shape == (1, 8) and clip.num_frames == 24
    tokens, grid = predictor.tokens(clip)
    seed = (0, *to_token(*BLUE, clip.crop, grid[1:]))
    ranking = predictor.predict_region(clip, grow_region(tokens, [seed]), TEXTS).ranking
    assert ranking[0][0] == "a blue circle"
    with pytest.raises(ValueError, match="uint8"):
        predictor.prepare(torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match="texts"):
        predictor.predict(clip)


def test_vidlit_infer_ranks_texts(demo, capsys):
    import json

    from vidlit.cli import main

    capsys.readouterr()
    main(["infer", "--ckpt_path", str(demo[0]), str(demo[1]), "--texts", *TEXTS])
    printed = json.loads(capsys.readouterr().out)
    scores = [r["score"] for r in printed["ranking"]]
    assert sorted(r["text"] for r in printed["ranking"]) == sorted(TEXTS)
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-5)


def test_vidlit_serve_demo_command_serves_on_localhost(demo):
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = demo[0].parents[3]  # the demo folder: the trained run is reused, nothing retrains
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    command = [
        sys.executable,
        "-m",
        "vidlit.cli",
        "serve",
        "--demo",
        "--demo_dir",
        str(folder),
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 50
        info = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=2).json()
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert info is not None, process.stdout.read() if process.poll() is not None else "no answer"
        assert info["folder_videos"] == ["two_shapes.mp4"] and info["default_texts"][:2] == TEXTS
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert f"http://127.0.0.1:{port}/" in process.stdout.read()


def test_wide_video_frames_keep_their_size_and_points_outside_the_crop_are_refused(app, tmp_path):
    import io

    import numpy as np
    from PIL import Image

    from vidlit.data.synth.videos import write_video
    from vidlit.serve.demo import two_shapes_frames

    frames = np.pad(two_shapes_frames(), ((0, 0), (0, 0), (32, 32), (0, 0)))  # 64 x 128, shapes centred
    path = tmp_path / "wide.mp4"
    write_video(path, frames, fps=10)
    client = TestClient(app)
    video = client.post("/api/videos", files={"file": ("wide.mp4", path.read_bytes())}).json()
    assert (video["height"], video["width"]) == (64, 128)
    png = Image.open(io.BytesIO(client.get(f"/api/videos/{video['video_id']}/frames/0").content))
    assert png.size == (128, 64)
    outside = client.post(f"/api/videos/{video['video_id']}/region", json={"points": [[0.05, 0.5]]})
    assert outside.status_code == 422 and "outside the model's centre crop" in outside.json()["detail"]
    # the red square sits at x = (32 + 16) / 128 in the wide frame: inside the centre crop
    red = client.post(
        f"/api/videos/{video['video_id']}/region", json={"points": [[0.375, 0.25]], "texts": TEXTS}
    )
    assert red.status_code == 200 and red.json()["ranking"][0]["text"] == "a red square"
    assert red.json()["crop"] == pytest.approx([0.0, 0.25, 1.0, 0.5])


def test_serve_refuses_a_file_or_a_missing_folder_as_videos(tmp_path, capsys):
    from vidlit.serve.app import serve_main

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    for given, said in ((video, "a file; --videos takes the folder"), (tmp_path / "none", "no such folder")):
        with pytest.raises(SystemExit):
            serve_main(["--ckpt_path", str(tmp_path / "model.ckpt"), "--videos", str(given)])
        err = capsys.readouterr().err
        assert f"{given}: {said}" in err, err
