"""``vidlit extract``: sliding-window features from a trained backbone, then an MQ head trained on them."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from vidlit.backbones import create_backbone
from vidlit.cli import main
from vidlit.data.ego4d_mq import Ego4DMQ
from vidlit.data.features import feature_timing
from vidlit.data.synth.videos import write_synthetic_videos
from vidlit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, VideoBatchTransform
from vidlit.data.video import VideoDecodeError, open_video
from vidlit.extract import FeatureExtractor, extract_features, num_windows, window_frame_indices
from vidlit.tasks.pretrain import MVMPretrain, save_backbone

ROOT = Path(__file__).resolve().parents[1]
MVM_RECIPE = str(ROOT / "recipes" / "pretrain_mvm.yaml")
MQ_RECIPE = str(ROOT / "recipes" / "ego4d_mq.yaml")
FRAMES, FPS, WINDOW, STRIDE = 72, 15, 16, 8


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Six 4.8 s clips (72 frames at 15 fps, 32 px) and their list; the ``000000.mp4`` naming
    plays the part of Ego4D's ``<clip_uid>.mp4``."""
    root = tmp_path_factory.mktemp("extract_videos")
    write_synthetic_videos(root, 6, num_frames=FRAMES, size=32, fps=FPS, seed=1)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A Lightning checkpoint of the MVM recipe's model (vit_test backbone), as `vidlit fit` saves it."""
    torch.manual_seed(0)
    module = MVMPretrain(
        create_backbone("vit_test"), mask_ratio=0.75, decoder_dim=32, decoder_depth=1, decoder_heads=2
    )
    trainer = L.Trainer(
        logger=False, enable_checkpointing=False, accelerator="cpu", enable_progress_bar=False
    )
    trainer.strategy.connect(module)
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    trainer.save_checkpoint(path)
    return path, module.backbone.eval()


def test_windows_follow_the_ego4d_layout():
    # 72 frames, 16-frame windows every 8: starts 0, 8, ..., 56; every frame is covered
    assert num_windows(72, 16, 8) == 8 and num_windows(10, 16, 8) == 1
    indices = window_frame_indices(72, 16, 8, frames_per_window=8)
    assert indices.shape == (8, 8)
    assert indices[0].tolist() == [0, 2, 4, 6, 8, 10, 12, 14] and indices[-1, 0] == 56
    # a last window that runs past the end repeats the last frame
    assert window_frame_indices(20, 16, 8, 4)[-1].tolist() == [8, 12, 16, 19]
    assert num_windows(32 * 16, 32, 16) == 31  # SlowFast's 32-frame windows every 16 frames


def test_extract_cli_writes_resumes_and_matches_the_backbone(videos, checkpoint, tmp_path, one_thread):
    ckpt, backbone = checkpoint
    out = tmp_path / "features"
    args = [
        "extract",
        "--config",
        MVM_RECIPE,
        "--ckpt_path",
        str(ckpt),
        "--videos",
        str(videos / "videos.csv"),
    ]
    args += ["--out", str(out), "--window", str(WINDOW), "--stride", str(STRIDE), "--batch_size", "3"]
    main(args)
    files = sorted(out.glob("*.pt"))
    assert [f.stem for f in files] == [f"{i:06d}" for i in range(6)]
    steps = math.ceil((FRAMES - WINDOW) / STRIDE) + 1
    features = torch.load(files[0], weights_only=True)
    assert features.shape == (steps, 64) and features.dtype == torch.float32
    assert json.loads((out / "extraction.json").read_text())["feature_stride"] == STRIDE

    # step 3 is the checkpoint's backbone on frames 24, 26, ..., 38, resized and normalized as in eval
    with open_video(videos / "videos" / "000000.mp4", resize=32) as reader:
        frames = reader.get_frames(np.arange(24, 40, 2))
    clip = VideoBatchTransform(32, train=False, mean=IMAGENET_MEAN, std=IMAGENET_STD)(frames[None])
    with torch.no_grad():
        expected = backbone(clip, output="pooled")[0]
    torch.testing.assert_close(features[3], expected, atol=1e-4, rtol=1e-4)

    # resume: only the missing file is written again
    files[2].unlink()
    before = {f.name: f.stat().st_mtime_ns for f in files if f.exists()}
    main(args)
    assert files[2].is_file()
    assert {f.name: f.stat().st_mtime_ns for f in files if f.name in before} == before
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind


def test_unreadable_videos_are_skipped_or_raise_when_strict(videos, tmp_path, capsys):
    whole = (videos / "videos" / "000002.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(whole[: len(whole) // 2])  # a download cut short
    listing = tmp_path / "list.csv"
    with listing.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path"])
        writer.writerows([[str(videos / "videos" / "000001.mp4")], [str(tmp_path / "truncated.mp4")]])
    extractor = FeatureExtractor(
        create_backbone("vit_test", num_frames=4).eval(), frames_per_window=4, size=32
    )
    summary = extract_features(extractor, listing, tmp_path / "f", window=16, stride=16, progress=False)
    assert summary.written == ["000001"] and summary.existing == []
    assert [Path(p).name for p, _ in summary.failed] == ["truncated.mp4"]
    assert torch.load(tmp_path / "f" / "000001.pt", weights_only=True).shape == (math.ceil(56 / 16) + 1, 64)
    with pytest.raises(VideoDecodeError, match="truncated.mp4") as error:
        extract_features(
            extractor, listing, tmp_path / "g", window=16, stride=16, strict=True, progress=False
        )
    assert str(error.value).count("truncated.mp4:") == 1, str(error.value)  # the path once, not twice
    with pytest.raises(SystemExit) as exit_:  # the command line: one line, exit status 1
        main(["extract", "--config", MVM_RECIPE, "--random-weights", "--videos", str(listing), "--out",
              str(tmp_path / "h"), "--strict"])  # fmt: skip
    assert exit_.value.code == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("vidlit extract: error: ") and line.count("truncated.mp4:") == 1, line


def test_a_video_that_fails_part_way_is_skipped_whole(videos, tmp_path, caplog, zero_frames):
    # frames 50 to 53 unreadable: the first windows (one per row here) decode, a later one fails
    zero_frames(videos / "videos" / "000002.mp4", tmp_path / "holed.mp4", 50, 4)
    listing = tmp_path / "list.csv"
    paths = [videos / "videos" / "000001.mp4", tmp_path / "holed.mp4", videos / "videos" / "000003.mp4"]
    listing.write_text("path\n" + "".join(f"{p}\n" for p in paths))
    extractor = FeatureExtractor(
        create_backbone("vit_test", num_frames=4).eval(), frames_per_window=4, size=32
    )
    with caplog.at_level("WARNING"):
        summary = extract_features(
            extractor, listing, tmp_path / "f", window=16, stride=16, batch_size=1, progress=False
        )
    assert summary.written == ["000001", "000003"]
    assert [Path(p).name for p, _ in summary.failed] == ["holed.mp4"]
    assert f"skipping unreadable video {tmp_path / 'holed.mp4'}: " in caplog.text
    assert not (tmp_path / "f" / "holed.pt").exists()
    marker = json.loads((tmp_path / "f" / "partitions" / "part-000000.json").read_text())
    assert list(marker["failed"]) == ["holed"]


def test_backbone_file_and_duplicate_names(videos, tmp_path):
    backbone = create_backbone("vit_test")
    save_backbone(backbone, tmp_path / "backbone.pt")
    extractor = FeatureExtractor.from_recipe(MVM_RECIPE, tmp_path / "backbone.pt")
    for name, value in backbone.state_dict().items():
        torch.testing.assert_close(extractor.backbone.state_dict()[name], value)
    assert (extractor.frames_per_window, extractor.size) == (8, 32)
    twice = tmp_path / "twice.csv"
    twice.write_text(f"path\n{videos}/videos/000000.mp4\n{tmp_path}/other/000000.mp4\n")
    with pytest.raises(ValueError, match=r"twice.csv:3: .* would both write 000000.pt"):
        extract_features(extractor, twice, tmp_path / "f", progress=False)


def _mq_annotations(clip_uids: list[str], duration: float) -> dict:
    """Ego4D MQ annotation JSON (official nesting: videos -> clips -> annotations -> labels)."""
    videos = []
    for n, uid in enumerate(clip_uids):
        moments = [(0.4, 2.0, "cut_dough"), (2.6, 4.4, "wash_hands")] if n % 2 else [(1.0, 3.5, "use_phone")]
        labels = [
            {"start_time": s, "end_time": e, "video_start_time": s, "video_end_time": e, "label": name,
             "primary": True}
            for s, e, name in moments
        ]  # fmt: skip
        clip = {
            "clip_uid": uid,
            "video_start_sec": 0.0,
            "video_end_sec": duration,
            "annotations": [{"annotator_uid": "a0", "labels": labels}],
        }
        videos.append({"video_uid": f"video-{uid}", "clips": [clip]})
    return {"version": "v2", "description": "vidlit extract test", "videos": videos}


@pytest.mark.slow
def test_moment_queries_head_trains_on_extracted_features(videos, checkpoint, tmp_path, one_thread):
    """Extracted features in the Ego4D layout train the MQ recipe's head through `vidlit fit`.

    The features of a random-init backbone carry little about the made-up moments, so this
    asserts the plumbing (the files load, the loss is finite and the val metrics are computed),
    not a figure.
    """
    ckpt, _ = checkpoint
    root = tmp_path / "mq"
    main(
        ["extract", "--config", MVM_RECIPE, "--ckpt_path", str(ckpt), "--videos", str(videos / "videos.csv")]
        + ["--out", str(root / "features"), "--window", str(WINDOW), "--stride", str(STRIDE)]
    )
    uids = [f"{i:06d}" for i in range(6)]
    duration = FRAMES / FPS
    (root / "moments_train.json").write_text(json.dumps(_mq_annotations(uids[:4], duration)))
    (root / "moments_val.json").write_text(json.dumps(_mq_annotations(uids[4:], duration)))
    small = tmp_path / "small.yaml"
    small.write_text(
        "model:\n  init_args:\n    head:\n"
        "      init_args: {embed_dim: 32, head_dim: 32, levels: 3, window: 3}\n"
    )
    runs = tmp_path / "runs"
    main(
        ["fit", "--config", MQ_RECIPE, "--config", str(small), "--data.init_args.root", str(root)]
        + ["--data.init_args.synthetic", "false", "--data.init_args.feature_dim", "64"]
        # fps, stride and window come from features/extraction.json
        + ["--data.init_args.batch_size", "2"]
        + ["--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1"]
        + ["--trainer.default_root_dir", str(runs)]
    )
    (run,) = runs.glob("version_*")
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    val = [float(r["val/mAP"]) for r in rows if r.get("val/mAP")]
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(val) == 2 and all(0.0 <= v <= 1.0 for v in val)
    assert losses and all(math.isfinite(v) for v in losses)
    shutil.rmtree(runs)


def test_fps_resamples_the_timeline(videos, tmp_path):
    """``fps=30`` on a 15 fps video: 144 frames on the 30 fps timeline, each source frame twice."""
    listing = tmp_path / "one.csv"
    listing.write_text(f"path\n{videos}/videos/000003.mp4\n")
    extractor = FeatureExtractor(
        create_backbone("vit_test", num_frames=4).eval(), frames_per_window=4, size=32
    )
    extract_features(extractor, listing, tmp_path / "f", window=16, stride=8, fps=30.0, progress=False)
    features = torch.load(tmp_path / "f" / "000003.pt", weights_only=True)
    assert features.shape == (math.ceil((2 * FRAMES - 16) / 8) + 1, 64)
    # windows 0 and 1 of the 30 fps timeline cover source frames 0-7 and 4-11: different clips
    assert not torch.allclose(features[0], features[1])


def _two_videos(videos: Path, tmp_path: Path) -> Path:
    listing = tmp_path / "two.csv"
    listing.write_text(f"path\n{videos}/videos/000000.mp4\n{videos}/videos/000001.mp4\n")
    return listing


def test_a_rerun_with_other_settings_or_weights_is_refused(videos, tmp_path):
    listing, out = _two_videos(videos, tmp_path), tmp_path / "f"
    torch.manual_seed(0)
    extractor = FeatureExtractor(
        create_backbone("vit_test", num_frames=4).eval(), frames_per_window=4, size=32
    )
    extract_features(extractor, listing, out, window=16, stride=16, progress=False)
    record = json.loads((out / "extraction.json").read_text())
    assert (record["feature_window"], record["feature_stride"], record["source_fps"]) == (16, 16, [FPS])
    assert len(record["weights_sha256"]) == 64 and record["random_weights"] is False
    (out / "000001.pt").unlink()  # a killed run: same settings resume
    assert extract_features(extractor, listing, out, window=16, stride=16, progress=False).written == [
        "000001"
    ]

    with pytest.raises(ValueError, match=r"extraction.json: the features there were extracted otherwise "
                       r"\(feature_stride 16 -> 8\); .*--overwrite"):  # fmt: skip
        extract_features(extractor, listing, out, window=16, stride=8, progress=False)
    other = FeatureExtractor(create_backbone("vit_test", num_frames=4).eval(), frames_per_window=4, size=32)
    with pytest.raises(ValueError, match=r"\(weights_sha256 '[0-9a-f]+\.\.\. -> '[0-9a-f]+\.\.\.\)"):
        extract_features(other, listing, out, window=16, stride=16, progress=False)
    assert json.loads((out / "extraction.json").read_text()) == record  # the record was not rewritten

    summary = extract_features(other, listing, out, window=16, stride=8, progress=False, overwrite=True)
    assert sorted(summary.written) == ["000000", "000001"] and not summary.existing
    assert {torch.load(f, weights_only=True).shape[0] for f in out.glob("*.pt")} == {num_windows(72, 16, 8)}

    # a folder of features without a record: nobody knows how they were made; named, since
    # --overwrite would delete them and they may be the user's own .pt files
    (tmp_path / "old").mkdir()
    for name in ("000000.pt", "a.pt", "b.pt", "c.pt"):
        torch.save(torch.zeros(3, 64), tmp_path / "old" / name)
    with pytest.raises(
        ValueError, match=r"old: holds 4 feature files \(000000.pt, a.pt, b.pt, ...\) but no "
    ):
        extract_features(extractor, listing, tmp_path / "old", progress=False)


def test_an_extraction_lists_its_output_folder_once(videos, tmp_path, monkeypatch):
    """The settings check and the resume share one listing of the output folder (each listing of
    an object store is a request): counted on fsspec's in-memory file system, which still lists."""
    from fsspec.implementations.memory import MemoryFileSystem

    url, root = f"memory://vidlit-test-{tmp_path.name}/features", f"/vidlit-test-{tmp_path.name}/features"
    listed: list[str] = []
    real_ls = MemoryFileSystem.ls

    def counting_ls(self, path, *args, **kwargs):
        listed.append(path.rstrip("/"))
        return real_ls(self, path, *args, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "ls", counting_ls)
    listing = _two_videos(videos, tmp_path)
    torch.manual_seed(0)
    extractor = FeatureExtractor(
        create_backbone("vit_test", num_frames=4).eval(), frames_per_window=4, size=32
    )
    memory = MemoryFileSystem()
    try:
        assert extract_features(extractor, listing, url, window=16, stride=16, progress=False).written == [
            "000000",
            "000001",
        ]
        assert listed.count(root) == 1  # a new folder: one ls, which finds nothing (no isdir first)
        memory.rm_file(f"{root}/000001.pt")  # a killed run: the resume lists once too
        listed.clear()
        resumed = extract_features(extractor, listing, url, window=16, stride=16, progress=False)
        assert (resumed.written, resumed.existing) == (["000001"], ["000000"]) and listed.count(root) == 1
        listed.clear()
        again = extract_features(
            extractor, listing, url, window=16, stride=16, progress=False, overwrite=True
        )
        assert again.written == ["000000", "000001"] and listed.count(root) == 1
    finally:
        memory.rm(root.rsplit("/", 1)[0], recursive=True)


def test_random_weights_need_an_explicit_flag(videos, tmp_path, capsys):
    args = ["extract", "--config", MVM_RECIPE, "--videos", str(_two_videos(videos, tmp_path))]
    args += ["--out", str(tmp_path / "f"), "--window", "36", "--stride", "36"]
    with pytest.raises(SystemExit):
        main(args)
    assert "would come from random weights; pass --random-weights" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()
    main([*args, "--random-weights"])
    record = json.loads((tmp_path / "f" / "extraction.json").read_text())
    assert record["random_weights"] is True
    (tmp_path / "f" / "000000.pt").unlink()
    main([*args, "--random-weights"])  # the same seeded draw: the resume is accepted
    assert (tmp_path / "f" / "000000.pt").is_file()
    with pytest.raises(SystemExit):
        main([*args, "--random-weights", "--ckpt_path", str(tmp_path / "x.ckpt")])
    assert "drop one of the two" in capsys.readouterr().err


def test_feature_data_modules_read_the_timing_from_the_record(videos, tmp_path):
    root = tmp_path / "mq"
    extractor = FeatureExtractor(
        create_backbone("vit_test", num_frames=4).eval(), frames_per_window=4, size=32
    )
    extract_features(extractor, _two_videos(videos, tmp_path), root / "features", window=16, stride=8,
                     progress=False)  # fmt: skip
    assert feature_timing(root / "features") == (FPS, 8, 16)  # fps: the source videos' rate
    assert feature_timing(tmp_path) == (30.0, 16, 32)  # no record: the official Ego4D features
    with pytest.raises(ValueError, match=r"extraction.json: key 'feature_stride': .*extracted with 8, but"):
        feature_timing(root / "features", feature_stride=16)
    for split, uids in (("train", ["000000"]), ("val", ["000001"])):
        (root / f"moments_{split}.json").write_text(json.dumps(_mq_annotations(uids, FRAMES / FPS)))
    data = Ego4DMQ(str(root), feature_dim=64)
    assert (data.step_sec, data.offset_sec) == (pytest.approx(8 / FPS), pytest.approx(8 / FPS))


def test_a_file_that_is_no_checkpoint_or_an_empty_list_is_one_line(videos, tmp_path, capsys):
    """A video passed as --ckpt_path or as --videos, or a list with no rows: one line naming the file,
    no traceback, and no output folder."""
    video = str(videos / "videos" / "000000.mp4")
    listing = _two_videos(videos, tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("path\n")
    cases = [
        (
            ["--ckpt_path", video, "--videos", str(listing)],
            "000000.mp4: not a checkpoint (not the zip archive",
        ),
        (["--random-weights", "--videos", video], "000000.mp4: not a text file"),
        (["--random-weights", "--videos", str(empty)], "empty.csv: the list names no videos"),
        (
            ["--random-weights", "--videos", str(listing), "--out", str(empty)],
            "empty.csv: is a file; --out is",
        ),
    ]
    for i, (args, message) in enumerate(cases):
        with pytest.raises(SystemExit) as exit_:
            main(
                ["extract", "--config", MVM_RECIPE, "--out", str(tmp_path / f"f{i}"), *args]
            )  # args' --out wins
        assert exit_.value.code == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith("vidlit extract: error: ") and message in line, line
        assert not (tmp_path / f"f{i}").exists()


def test_exit_status_1_when_no_video_of_the_list_could_be_read(videos, tmp_path, capsys):
    """Every video unreadable: the summary lists them and the exit status is 1, so a script that
    extracts and then trains stops here; one readable video (or a resumed one) is a success."""
    (tmp_path / "cut.mp4").write_bytes((videos / "videos" / "000002.mp4").read_bytes()[:3000])
    listing = tmp_path / "list.csv"
    listing.write_text("path\ncut.mp4\nmissing.mp4\n")
    args = ["extract", "--config", MVM_RECIPE, "--random-weights", "--videos", str(listing)]
    args += ["--out", str(tmp_path / "f"), "--window", "36", "--stride", "36"]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    assert "0 feature files written, 0 already present, 2 unreadable videos" in captured.out
    assert (
        captured.err.strip().splitlines()[-1] == f"vidlit extract: error: no video of {listing} could be read"
    )
    shutil.copy(videos / "videos" / "000001.mp4", tmp_path)
    listing.write_text("path\ncut.mp4\n000001.mp4\n")
    assert main(args) is None and (tmp_path / "f" / "000001.pt").is_file()
