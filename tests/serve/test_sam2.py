"""SAM 2 wiring: a randomly initialized SAM 2 (no weights are downloadable here) prompts regions."""

import pytest
import torch
from fastapi.testclient import TestClient

pytest.importorskip("sam2")
pytestmark = pytest.mark.slow

TEXTS = ["a red square", "a blue circle"]


def test_sam2_segmenter_gives_token_regions_through_the_api(predictor, demo):
    from vidlit.serve.app import create_app
    from vidlit.serve.sam2_regions import Sam2Segmenter

    # Hiera-T with random weights at 128 px: the masks mean nothing, the plumbing is what is tested
    segmenter = Sam2Segmenter("configs/sam2.1/sam2.1_hiera_t.yaml", None, "cpu", image_size=128)
    clip = predictor.prepare(demo[1])
    _, grid = predictor.tokens(clip)
    region = segmenter.region(clip, grid, frame=5, points=[(0.25, 0.25)])
    assert region.shape == tuple(grid) and region.dtype == torch.bool

    app = create_app(predictor, folder=demo[1].parent, segmenter=segmenter)
    client = TestClient(app)
    assert client.get("/api/info").json()["sam2"] is True
    video_id = client.post("/api/videos/folder", json={"name": demo[1].name}).json()["video_id"]
    r = client.post(
        f"/api/videos/{video_id}/region", json={"box": [0.0, 0.0, 1.0, 1.0], "texts": TEXTS, "method": "sam2"}
    )
    # random weights may segment nothing: then the answer is a clear 422, not a crash
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        assert r.json()["grid"] == list(grid) and len(r.json()["ranking"]) == 2
    else:
        assert "SAM 2 found no object" in r.json()["detail"]
    body = {"points": [[0.25, 0.25]], "method": "grow", "texts": TEXTS}
    grown = client.post(f"/api/videos/{video_id}/region", json=body)
    assert grown.status_code == 200 and grown.json()["ranking"][0]["text"] == "a red square"
    app.state.store.close()
