import csv
import json
import logging
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from vidlit.backbones import create_backbone
from vidlit.cli import main
from vidlit.core.errors import ConfigurationError
from vidlit.data import VideoListDataModule
from vidlit.data.synth.videos import write_corrupt_videos
from vidlit.data.video import VideoDecodeError, VideoNotFoundError
from vidlit.data.video_list import (
    VideoEntry,
    VideoListDataset,
    collate_video_clips,
    infer_class_names,
    read_video_list,
    write_synthetic_video_list,
)
from vidlit.heads import LinearProbeHead
from vidlit.tasks import TaskModule

CLASSES = ["left", "right", "up", "down"]
BAD = ("zero_byte", "random_bytes", "truncated", "damaged_packets")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """8 good 16-frame 32 px clips, 4 corrupt files, and lists mixing them with a missing file."""
    root = tmp_path_factory.mktemp("video_list")
    write_synthetic_video_list(root, num_videos=8, num_frames=16, size=32)
    corrupt = write_corrupt_videos(root / "bad")
    with open(root / "videos.csv") as f:
        good = list(csv.reader(f))[1:]
    bad = [[f"bad/{corrupt[kind].name}", "left"] for kind in BAD] + [["videos/missing.mp4", "up"]]
    for name, rows in {"good.csv": good, "mixed.csv": good[:4] + bad + good[4:], "val.csv": good}.items():
        with open(root / name, "w", newline="") as f:
            csv.writer(f).writerows([["path", "label"], *rows])
    return root


def _bad_paths(root: Path) -> list[str]:
    corrupt = [str(root / "bad" / f"{kind}.mp4") for kind in BAD]
    return sorted([*corrupt, str(root / "videos" / "missing.mp4")])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- list files ------------------------------------------------------------------------------------


def test_read_csv_and_jsonl(tmp_path):
    csv_list = _write(
        tmp_path / "list.csv", "path,label,start,end,extra\na.mp4,up,,,x\n\n/abs/b.mp4,3,1.5,4,y\n"
    )
    a, b = read_video_list(csv_list, CLASSES)
    assert a == VideoEntry(tmp_path / "a.mp4", "a.mp4", 2, "up", None, None, 2)
    assert (b.path, b.label, b.start, b.end, b.line) == (Path("/abs/b.mp4"), 3, 1.5, 4.0, 4)
    assert b.video_id == "/abs/b.mp4@1.5-4"
    jsonl = _write(tmp_path / "list.jsonl", '{"path": "a.mp4", "label": 1}\n\n{"path": "c.mp4"}\n')
    a, c = read_video_list(jsonl, CLASSES)
    assert (a.label, a.line, c.label, c.label_name, c.line) == (1, 1, None, None, 3)
    # without a class list labels stay names
    assert read_video_list(csv_list)[0].label is None and read_video_list(csv_list)[0].label_name == "up"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("l.csv", "file,label\na.mp4,up\n", r"l\.csv:1: the header row must name a 'path' column"),
        (
            "l.csv",
            "path,label\na.mp4,up\nb.mp4,up,extra\n",
            r"l\.csv:3: expected 2 fields \(path,label\), got 3",
        ),
        ("l.csv", "path,label\na.mp4,up\n,down\n", r"l\.csv: line 3: key 'path': no video path"),
        ("l.csv", "path,label\na.mp4,up\nb.mp4,sideways\n", r"l\.csv:3: unknown label 'sideways'"),
        ("l.csv", "path,label\na.mp4,rihgt\n", r"l\.csv:2: unknown label 'rihgt'.*did you mean 'right'"),
        ("l.csv", "path,label\na.mp4,7\n", r"l\.csv:2: label index 7 is out of range for 4 classes"),
        (
            "l.csv",
            "path,label,start,end\na.mp4,up,3,2\n",
            r"l\.csv: line 2: end \(2.0 s\) must be after start",
        ),
        (
            "l.csv",
            "path,start\na.mp4,soon\n",
            r"l\.csv: line 2: key 'start': must be a number of seconds, got 'soon'",
        ),
        ("l.csv", "path,label\na.mp4,up\n\na.mp4,down\n", r"l\.csv:4: a\.mp4 is already listed on line 2"),
        ("l.jsonl", '{"path": "a.mp4"}\n{"path": "b.mp4",\n', r"l\.jsonl:2: invalid JSON"),
        ("l.jsonl", '["a.mp4", "up"]\n', r"l\.jsonl:1: expected a JSON object, got list"),
        (
            "l.jsonl",
            '{"path": "a.mp4", "label": 2.5}\n',
            r"l\.jsonl: line 1: key 'label': must be a class name or an integer",
        ),
    ],
)
def test_malformed_lists_name_file_and_line(tmp_path, name, text, message):
    with pytest.raises(ValueError, match=message):
        read_video_list(_write(tmp_path / name, text), CLASSES)


def test_missing_list_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.csv: video list not found"):
        read_video_list(tmp_path / "nope.csv")


def test_infer_class_names(tmp_path):
    names = read_video_list(_write(tmp_path / "l.csv", "path,label\na,up\nb,down\nc,up\n"))
    assert infer_class_names(names) == ["down", "up"]
    indices = read_video_list(_write(tmp_path / "i.jsonl", '{"path": "a", "label": 2}\n'))
    assert infer_class_names(indices) == ["0", "1", "2"]


def test_data_module_checks_lists_up_front(root, tmp_path):
    shutil.copy(root / "classes.txt", tmp_path / "classes.txt")
    _write(tmp_path / "train.csv", "path,label\na.mp4,up\nb.mp4,\n")
    _write(tmp_path / "val.csv", "path,label\na.mp4,up\n")
    dm = VideoListDataModule(root=str(tmp_path), size=16)
    assert dm.num_classes == 4 and dm.class_names == CLASSES
    with pytest.raises(ValueError, match=r"train\.csv:3: no label \(every train video needs one\)"):
        dm.setup("fit")
    with pytest.raises(FileNotFoundError, match=r"labels\.txt: class list not found \(set classes: null"):
        VideoListDataModule(root=str(tmp_path), classes="labels.txt").setup("fit")
    _write(tmp_path / "train.csv", "path,label\na.mp4,up\nb.mp4,down\n")
    assert VideoListDataModule(root=str(tmp_path), classes=None).class_names == ["down", "up"]


def test_a_val_label_outside_the_train_taxonomy_is_an_error(tmp_path):
    """A typo'd val label used to become a new class (lowering val accuracy); now it names the line."""
    _write(tmp_path / "train.csv", "path,label\na.mp4,up\nb.mp4,down\n")
    _write(tmp_path / "val.csv", "path,label\na.mp4,up\nb.mp4,dwon\n")
    dm = VideoListDataModule(root=str(tmp_path), classes=None, size=16)
    assert dm.class_names == ["down", "up"]  # from the train list only
    with pytest.raises(
        ValueError, match=r"val\.csv:3: unknown label 'dwon' \(not in the 2-class list\); did you mean 'down'"
    ):
        dm.setup("validate")


def test_the_class_list_is_read_on_first_use_not_at_construction(tmp_path):
    dm = VideoListDataModule(root=str(tmp_path), classes="labels.txt")  # no file yet: no error here
    with pytest.raises(FileNotFoundError, match=r"labels\.txt: class list not found"):
        _ = dm.num_classes


def test_lists_without_labels_for_self_supervised_pretraining(root):
    with open(root / "videos.csv") as f:
        paths = [row[0] for row in list(csv.reader(f))[1:]]
    _write(root / "paths_only.csv", "path\n" + "".join(f"{p}\n" for p in paths))
    for listed in ("paths_only.csv", "good.csv"):  # a label column is not read either
        dm = VideoListDataModule(
            root=str(root), train_list=listed, val_list=listed, classes="none.txt", labels=False, size=16
        )
        dm.setup("fit")
        items = [dm.datasets["train"][i] for i in range(len(paths))]
        assert [item["label"] for item in items] == [-1] * len(paths)
        assert all(item["video"].shape[0] == dm.num_frames for item in items)
        assert dm.class_names == []  # no classes: callers asking with getattr see none
        with pytest.raises(ConfigurationError, match="labels is false: the lists are read without labels"):
            _ = dm.num_classes
        with pytest.raises(ConfigurationError, match="no class names to write a submission"):
            dm.write_submission([{"video_id": "a", "scores": torch.ones(4)}], root / "never.json")
    # with labels (the default) the same list is refused, naming the file and the option
    with pytest.raises(ValueError, match=r"paths_only\.csv: no labels to infer .*labels false\)"):
        VideoListDataModule(root=str(root), train_list="paths_only.csv", classes=None).setup("fit")
    with pytest.raises(ValueError, match=r"paths_only\.csv:2: no label \(every train video needs one\)"):
        VideoListDataModule(root=str(root), train_list="paths_only.csv").setup("fit")


# -- dataset -----------------------------------------------------------------------------------------


def test_training_clips_depend_on_seed_epoch_and_index_only(root):
    entries = read_video_list(root / "good.csv", CLASSES)
    dataset = VideoListDataset(entries, num_frames=4, frame_stride=2, train=True, short_side=16, seed=5)
    first = dataset.frame_indices(entries[0], 16, 15.0, 0)
    assert torch.equal(dataset[0]["video"], dataset[0]["video"])
    assert np.array_equal(dataset.frame_indices(entries[0], 16, 15.0, 0), first)
    draws = {tuple(dataset.frame_indices(entries[0], 16, 15.0, 0)[0]) for dataset.seed in range(20)}
    assert len(draws) > 1  # the start varies with the seed...
    dataset.seed = 5
    dataset.set_epoch(1)  # ... and with the epoch
    epochs = {tuple(dataset.frame_indices(entries[0], 16, 15.0, 0)[0])}
    for epoch in range(2, 12):
        dataset.set_epoch(epoch)
        epochs.add(tuple(dataset.frame_indices(entries[0], 16, 15.0, 0)[0]))
    assert len(epochs) > 1


def test_item_shapes_views_and_windows(root):
    entries = read_video_list(root / "good.csv", CLASSES)
    item = VideoListDataset(entries, num_frames=4, short_side=16)[1]
    assert item["video"].shape == (4, 16, 16, 3) and item["video"].dtype == torch.uint8
    assert item["label"] == entries[1].label and item["video_id"] == "videos/000001.mp4"
    views = VideoListDataset(entries, num_frames=4, frame_stride=2, num_clips=3, short_side=16)
    assert views[0]["video"].shape == (3, 4, 16, 16, 3)
    batch = collate_video_clips([views[0], views[1]])
    assert batch["video"].shape == (6, 4, 16, 16, 3)
    assert batch["video_ids"] == ["videos/000000.mp4"] * 3 + ["videos/000001.mp4"] * 3
    segments = VideoListDataset(entries, num_frames=5, sampling="segments", train=True, short_side=16)
    assert segments[0]["video"].shape == (5, 16, 16, 3)
    repeated = VideoListDataset(entries, num_frames=4, repeated_aug=3, train=True, short_side=16, seed=1)
    indices = repeated.frame_indices(entries[0], 16, 15.0, 0)
    assert indices.shape == (3, 4) and len({tuple(row) for row in indices}) > 1  # independent draws
    assert repeated[0]["video"].shape == (3, 4, 16, 16, 3)
    # a window of 0.2-0.6 s at 15 fps is frames 3..8
    windowed = VideoEntry(entries[0].path, "w", 0, "left", 0.2, 0.6, 2)
    indices = VideoListDataset([windowed], num_frames=4, frame_stride=3, train=True).frame_indices(
        windowed, 16, 15.0, 0
    )
    assert indices.min() >= 3 and indices.max() <= 8


def test_unreadable_videos_become_markers_or_raise_when_strict(root):
    entries = read_video_list(root / "mixed.csv", CLASSES)
    dataset = VideoListDataset(entries, num_frames=4, short_side=16)
    items = [dataset[i] for i in range(len(dataset))]
    failed = [item for item in items if "error" in item]
    assert sorted(item["error"] for item in failed) == _bad_paths(root)
    batch = collate_video_clips(items)
    assert len(batch["labels"]) == 8 and sorted(batch["skipped"]) == _bad_paths(root)
    assert all(batch["skip_reasons"])
    dataset.strict = True
    with pytest.raises(VideoDecodeError, match=r"zero_byte\.mp4"):
        dataset[4]


def test_a_batch_of_only_unreadable_videos_is_empty_but_well_formed(root):
    entries = read_video_list(root / "mixed.csv", CLASSES)[4:6]
    dataset = VideoListDataset(entries, num_frames=4, short_side=16)
    batch = collate_video_clips([dataset[0], dataset[1]], num_frames=4, empty_size=16)
    assert batch["video"].shape == (0, 4, 16, 16, 3) and batch["labels"].shape == (0,)
    assert len(batch["skipped"]) == 2 and batch["targets"] == []


# -- data module: skip and count, strict -------------------------------------------------------------


def _model():
    return TaskModule(LinearProbeHead(64, 4), backbone=create_backbone("vit_test", depth=1))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_skipped_videos_are_counted_per_epoch(root, num_workers, caplog, tmp_path):
    dm = VideoListDataModule(
        root=str(root),
        train_list="mixed.csv",
        val_list="mixed.csv",
        num_frames=8,
        size=32,
        short_side=32,
        batch_size=4,
        num_workers=num_workers,
    )
    trainer = L.Trainer(
        max_epochs=2,
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    with caplog.at_level(logging.WARNING, logger="vidlit.data.raw_video"):
        trainer.fit(_model(), dm)
    bad = _bad_paths(root)
    assert sorted(dm.skipped_videos["train"]) == sorted(bad * 2)  # once per epoch
    assert sorted(dm.skipped_videos["val"]) == sorted(bad * 2)  # sanity-check batches not counted
    warnings = [r.getMessage() for r in caplog.records if "unreadable video" in r.getMessage()]
    # once per stage: the same 5 files in epoch 1 are not reported again
    assert len(warnings) == 2, warnings
    report = Path(trainer.log_dir) / "skipped_videos.tsv"
    train = next(m for m in warnings if m.startswith("train epoch 0"))
    assert train.startswith("train epoch 0: skipped 5 unreadable video file(s) (5 of 13 videos read)")
    assert train.endswith(f"and 2 more; full list: {report}")
    assert train.count(".mp4 (") == 3  # the first few, not all of them
    assert any(m.startswith("val epoch 0: skipped 5 unreadable") for m in warnings), warnings
    rows = [line.split("\t") for line in report.read_text().splitlines()]
    assert rows[0] == ["stage", "path", "reads", "reason"]
    assert sorted(r[1] for r in rows[1:] if r[0] == "train") == bad  # distinct files, not rows
    assert {r[2] for r in rows[1:]} == {"2"}  # each read twice (two epochs)
    assert "empty file (0 bytes)" in next(r[3] for r in rows[1:] if r[1].endswith("zero_byte.mp4"))


def test_skip_report_repeats_when_the_files_change(root, caplog):
    dm = VideoListDataModule(root=str(root), train_list="mixed.csv", size=32, short_side=32)
    with caplog.at_level(logging.WARNING, logger="vidlit.data.raw_video"):
        for paths in (["a.mp4", "b.mp4"], ["b.mp4", "a.mp4", "a.mp4"], ["a.mp4", "c.mp4"]):
            dm._epoch_skipped["val"] = [(p, "corrupt") for p in paths]
            dm._epoch_seen["val"] = 10
            dm.report_skipped("val")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages  # the same set again is not repeated
    assert messages[0].startswith("val epoch 0: skipped 2 unreadable video file(s) (2 of 10 videos read)")
    assert "c.mp4 (corrupt)" in messages[1]


def test_mixed_aspect_ratios_are_cropped_per_clip_before_batching(tmp_path):
    """A 2000x16 and a 16x2000 clip: each reaches collate bounded by the configured size, not padded."""
    from vidlit.data.synth.videos import write_video
    from vidlit.data.transforms import MAX_ASPECT

    rng = np.random.default_rng(0)
    write_video(tmp_path / "wide.mp4", rng.integers(0, 255, (8, 16, 2000, 3), dtype=np.uint8))
    write_video(tmp_path / "tall.mp4", rng.integers(0, 255, (8, 2000, 16, 3), dtype=np.uint8))
    _write(tmp_path / "train.csv", "path,label\nwide.mp4,left\ntall.mp4,right\n")
    size, short_side = 16, 18
    dm = VideoListDataModule(
        root=str(tmp_path), val_list="train.csv", classes=CLASSES, num_frames=4, size=size,
        short_side=short_side, batch_size=2,
    )  # fmt: skip
    dm.setup("validate")
    dataset = dm.datasets["val"]
    limit = int(np.ceil(short_side * MAX_ASPECT))
    clips = [dataset[i]["video"] for i in range(2)]
    # each clip is cut to the bound in the dataset: collate never sees a 2250-pixel side
    assert [tuple(c.shape[1:3]) for c in clips] == [(short_side, limit), (limit, short_side)]
    batch = collate_video_clips([dataset[0], dataset[1]])
    assert tuple(batch["video"].shape) == (2, 4, limit, limit, 3)  # not (2, 4, 2250, 2250, 3)
    assert batch["video"].numel() <= 2 * 4 * (short_side * MAX_ASPECT + 1) ** 2 * 3
    out = dm.on_after_batch_transfer(batch, 0)
    assert tuple(out["video"].shape) == (2, 3, 4, size, size)
    # a clip within the bound is untouched (ordinary videos crop exactly as before)
    from vidlit.data.transforms import bound_aspect

    clip = torch.zeros(4, 18, 32, 3, dtype=torch.uint8)
    assert bound_aspect(clip, 18) is clip


@pytest.mark.parametrize("num_workers", [0, 2])
def test_strict_mode_raises_naming_the_video(root, num_workers):
    dm = VideoListDataModule(
        root=str(root),
        train_list="mixed.csv",
        val_list="mixed.csv",
        size=32,
        short_side=32,
        strict=True,
        batch_size=13,
        num_workers=num_workers,
    )
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    with pytest.raises(VideoDecodeError, match=r"bad/zero_byte\.mp4: empty file .*strict=True"):
        dm.on_after_batch_transfer(batch, 0)
    batch["skipped"], batch["skip_reasons"] = batch["skipped"][-1:], batch["skip_reasons"][-1:]
    with pytest.raises(VideoNotFoundError, match=r"videos/missing\.mp4"):
        dm.on_after_batch_transfer(batch, 0)


def test_batches_after_transfer(root):
    dm = VideoListDataModule(
        root=str(root),
        train_list="good.csv",
        val_list="good.csv",
        size=24,
        short_side=32,
        num_frames=4,
        batch_size=3,
    )
    dm.setup("validate")
    batch = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert batch["video"].shape == (3, 3, 4, 24, 24) and batch["video"].dtype == torch.float32
    assert batch["labels"].tolist() == [0, 1, 2] and batch["video_ids"][0] == "videos/000000.mp4"
    assert batch["targets"][1] == {"video_id": "videos/000001.mp4", "label": 1, "view": 0}
    assert batch["skipped"] == [] and "frame_size" not in batch


def test_write_submission(root, tmp_path):
    dm = VideoListDataModule(root=str(root), train_list="good.csv", val_list="good.csv")
    predictions = [
        {"video_id": "a", "label": 0, "scores": torch.tensor([0.7, 0.1, 0.1, 0.1])},
        {"video_id": "a", "label": 1, "scores": torch.tensor([0.1, 0.5, 0.2, 0.2])},
    ]
    doc = json.loads(dm.write_submission(predictions, tmp_path / "out" / "sub.json").read_text())
    top = doc["results"]["a"]
    assert [t["label"] for t in top[:2]] == ["left", "right"] and top[0]["score"] == pytest.approx(0.4)
    assert doc["external_data"] == {"used": False, "details": ""}


# -- vidlit data check ----------------------------------------------------------------------------


def test_data_check_reports_unreadable_videos(root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", str(root / "mixed.csv"), "--workers", "2"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "mixed.csv: 8 readable, 5 unreadable" in out
    for path in _bad_paths(root):
        assert path in out
    assert "damaged_packets.mp4 (line 9): " in out  # decodes at first, fails on the last frame
    main(["data", "check", str(root / "good.csv")])  # all readable: exit status 0
    assert "good.csv: 8 readable, 0 unreadable" in capsys.readouterr().out


def test_data_check_bad_list_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", str(_write(tmp_path / "l.csv", "path,label\na.mp4,up,extra\n"))])
    assert exit_info.value.code == 2
    assert "l.csv:2: expected 2 fields (path,label), got 3" in capsys.readouterr().err


def test_persistent_workers_follow_the_epoch(root):
    """Clips loaded by live workers are the ones (seed, epoch, index) picks in this process."""
    dm = VideoListDataModule(
        root=str(root),
        train_list="good.csv",
        val_list="good.csv",
        size=32,
        short_side=16,
        num_frames=3,
        frame_stride=2,
        batch_size=4,
        num_workers=2,
    )
    dm.setup("fit")
    clock = type("Clock", (), {"current_epoch": 0})()
    dm.trainer = clock  # what EpochShuffleSampler and the dataset read the epoch from
    loader = dm.train_dataloader()
    dataset = dm.datasets["train"]
    index = {entry.video_id: i for i, entry in enumerate(dataset.entries)}
    seen = []
    for epoch in (0, 1, 2):
        clock.current_epoch = epoch
        clips = {vid: clip for batch in loader for vid, clip in zip(batch["video_ids"], batch["video"])}
        dataset.set_epoch(epoch)
        for video_id, clip in clips.items():
            assert torch.equal(clip, dataset[index[video_id]]["video"]), (epoch, video_id)
        seen.append(clips)
    assert any(not torch.equal(seen[0][v], seen[2][v]) for v in seen[0])  # new clips each epoch


def test_windows_of_one_video_share_one_open_reader_per_worker(root, monkeypatch, tmp_path):
    import dataclasses

    import vidlit.data.video as video

    entries = read_video_list(root / "good.csv", CLASSES)
    a, b = entries[0], entries[1]
    rows = [(a, 0.0, 0.4), (a, 0.3, 0.8), (a, 0.5, None), (b, 0.0, 0.5), (b, 0.4, None), (a, 0.1, 0.6)]
    windows = [dataclasses.replace(e, video_id=f"{e.video_id}@{s}", start=s, end=end) for e, s, end in rows]
    log = tmp_path / "opened.txt"  # written by the worker process too
    real_open = video.open_video

    def counting_open(path, *args, **kwargs):
        with open(log, "a") as f:
            f.write(Path(path).name + "\n")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(video, "open_video", counting_open)
    dataset = VideoListDataset(windows, num_frames=4, frame_stride=1, num_clips=2, short_side=16)
    items = [dataset[i] for i in range(len(windows))]
    # in the main process every item opens its video and closes it (nothing is open at fork)
    assert log.read_text().split() == [w.path.name for w in windows] and len(dataset._readers) == 0
    log.unlink()
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=1)
    for item, expected in zip(loader, items, strict=True):
        assert torch.equal(item["video"], expected["video"])  # the same frames as a fresh open each
    assert log.read_text().split() == [a.path.name, b.path.name, a.path.name]  # once per run of rows
