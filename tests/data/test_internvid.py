"""InternVid annotation reader, clip sampling inside the window, data module (JSONL and shards), synth."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from vidlit.data.internvid import (
    InternVidDataModule,
    InternVidDataset,
    collate_video_text,
    parse_timestamp,
    read_internvid_annotations,
)
from vidlit.data.synth.internvid import write_internvid
from vidlit.data.synth.videos import write_video
from vidlit.data.video import VideoDecodeError

FPS = 10


@pytest.fixture(scope="module")
def ramp_root(tmp_path_factory) -> Path:
    """One 40-frame source video whose frame i has brightness 6 * i, and two annotated windows."""
    root = tmp_path_factory.mktemp("internvid_ramp")
    (root / "videos").mkdir()
    frames = np.stack([np.full((32, 32, 3), 6 * i, dtype=np.uint8) for i in range(40)])
    write_video(root / "videos" / "rampVideo01.mp4", frames, fps=FPS)
    lines = [
        {"YoutubeID": "rampVideo01", "Start_timestamp": "00:00:00.500", "End_timestamp": "00:00:01.500",
         "Caption": "the early part", "UMT_Score": 0.45, "Aesthetic_Score": 5.1},
        {"YoutubeID": "rampVideo01", "Start_timestamp": "00:00:02.500", "End_timestamp": "00:00:03.500",
         "Caption": "the late part", "UMT_Score": 0.30},
        {"YoutubeID": "missingVid1", "Start_timestamp": "00:00:00.000", "End_timestamp": "00:00:01.000",
         "Caption": "a video nobody downloaded"},
    ]  # fmt: skip
    (root / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (root / "val.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines[:2]))
    return root


def frame_numbers(video: torch.Tensor) -> list[int]:
    """Recover frame indices from the ramp's brightness (H.264 keeps it within +-2)."""
    return [round(v / 6) for v in video.float().mean(dim=(1, 2, 3)).tolist()]


def test_parse_timestamp():
    assert parse_timestamp("00:07:33.689") == pytest.approx(453.689)
    assert parse_timestamp("01:00:00") == 3600.0
    assert parse_timestamp("12:59:59.5") == pytest.approx(46799.5)
    for bad in ("7:33.689", "00:61:00.000", "00:00:60.000", "1.5", "", "00:00:01,500"):
        with pytest.raises(ValueError, match="HH:MM:SS.mmm"):
            parse_timestamp(bad)


def test_reader_parses_the_official_fields(ramp_root):
    clips = read_internvid_annotations(ramp_root / "train.jsonl")
    assert len(clips) == 3
    first = clips[0]
    assert (first.youtube_id, first.start, first.end, first.caption) == (
        "rampVideo01",
        0.5,
        1.5,
        "the early part",
    )
    assert (first.umt_score, first.aesthetic_score, first.line) == (0.45, 5.1, 1)
    assert first.clip_id == "rampVideo01_00:00:00.500_00:00:01.500"
    assert clips[1].aesthetic_score is None and clips[2].umt_score is None
    # InternVid-10M-FLT style filtering: clips without a score are dropped too
    assert [c.caption for c in read_internvid_annotations(ramp_root / "train.jsonl", min_umt_score=0.4)] == [
        "the early part"
    ]
    assert len(read_internvid_annotations(ramp_root / "train.jsonl", min_aesthetic_score=5.0)) == 1


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"YoutubeID": "a", "Start_timestamp": "00:00:01.000"', "invalid JSON"),
        ('["not", "an", "object"]', "expected a JSON object"),
        (
            '{"YoutubeID": "a", "Start_timestamp": "00:00:01.000", "End_timestamp": "00:00:02.000"}',
            "'Caption'",
        ),
        (
            '{"YoutubeID": "a", "Start_timestamp": "1s", "End_timestamp": "00:00:02.000", "Caption": "x"}',
            "HH:MM",
        ),
        (
            '{"YoutubeID": "a", "Start_timestamp": "00:00:02.000", "End_timestamp": "00:00:02.000", '
            '"Caption": "x"}',
            "must be after",
        ),
        (
            '{"YoutubeID": "a", "Start_timestamp": "00:00:01.000", "End_timestamp": "00:00:02.000", '
            '"Caption": "x", "UMT_Score": "high"}',
            "key 'UMT_Score': Input should be a valid number",
        ),
    ],
)
def test_reader_errors_name_file_and_line(tmp_path, line, message):
    good = json.dumps(
        {"YoutubeID": "a", "Start_timestamp": "00:00:00.000", "End_timestamp": "00:00:01.000", "Caption": "x"}
    )
    path = tmp_path / "ann.jsonl"
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(ValueError, match=rf"ann\.jsonl(: line |:)3: .*{message}") as err:
        read_internvid_annotations(path)
    assert "\n" not in str(err.value)


def test_a_youtube_id_cannot_leave_the_video_folder(tmp_path):
    from vidlit.data.internvid import InternVidDataModule

    (tmp_path / "videos").mkdir()
    line = {"YoutubeID": "../../outside/stolen", "Start_timestamp": "00:00:00.000",
            "End_timestamp": "00:00:01.000", "Caption": "x"}  # fmt: skip
    for split in ("train", "val"):
        (tmp_path / f"{split}.jsonl").write_text(json.dumps(line) + "\n")
    dm = InternVidDataModule(root=str(tmp_path), num_frames=2, size=16)
    with pytest.raises(
        ValueError, match=r"train\.jsonl: line 1: key 'YoutubeID': '../../outside/stolen' points outside"
    ):
        dm.setup("fit")


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_internvid_annotations(tmp_path / "nope.jsonl")


def test_frames_are_sampled_inside_the_window(ramp_root):
    clips = read_internvid_annotations(ramp_root / "train.jsonl")
    evaluation = InternVidDataset(clips, ramp_root / "videos", num_frames=4)
    item = evaluation[0]
    assert set(item) == {"video", "caption", "video_id"} and item["caption"] == "the early part"
    assert item["video"].shape == (4, 32, 32, 3) and item["video"].dtype == torch.uint8
    # [0.5 s, 1.5 s) at 10 fps is frames 5..14; four segment centres: 6, 8, 11, 13
    assert frame_numbers(item["video"]) == [6, 8, 11, 13]
    assert frame_numbers(evaluation[1]["video"]) == [26, 28, 31, 33]  # [2.5, 3.5) s: frames 25..34
    training = InternVidDataset(clips, ramp_root / "videos", num_frames=4, train=True, seed=3)
    seen = set()
    for epoch in range(3):
        training.set_epoch(epoch)
        numbers = frame_numbers(training[1]["video"])
        assert all(25 <= n <= 34 for n in numbers) and numbers == sorted(numbers)
        seen.add(tuple(numbers))
        assert frame_numbers(training[1]["video"]) == numbers  # a function of (seed, epoch, index)
    assert len(seen) > 1


def test_missing_video_is_a_marker_or_raises_when_strict(ramp_root):
    clips = read_internvid_annotations(ramp_root / "train.jsonl")
    item = InternVidDataset(clips, ramp_root / "videos", num_frames=2)[2]
    assert item["error"].endswith("missingVid1.mp4") and item["video_id"].startswith("missingVid1_")
    with pytest.raises(VideoDecodeError, match="missingVid1"):
        InternVidDataset(clips, ramp_root / "videos", num_frames=2, strict=True)[2]
    past_end = [c.__class__(**{**c.__dict__, "start": 100.0, "end": 101.0}) for c in clips[:1]]
    marker = InternVidDataset(past_end, ramp_root / "videos", num_frames=2)[0]
    assert "annotation line 1" in marker["reason"] and "after the video ends" in marker["reason"]


def test_collate_drops_and_lists_failures():
    good = {"video": torch.zeros(2, 4, 6, 3, dtype=torch.uint8), "caption": "c", "video_id": "v"}
    wide = {"video": torch.ones(2, 4, 8, 3, dtype=torch.uint8), "caption": "d", "video_id": "w", "label": 2}
    bad = {"error": "/x.mp4", "reason": "gone", "video_id": "x"}
    batch = collate_video_text([good, bad, wide])
    assert batch["video"].shape == (2, 2, 4, 8, 3) and batch["frame_size"].tolist() == [[4, 6], [4, 8]]
    assert batch["captions"] == ["c", "d"] and batch["video_ids"] == ["v", "w"]
    assert batch["skipped"] == ["/x.mp4"] and batch["skip_reasons"] == ["gone"]
    assert batch["labels"].tolist() == [-1, 2]
    empty = collate_video_text([bad], num_frames=3, empty_size=5)
    assert empty["video"].shape == (0, 3, 5, 5, 3) and empty["captions"] == []


def test_data_module_batches_and_counts_skips(ramp_root):
    dm = InternVidDataModule(root=str(ramp_root), num_frames=4, size=16, short_side=16, batch_size=3)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert len(batch["captions"]) == 2 and batch["skipped"][0].endswith("missingVid1.mp4")
    out = dm.on_after_batch_transfer(batch, 0)
    assert out["video"].shape == (2, 3, 4, 16, 16) and out["video"].dtype == torch.float32
    strict = InternVidDataModule(root=str(ramp_root), num_frames=2, size=16, short_side=16, strict=True)
    strict.setup("fit")
    with pytest.raises(VideoDecodeError, match="missingVid1"):
        strict.on_after_batch_transfer(next(iter(strict.train_dataloader())), 0)


def test_data_module_trains_from_shards(ramp_root, tmp_path):
    from vidlit.data.shards import write_shards

    dataset = InternVidDataset(read_internvid_annotations(ramp_root / "val.jsonl"), ramp_root / "videos")
    samples = [
        {"key": f"clip{i}", "mp4": str(ramp_root / "videos" / "rampVideo01.mp4"), "caption": clip.caption}
        for i, clip in enumerate(dataset.clips)
    ]
    urls = write_shards(samples, str(tmp_path / "shard-%03d.tar"), maxcount=1)
    dm = InternVidDataModule(
        root=str(ramp_root),
        shards=str(tmp_path / "shard-{000..001}.tar"),
        num_frames=3,
        size=16,
        short_side=16,
        batch_size=2,
    )
    assert len(urls) == 2
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert sorted(batch["captions"]) == ["the early part", "the late part"]
    assert dm.on_after_batch_transfer(batch, 0)["video"].shape == (2, 3, 3, 16, 16)
    # validation still reads the annotation file
    assert len(dm.datasets["val"]) == 2


def test_synthetic_sample_is_in_the_official_format(tmp_path):
    root = write_internvid(
        tmp_path / "ivs", num_train_videos=2, num_val_videos=2, clips_per_video=2, clip_frames=6
    )
    train = read_internvid_annotations(root / "train.jsonl")
    val = read_internvid_annotations(root / "val.jsonl")
    assert len(train) == len(val) == 4
    assert {c.youtube_id for c in train}.isdisjoint({c.youtube_id for c in val})
    assert all((root / "videos" / f"{c.youtube_id}.mp4").is_file() for c in train + val)
    # val contents are distinct: one right answer per caption
    words = [frozenset(c.caption.split()) for c in val]
    assert len(set(words)) == len(words)
    # the two clips of a source video are different windows
    first, second = train[0], train[1]
    assert first.youtube_id == second.youtube_id and first.end <= second.start
    raw = json.loads((root / "val.jsonl").read_text().splitlines()[0])
    assert set(raw) == {
        "YoutubeID",
        "Start_timestamp",
        "End_timestamp",
        "Caption",
        "UMT_Score",
        "Aesthetic_Score",
    }


class _OrderRecorder(L.LightningModule):
    """Trains nothing useful; records the clip ids each epoch streams."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[int, list[str]] = {}

    def training_step(self, batch, batch_idx):
        self.seen.setdefault(self.current_epoch, []).extend(batch["video_ids"])
        return (self.weight**2).sum() + batch["video"].mean() * 0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.fixture(scope="module")
def tiny_shards(tmp_path_factory) -> str:
    """4 shards of 3 two-frame 16 px clips each, plus one undecodable sample in the last shard."""
    from vidlit.data.shards import encode_mp4, write_shards

    out = tmp_path_factory.mktemp("tiny_shards")
    clip = encode_mp4(np.full((2, 16, 16, 3), 90, dtype=np.uint8), fps=10)
    samples = [{"key": f"s{i:02d}", "mp4": clip, "caption": f"clip {i}"} for i in range(12)]
    write_shards(samples, str(out / "good-%02d.tar"), maxcount=3)
    write_shards([{"key": "broken", "mp4": b"\x00" * 500, "caption": "no video"}], str(out / "bad-%02d.tar"))
    return str(out)


def _fit(ramp_root, shards, max_epochs, default_root_dir, ckpt_path=None, num_workers=2):
    data = InternVidDataModule(
        root=str(ramp_root), shards=shards, shard_shuffle=3, num_frames=2, size=16, short_side=16,
        batch_size=2, num_workers=num_workers,
    )  # fmt: skip
    model = _OrderRecorder()
    trainer = L.Trainer(
        max_epochs=max_epochs, limit_val_batches=0, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=default_root_dir, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return model.seen


def test_shard_order_is_a_function_of_seed_and_trainer_epoch(ramp_root, tiny_shards, tmp_path, monkeypatch):
    """Each epoch streams a new order (2 persistent workers), the same for the same epoch, after a resume too.

    Before the fix the epoch was published once per fit, so every epoch repeated the first one's
    order and a resumed run's epochs did not match the uninterrupted run's.
    """
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    shards = f"{tiny_shards}/good-{{00..03}}.tar"
    full = _fit(ramp_root, shards, 3, tmp_path / "full")
    assert all(sorted(full[epoch]) == [f"s{i:02d}" for i in range(12)] for epoch in range(3))
    assert len({tuple(full[epoch]) for epoch in range(3)}) == 3  # every epoch its own order
    first = _fit(ramp_root, shards, 2, tmp_path / "cut")
    assert first == {0: full[0], 1: full[1]}  # the same epochs reproduce
    (last,) = (tmp_path / "cut" / "checkpoints").glob("*.ckpt")
    resumed = _fit(ramp_root, shards, 3, tmp_path / "resumed", ckpt_path=str(last))
    assert resumed == {2: full[2]}


def test_strict_shards_raise_naming_url_and_key(ramp_root, tiny_shards):
    shards = f"{tiny_shards}/{{good-03,bad-00}}.tar"
    lenient = InternVidDataModule(root=str(ramp_root), shards=shards, num_frames=2, size=16, batch_size=8)
    lenient.setup("fit")
    batch = next(iter(lenient.train_dataloader()))
    assert len(batch["video_ids"]) == 3 and batch["skipped"] == [f"{tiny_shards}/bad-00.tar"]
    assert batch["skip_reasons"][0].startswith("sample broken: cannot open the video")
    strict = InternVidDataModule(
        root=str(ramp_root), shards=shards, num_frames=2, size=16, batch_size=8, strict=True
    )
    strict.setup("fit")
    with pytest.raises(VideoDecodeError, match=r"bad-00\.tar: sample broken: cannot open") as info:
        strict.on_after_batch_transfer(next(iter(strict.train_dataloader())), 0)
    assert not isinstance(info.value, FileNotFoundError)
