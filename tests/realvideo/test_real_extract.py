"""``vidlit extract`` (the MVM recipe's tiny ``vit_test`` backbone) over the real files."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from real_media import NAMES, ffprobe

from vidlit.cli import main
from vidlit.extract import num_windows

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "pretrain_mvm.yaml")
WINDOW = STRIDE = 32


def test_extract_writes_one_feature_file_per_real_video(real_videos, tmp_path, one_thread, capsys):
    listing = tmp_path / "videos.csv"
    listing.write_text("path\n" + "".join(f"{real_videos[n]}\n" for n in NAMES))
    out = tmp_path / "features"
    main(["extract", "--config", RECIPE, "--random-weights", "--videos", str(listing), "--out", str(out),
          "--window", str(WINDOW), "--stride", str(STRIDE), "--batch_size", "8"])  # fmt: skip
    assert sorted(f.stem for f in out.glob("*.pt")) == sorted(NAMES)  # one file per video, none failed
    record = json.loads((out / "extraction.json").read_text())
    assert record["feature_stride"] == STRIDE
    features = {}
    for name in NAMES:
        x = torch.load(out / f"{name}.pt", weights_only=True)
        # one step per 32-frame window of the frame count ffprobe reports: 5, 8, 4 and 4
        assert x.shape == (num_windows(ffprobe(real_videos[name]).num_frames, WINDOW, STRIDE), 64), name
        assert x.dtype == torch.float32 and torch.isfinite(x).all()
        features[name] = x
    assert [len(features[n]) for n in NAMES] == [5, 8, 4, 4]
    # different content gives different features (the windows were decoded, not padding)
    assert not torch.allclose(features["bigbuckbunny"][0], features["bikes"][0], atol=1e-3)
    assert not torch.allclose(features["bikes"][0], features["bikes"][-1], atol=1e-3)
    summary = f"{out}: 4 feature files written, 0 already present, 0 unreadable videos"
    assert summary in capsys.readouterr().out
