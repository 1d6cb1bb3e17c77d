"""``vidlit curate``: shot cuts, scoring, the threshold, resuming, corrupt sources, outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import vidlit.curate as curate_module
from vidlit.backbones import create_backbone
from vidlit.backbones.video_text import VideoTextModel
from vidlit.cli import main
from vidlit.curate import (
    Caption,
    SourceVideo,
    _Cut,
    _encode_kept,
    curate,
    detect_shots,
    format_timestamp,
    read_curation_input,
    split_shots,
)
from vidlit.data.internvid import parse_timestamp, read_internvid_annotations
from vidlit.data.sampling import uniform_segments
from vidlit.data.shards import VideoTextShards
from vidlit.data.synth.videos import write_video
from vidlit.data.transforms import VideoBatchTransform
from vidlit.data.video import open_video

FPS = 15
SHOT = 20  # frames per shot
COLOURS = [(220, 30, 30), (30, 180, 30), (30, 30, 220), (128, 128, 128)]
CAPTIONS = [
    {"start": 0.0, "end": 1.2, "text": "a red screen"},  # overlaps only the first shot
    "a white bar moving right",  # untimed: a candidate for every shot
    {"start": 2.8, "text": "the final shot"},  # overlaps only the last shot
]
OPTIONS = {"min_shot_frames": 6, "min_clip_seconds": 0.5, "progress": False}


def _shot(colour: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    frames = np.empty((SHOT, 64, 64, 3), dtype=np.uint8)
    for t in range(SHOT):
        noise = rng.integers(-6, 7, size=(64, 64, 3))
        frames[t] = np.clip(np.asarray(colour) + noise, 0, 255)
        frames[t, 24:40, 4 + 2 * t : 16 + 2 * t] = 255
    return frames


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """Three 4 s videos of three hard-cut shots each (cuts at frames 20 and 40), a corrupt one,
    and the curation input JSONL naming all four."""
    root = tmp_path_factory.mktemp("curate_sources")
    rng = np.random.default_rng(0)
    lines = []
    for v in range(3):
        frames = np.concatenate([_shot(COLOURS[(v + s) % 4], rng) for s in range(3)])
        write_video(root / f"src{v}.mp4", frames, fps=FPS)
        lines.append({"video": f"src{v}.mp4", "captions": CAPTIONS})
    (root / "broken.mp4").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    lines.append({"video": "broken.mp4", "id": "broken-id", "captions": ["anything"]})
    (root / "input.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


@pytest.fixture(scope="module")
def model() -> VideoTextModel:
    torch.manual_seed(0)
    return VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=32).eval()


def test_pyscenedetect_finds_the_hard_cuts(sources):
    assert detect_shots(sources / "src0.mp4", min_shot_frames=6) == [(0, 20), (20, 40), (40, 60)]
    assert detect_shots(sources / "src1.mp4", detector="adaptive", min_shot_frames=6) == [
        (0, 20),
        (20, 40),
        (40, 60),
    ]


def test_clips_timestamps_and_caption_windows():
    assert split_shots([(0, 20), (20, 25), (25, 100)], fps=10, min_seconds=1.0, max_seconds=3.0) == [
        (0, 20),
        (25, 50),
        (50, 75),
        (75, 100),
    ]  # the 0.5 s shot is dropped, the 7.5 s one split in three
    assert format_timestamp(3725.0456) == "01:02:05.046"
    timed = Caption("x", start=1.0, end=2.0)
    assert timed.overlaps(1.5, 3.0) and not timed.overlaps(2.0, 3.0) and Caption("y").overlaps(50, 60)


def test_curate_scores_filters_writes_and_skips_corrupt(sources, model, tmp_path, one_thread):
    everything = curate(model, sources / "input.jsonl", tmp_path / "all", threshold=-1.0, **OPTIONS)
    # 3 clips per video; candidates: shot 1 has 2, shot 2 has 1, shot 3 has 2 -> 5 pairs per video
    assert (everything.processed, everything.clips, everything.pairs, everything.kept) == (3, 9, 15, 15)
    assert [Path(p).name for p, _ in everything.failed] == ["broken.mp4"]
    rows = [json.loads(line) for line in everything.jsonl.read_text().splitlines()]
    assert len(rows) == 15
    first = rows[0]
    assert (first["YoutubeID"], first["Start_timestamp"], first["End_timestamp"]) == (
        "src0",
        "00:00:00.000",
        "00:00:01.333",
    )
    assert first["Caption"] == "a red screen" and -1 <= first["UMT_Score"] <= 1

    # each score is the model's cosine similarity of that clip and that caption, recomputed here
    # from the timestamps: segment-centre frames, short side resized, centre crop, normalized
    tower = model.video
    num_frames, size = (
        tower.num_frames,
        tower.img_size[0] if isinstance(tower.img_size, tuple) else tower.img_size,
    )
    transform = VideoBatchTransform(size, train=False)
    with torch.inference_mode():
        for row in rows:
            first = round(parse_timestamp(row["Start_timestamp"]) * FPS)
            end = round(parse_timestamp(row["End_timestamp"]) * FPS)
            with open_video(sources / f"{row['YoutubeID']}.mp4") as reader:
                frames = reader.get_frames(first + uniform_segments(end - first, num_frames, train=False))
            x = torch.nn.functional.interpolate(
                frames.permute(0, 3, 1, 2).float(), size=(size, size), mode="bilinear", antialias=True
            )  # the 64 x 64 sources are square: the short-side resize is the whole frame
            x = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            video = model.encode_video(transform(x[None]))[0]
            text = model.encode_text([row["Caption"]])[0]
            assert row["UMT_Score"] == pytest.approx(float(video @ text), abs=2e-6), row["Key"]

    scores = sorted(r["UMT_Score"] for r in rows)
    threshold = (scores[6] + scores[7]) / 2
    expected = {r["Key"] for r in rows if r["UMT_Score"] >= threshold}
    kept = curate(model, sources / "input.jsonl", tmp_path / "some", threshold=threshold, **OPTIONS)
    kept_rows = [json.loads(line) for line in kept.jsonl.read_text().splitlines()]
    assert {r["Key"] for r in kept_rows} == expected and kept.kept == len(expected) == 8
    assert all(r["UMT_Score"] >= threshold for r in kept_rows)

    # the shards hold the same pairs, decodable, and the JSONL reads as InternVid annotations
    shards = sorted(str(p) for p in (tmp_path / "some" / "shards").glob("*.tar"))
    items = list(VideoTextShards(shards, num_frames=4))
    assert {x["video_id"] for x in items} == expected
    assert all(x["video"].shape == (4, 64, 64, 3) for x in items)
    captions = {r["Key"]: r["Caption"] for r in kept_rows}
    assert all(captions[x["video_id"]] == x["caption"] for x in items)
    parsed = read_internvid_annotations(kept.jsonl, min_umt_score=threshold)
    assert len(parsed) == 8 and parsed[0].youtube_id.startswith("src")

    best = curate(model, sources / "input.jsonl", tmp_path / "best", threshold=-1.0, keep="best", **OPTIONS)
    assert best.kept == 9  # one caption per clip


def test_rerun_skips_finished_videos_and_retries_failed(sources, model, tmp_path, one_thread):
    partial_input = tmp_path / "first_two.jsonl"
    partial_input.write_text("".join((sources / "input.jsonl").read_text().splitlines(True)[:2]))
    shutil.copy(sources / "src0.mp4", tmp_path)
    shutil.copy(sources / "src1.mp4", tmp_path)
    out = tmp_path / "out"
    first = curate(model, partial_input, out, threshold=-1.0, videos_per_partition=1, **OPTIONS)
    assert (first.processed, first.resumed, len(first.shards)) == (2, 0, 2)

    # the full list: the two finished videos are skipped, the third is cut, the corrupt one fails
    second = curate(model, sources / "input.jsonl", out, threshold=-1.0, videos_per_partition=1, **OPTIONS)
    assert (second.processed, second.resumed, len(second.failed)) == (1, 2, 1)
    assert [Path(s).name for s in second.shards] == ["shard-000002.tar"]
    rows = [json.loads(line) for line in second.jsonl.read_text().splitlines()]
    assert [r["YoutubeID"] for r in rows] == ["src0"] * 5 + ["src1"] * 5 + ["src2"] * 5
    manifest = json.loads((out / "curate_manifest.json").read_text())
    assert manifest["videos"]["src2.mp4"]["status"] == "done"
    assert manifest["videos"]["broken.mp4"]["status"] == "failed"

    third = curate(model, sources / "input.jsonl", out, threshold=-1.0, videos_per_partition=1, **OPTIONS)
    assert (third.processed, third.resumed, len(third.failed), third.shards) == (0, 3, 1, [])
    assert third.jsonl.read_text() == second.jsonl.read_text()


def test_a_rerun_leaves_no_stale_shards_or_markers(sources, model, tmp_path, caplog, one_thread):
    for v in range(3):
        shutil.copy(sources / f"src{v}.mp4", tmp_path)
    lines = (sources / "input.jsonl").read_text().splitlines(True)
    (tmp_path / "input.jsonl").write_text("".join(lines[:3]))
    out = tmp_path / "out"
    first = curate(model, tmp_path / "input.jsonl", out, threshold=-1.0, videos_per_partition=1, **OPTIONS)
    assert len(first.shards) == 3
    # the input loses its last video; partition 1 is redone (its marker lost) and now keeps
    # nothing (its video became unreadable): neither its old shard nor partition 2's stays
    (tmp_path / "input.jsonl").write_text("".join(lines[:2]))
    (tmp_path / "src1.mp4").write_bytes(b"not a video" * 100)
    (out / "partitions" / "part-000001.json").unlink()
    with caplog.at_level("WARNING"):
        again = curate(
            model, tmp_path / "input.jsonl", out, threshold=-1.0, videos_per_partition=1, **OPTIONS
        )
    assert (again.processed, again.resumed, len(again.failed)) == (0, 1, 1)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard-000000.jsonl", "shard-000000.tar"]
    assert sorted(p.name for p in (out / "partitions").iterdir()) == ["part-000000.json", "part-000001.json"]
    for name in ("shards/shard-000002.tar", "shards/shard-000002.jsonl", "partitions/part-000002.json"):
        assert f"{out / name}: removing it, no partition of this input names it" in caplog.text
    manifest = json.loads((out / "curate_manifest.json").read_text())
    assert manifest["shards"] == ["shard-000000.tar"] and list(manifest["videos"]) == ["src0.mp4", "src1.mp4"]
    assert len(again.jsonl.read_text().splitlines()) == 5  # src0's pairs only
    # without its manifest the folder is not known to be curate's: a stray shard is named, not removed
    (out / "curate_manifest.json").unlink()
    (out / "shards" / "shard-000007.tar").write_bytes(b"")
    curate(model, tmp_path / "input.jsonl", out, threshold=-1.0, videos_per_partition=1, **OPTIONS)
    assert (out / "shards" / "shard-000007.tar").exists()
    assert (
        f"{out / 'shards/shard-000007.tar'}: no partition of this input names it; left alone" in caplog.text
    )


def test_a_rerun_with_other_settings_or_another_model_is_refused(sources, model, tmp_path, one_thread):
    source = tmp_path / "one.jsonl"
    source.write_text((sources / "input.jsonl").read_text().splitlines(True)[0])
    shutil.copy(sources / "src0.mp4", tmp_path)
    out = tmp_path / "out"
    first = curate(model, source, out, threshold=-1.0, **OPTIONS)
    settings = json.loads((out / "curate_manifest.json").read_text())["settings"]
    assert len(settings["model_sha256"]) == 64 and settings["min_shot_frames"] == 6
    with pytest.raises(ValueError, match=r"curate_manifest.json: this folder was curated otherwise "
                       r"\(threshold -1.0 -> 0.5\); .*--overwrite"):  # fmt: skip
        curate(model, source, out, threshold=0.5, **OPTIONS)
    with pytest.raises(ValueError, match=r"\(min_shot_frames 6 -> 15; min_clip_seconds 0.5 -> 1.0\)"):
        curate(model, source, out, threshold=-1.0, progress=False)
    torch.manual_seed(1)
    other = VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=32).eval()
    with pytest.raises(ValueError, match=r"\(model_sha256 '[0-9a-f]+\.\.\. -> '[0-9a-f]+\.\.\.\)"):
        curate(other, source, out, threshold=-1.0, **OPTIONS)
    again = curate(other, source, out, threshold=-1.0, overwrite=True, **OPTIONS)
    assert (again.processed, again.resumed, again.kept) == (1, 0, first.kept)
    assert [p.name for p in sorted((out / "shards").glob("*.tar"))] == ["shard-000000.tar"]


def test_nothing_kept_shows_the_score_distribution_and_skips_name_the_line(
    sources, model, tmp_path, caplog, one_thread
):
    with caplog.at_level("WARNING"):
        summary = curate(model, sources / "input.jsonl", tmp_path / "none", threshold=2.0, **OPTIONS)
    assert (summary.pairs, summary.kept) == (15, 0) and len(summary.scores) == 15
    low, high = min(summary.scores), max(summary.scores)
    text = summary.score_distribution()
    assert text.startswith(f"min {low:.3f}, p10 ") and text.endswith(f"max {high:.3f}") and "p50" in text
    # the source's line in the input, said as such (not glued to the path as `broken.mp4:4`)
    assert "skipping unreadable source video broken.mp4 (input.jsonl line 4):" in caplog.text


def test_a_video_that_fails_part_way_is_a_failed_video(
    sources, model, tmp_path, caplog, monkeypatch, zero_frames, one_thread
):
    # the same three shots, frames 41 to 44 unreadable: the first group of clips (two per
    # group here) decodes, the last clip's frames fail, after a good row
    rng = np.random.default_rng(0)
    frames = np.concatenate([_shot(COLOURS[s], rng) for s in range(3)])
    write_video(tmp_path / "whole.mp4", frames, fps=FPS, faststart=True)
    zero_frames(tmp_path / "whole.mp4", tmp_path / "damaged.mp4", 41, 4)
    for name in ("src0.mp4", "src1.mp4"):
        shutil.copy(sources / name, tmp_path)
    lines = [{"video": name, "captions": CAPTIONS} for name in ("src0.mp4", "damaged.mp4", "src1.mp4")]
    (tmp_path / "input.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    monkeypatch.setattr(curate_module, "CAPTION_GROUP", 2)
    # nothing kept: the error comes from decoding the model's frames of the second group
    none = curate(model, tmp_path / "input.jsonl", tmp_path / "none", threshold=2.0, **OPTIONS)
    assert (none.processed, none.pairs, [Path(p).name for p, _ in none.failed]) == (2, 10, ["damaged.mp4"])
    # everything kept: the clips re-read whole to write the samples fail too
    with caplog.at_level("WARNING"):
        summary = curate(model, tmp_path / "input.jsonl", tmp_path / "out", threshold=-1.0, **OPTIONS)
    assert (summary.processed, summary.kept) == (2, 10)
    assert [Path(p).name for p, _ in summary.failed] == ["damaged.mp4"]
    assert "skipping unreadable source video damaged.mp4 (input.jsonl line 2):" in caplog.text
    manifest = json.loads((tmp_path / "out" / "curate_manifest.json").read_text())
    assert manifest["videos"]["damaged.mp4"]["status"] == "failed"
    assert [v["status"] for k, v in manifest["videos"].items() if k != "damaged.mp4"] == ["done", "done"]

    # a kept clip re-read whole for its sample (more frames than the model saw) fails alike:
    # an error row, not an exception out of the run
    video = SourceVideo(tmp_path / "damaged.mp4", "damaged.mp4", "damaged", (Caption("x"),), 2)
    cut = _Cut(8, 32, "content", None, 6, 0.5, None, None, "auto", -1.0, "all", None)
    row = {"video": video, "fps": float(FPS), "seconds": {}, "offset": 0, "clips": [(40, 60)],
           "generated": [{}], "scored": [(0, [(0.5, 0, Caption("x"))])]}  # fmt: skip
    out = _encode_kept(cut, row)
    assert out["video"] is video and "cannot decode" in out["error"], out.get("error")


def test_ids_that_make_the_same_sample_keys_are_named(tmp_path):
    bad = tmp_path / "sources.jsonl"
    bad.write_text('{"video": "a.mp4", "id": "clip 1"}\n{"video": "b.mp4", "id": "clip_1"}\n')
    message = r"sources.jsonl:2: id 'clip_1' and id 'clip 1' \(line 1\) would both key their samples"
    with pytest.raises(ValueError, match=message):
        read_curation_input(bad)


def test_input_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "a.mp4", "captions": ["x"]}\n{"video": "b.mp4", "captions": [{"end": 2}]}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: captions\[0\]: 'text' must be a non-empty string"):
        read_curation_input(bad)
    bad.write_text('{"video": "a.mp4"}\n{"video": "a.mp4"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: video 'a.mp4' is already listed on line 1"):
        read_curation_input(bad)


@pytest.mark.slow
def test_curate_command_with_a_trained_viclip_checkpoint(sources, tmp_path, one_thread, capsys, fit_one_step):
    """`vidlit curate` loads a VideoTextPretrain checkpoint written by `vidlit fit`; `vidlit data curate`
    still works, with a deprecation note."""
    from vidlit.data.synth.internvid import write_internvid

    data = write_internvid(tmp_path / "internvid", num_train_videos=4, num_val_videos=2, clips_per_video=2)
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("model:\n  init_args:\n    text: text_test\n    proj_dim: 32\n")
    ckpt = fit_one_step(
        *[
            "--config",
            "recipes/pretrain_viclip.yaml",
            "--config",
            str(tiny),
            "--data.init_args.batch_size",
            "4",
        ],
        *["--trainer.check_val_every_n_epoch", "1"],
        root=data,
        runs=tmp_path / "runs",
    )
    out = tmp_path / "curated"
    main(["curate", str(sources / "input.jsonl"), "--ckpt_path", str(ckpt), "--out", str(out)])
    capsys.readouterr()
    main(["data", "curate", str(sources / "input.jsonl"), "--ckpt_path", str(ckpt), "--out", str(out)])
    assert "`vidlit data curate` is deprecated; use `vidlit curate`" in capsys.readouterr().err
    manifest = json.loads((out / "curate_manifest.json").read_text())
    assert sorted(v["status"] for v in manifest["videos"].values()) == ["done", "done", "done", "failed"]
    # defaults: shots of at least 15 frames and 1 s, threshold 0
    rows = [json.loads(line) for line in (out / "curated.jsonl").read_text().splitlines()]
    assert all(r["UMT_Score"] >= 0 for r in rows)
    assert len(rows) == sum(v.get("kept", 0) for v in manifest["videos"].values())

    # nothing passes: the scores say where a threshold would bite
    main(["curate", str(sources / "input.jsonl"), "--ckpt_path", str(ckpt), "--out", str(tmp_path / "none"),
          "--threshold", "2"])  # fmt: skip
    assert "no pair reached --threshold 2; scores of the " in capsys.readouterr().out
    with pytest.raises(SystemExit):  # the same folder with another threshold
        main(
            [
                "curate",
                str(sources / "input.jsonl"),
                "--ckpt_path",
                str(ckpt),
                "--out",
                str(tmp_path / "none"),
            ]
        )
    assert "curated otherwise (threshold 2.0 -> 0.0)" in capsys.readouterr().err

    # sources without captions and no --caption: the summary says why no pair was scored
    uncaptioned = tmp_path / "uncaptioned.jsonl"
    uncaptioned.write_text('{"video": "%s"}\n' % (sources / "src0.mp4"))
    main(["curate", str(uncaptioned), "--ckpt_path", str(ckpt), "--out", str(tmp_path / "uncaptioned")])
    assert "no clip had a candidate caption" in capsys.readouterr().out

    # no source video readable: the summary names them, and the exit status is 1 (a script stops)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"video": "%s", "captions": ["x"]}\n' % (sources / "broken.mp4"))
    with pytest.raises(SystemExit) as exit_:
        main(["curate", str(broken), "--ckpt_path", str(ckpt), "--out", str(tmp_path / "broken")])
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    assert "skipped unreadable video" in captured.out and "broken.mp4" in captured.out
    assert captured.err.strip().splitlines()[-1] == (
        f"vidlit curate: error: no source video of {broken} could be read"
    )


def test_edited_captions_or_id_redo_the_partition(sources, model, tmp_path, one_thread):
    shutil.copy(sources / "src0.mp4", tmp_path)
    line = {"video": "src0.mp4", "captions": CAPTIONS}
    (tmp_path / "input.jsonl").write_text(json.dumps(line) + "\n")
    out = tmp_path / "out"
    first = curate(model, tmp_path / "input.jsonl", out, threshold=-1.0, **OPTIONS)
    assert (first.processed, first.resumed) == (1, 0)
    # the same file under the same name, other captions and another id: not done, redone
    edited = {"video": "src0.mp4", "id": "renamed", "captions": ["a new caption"]}
    (tmp_path / "input.jsonl").write_text(json.dumps(edited) + "\n")
    second = curate(model, tmp_path / "input.jsonl", out, threshold=-1.0, **OPTIONS)
    assert (second.processed, second.resumed) == (1, 0)
    rows = [json.loads(row) for row in second.jsonl.read_text().splitlines()]
    assert {r["YoutubeID"] for r in rows} == {"renamed"}
    assert {r["Caption"] for r in rows} == {"a new caption"}
    # unchanged now: resumed
    third = curate(model, tmp_path / "input.jsonl", out, threshold=-1.0, **OPTIONS)
    assert (third.processed, third.resumed) == (0, 1)
    assert third.jsonl.read_text() == second.jsonl.read_text()


def test_the_manifest_is_written_at_the_start_and_the_end_only(
    sources, model, tmp_path, monkeypatch, one_thread
):
    for v in range(3):
        shutil.copy(sources / f"src{v}.mp4", tmp_path)
    lines = (sources / "input.jsonl").read_text().splitlines(True)
    (tmp_path / "input.jsonl").write_text("".join(lines[:3]))
    written: list[str] = []
    real_write = curate_module.OutputFolder.write

    def counting_write(self, name, data):  # observes the real writer, which still writes
        written.append(name)
        return real_write(self, name, data)

    monkeypatch.setattr(curate_module.OutputFolder, "write", counting_write)
    out = tmp_path / "out"
    summary = curate(model, tmp_path / "input.jsonl", out, threshold=-1.0, videos_per_partition=1, **OPTIONS)
    assert len(summary.shards) == 3  # three partitions
    assert written.count("curate_manifest.json") == 2
    manifest = json.loads((out / "curate_manifest.json").read_text())  # the final one: every video
    assert manifest["shards"] == [f"shard-00000{p}.tar" for p in range(3)]
    assert list(manifest["videos"]) == ["src0.mp4", "src1.mp4", "src2.mp4"]
    assert {v["status"] for v in manifest["videos"].values()} == {"done"}


def test_a_shard_that_fails_while_filling_leaves_no_object():
    import fsspec

    from vidlit.data.shards import write_shards

    fs = fsspec.filesystem("memory")
    good = {"key": "clip_0", "mp4": b"\x00" * 4096, "caption": "fine"}
    # USTAR holds names up to 100 characters: the tar fails at the second sample, after the first
    # one's bytes went out
    too_long = {"key": "x" * 120, "mp4": b"\x00" * 16, "caption": "fails"}
    with pytest.raises(ValueError, match="name is too long"):
        write_shards([good, too_long], "memory://partial-shards/shard-%06d.tar", maxcount=2)
    assert not fs.exists("/partial-shards/shard-000000.tar")
    # a good shard goes through the same writer
    (url,) = write_shards([good], "memory://partial-shards/shard-%06d.tar", maxcount=2)
    assert url == "memory://partial-shards/shard-000000.tar"
    assert fs.cat_file("/partial-shards/shard-000000.tar")[:512].startswith(b"clip_0.mp4")
    fs.rm("/partial-shards", recursive=True)


def test_an_empty_or_binary_input_and_a_wrong_checkpoint_are_one_line(sources, tmp_path, capsys):
    """An input with no source video, a video where the input or the checkpoint goes, another
    model's checkpoint: one line naming the file, no traceback and no output folder."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=r"empty.jsonl: no source videos"):
        read_curation_input(empty)
    with pytest.raises(ValueError, match=r"src0.mp4: not a text file \(.*\); expected a curation input"):
        read_curation_input(sources / "src0.mp4")
    classifier = tmp_path / "classifier.ckpt"  # a checkpoint of another model: no video-text hyper-parameters
    torch.save({"state_dict": {"head.weight": torch.zeros(2, 2)}, "hyper_parameters": {}}, classifier)
    for ckpt, message in [
        (sources / "src0.mp4", "src0.mp4: not a checkpoint (not the zip archive torch.save writes)"),
        (classifier, "classifier.ckpt: cannot load it as a VideoTextPretrain checkpoint"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(["curate", str(sources / "input.jsonl"), "--ckpt_path", str(ckpt), "--out",
                  str(tmp_path / "o")])  # fmt: skip
        assert exit_.value.code == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith("vidlit curate: error: ") and message in line, line
        assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as exit_:  # a file given as --out: said before the model loads
        main(["curate", str(sources / "input.jsonl"), "--ckpt_path", str(classifier), "--out", str(empty)])
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("empty.jsonl: is a file; --out is the folder to write the corpus into")
    )
