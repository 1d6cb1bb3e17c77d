"""LLP readers, dataset and data module on official-format files (hand-written and synthetic)."""

import csv
import logging
import re

import numpy as np
import pytest
import torch

from vidlit.data.llp import (
    LLP_CATEGORIES,
    LLPVideoParsing,
    read_event_annotations,
    read_weak_labels,
    segment_labels,
)
from vidlit.data.synth.llp import write_llp
from vidlit.formats import AnnotationError

CLASS_INDEX = {name: i for i, name in enumerate(LLP_CATEGORIES)}


def _write(path, text):
    path.write_text(text)
    return path


def test_weak_labels_in_file_order(tmp_path):
    path = _write(
        tmp_path / "AVVP_train.csv",
        "filename\tevent_labels\n---1_cCGK4M_0_10\tDog,Speech\nP7x4FV4lg_570_580\tFrying_(food)\n",
    )
    videos = read_weak_labels(path, LLP_CATEGORIES)
    assert [(v.filename, v.labels) for v in videos] == [
        ("---1_cCGK4M_0_10", ["Dog", "Speech"]),
        ("P7x4FV4lg_570_580", ["Frying_(food)"]),
    ]


def test_event_rows_with_the_official_quirks(tmp_path):
    # rows taken from the official AVVP_eval_audio.csv: an empty event (9-9), touching and
    # duplicated rows of one class
    path = _write(
        tmp_path / "AVVP_eval_audio.csv",
        "filename\tonset\toffset\tevent_labels\n"
        "CSWQ_HzQ_10_20\t0\t9\tSpeech\n"
        "CSWQ_HzQ_10_20\t9\t9\tBasketball_bounce\n"
        "McfGMq5A5G8_30_40\t0\t2\tSinging\n"
        "McfGMq5A5G8_30_40\t2\t6\tSinging\n"
        "McfGMq5A5G8_30_40\t5\t6\tSinging\n"
        "McfGMq5A5G8_30_40\t5\t6\tSinging\n",
    )
    events = read_event_annotations(path, LLP_CATEGORIES)
    assert events["CSWQ_HzQ_10_20"] == [(0, 9, "Speech"), (9, 9, "Basketball_bounce")]
    gt = segment_labels(events["CSWQ_HzQ_10_20"], CLASS_INDEX)
    assert gt.shape == (10, 25)
    assert gt[:, CLASS_INDEX["Speech"]].tolist() == [1] * 9 + [0]
    assert gt[:, CLASS_INDEX["Basketball_bounce"]].sum() == 0  # onset == offset marks nothing
    singing = segment_labels(events["McfGMq5A5G8_30_40"], CLASS_INDEX)[:, CLASS_INDEX["Singing"]]
    assert singing.tolist() == [1] * 6 + [0] * 4


WEAK = "filename\tevent_labels\n"
EVENTS = "filename\tonset\toffset\tevent_labels\n"


@pytest.mark.parametrize(
    ("reader", "text", "message"),
    [
        (
            "weak",
            WEAK + "x_0_10\tDog\ny_0_10\tUnicorn\n",
            r"line 3: key 'event_labels': unknown category 'Unicorn'",
        ),
        ("weak", "filename,event_labels\nx_0_10,Dog\n", r"line 1: missing column"),  # commas, not tabs
        ("weak", WEAK, r"no video after the header row"),  # header only: fit would train nothing
        ("weak", WEAK + "x_0_10\t\n", r"line 2: key 'event_labels': no event label"),
        ("weak", WEAK + "\tDog\n", r"line 2: key 'filename': String should have at least 1 character"),
        ("weak", WEAK + "x_0_10\tDog\nx_0_10\tCat\n", r"line 3: key 'filename': 'x_0_10' is already listed"),
        ("events", EVENTS + "x_0_10\t5\t2\tDog\n", r"line 2: need 0 <= onset <= offset <= 10 s"),
        ("events", EVENTS + "x_0_10\tfive\t6\tDog\n", r"line 2: key 'onset': .*must be a number of seconds"),
        ("events", EVENTS + "x_0_10\t2\t14\tDog\n", r"line 2: need 0 <= onset <= offset <= 10 s .*2-14"),
        ("events", EVENTS + "x_0_10\t-1\t4\tDog\n", r"line 2: need 0 <= onset"),
        ("events", EVENTS + "x_0_10\tnan\t4\tDog\n", r"line 2: key 'onset': .*finite"),
        ("events", EVENTS + "x_0_10\t1\t4\tKazoo\n", r"line 2: key 'event_labels': unknown category 'Kazoo'"),
    ],
)
def test_bad_rows_name_file_line_and_key(tmp_path, reader, text, message):
    path = _write(tmp_path / "a.csv", text)
    read = read_weak_labels if reader == "weak" else read_event_annotations
    with pytest.raises(AnnotationError, match=rf"^{re.escape(str(path))}: {message}") as err:
        read(path, LLP_CATEGORIES)
    assert "\n" not in str(err.value)


def test_decimal_seconds_are_numbers(tmp_path):
    path = _write(tmp_path / "a.csv", EVENTS + "x_0_10\t1.5\t4.0\tDog\n")
    assert read_event_annotations(path, LLP_CATEGORIES) == {"x_0_10": [(1, 4, "Dog")]}
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_weak_labels(tmp_path / "missing.csv")


def test_a_filename_cannot_point_outside_the_feature_folder(tmp_path):
    from vidlit.data.llp import find_llp_feature

    (tmp_path / "feats").mkdir()
    with pytest.raises(ValueError, match=r"video '../../etc/passwd_0_10': .* points outside"):
        find_llp_feature(tmp_path / "feats", "../../etc/passwd_0_10")


def _tiny_dataset(root):
    """Two videos in the official layout with known features; video B has no eval rows."""
    (root / "feats" / "vggish").mkdir(parents=True)
    (root / "feats" / "res152").mkdir()
    (root / "feats" / "r2plus1d_18").mkdir()
    for name in ("AVVP_train.csv", "AVVP_val_pd.csv"):
        _write(root / name, "filename\tevent_labels\nAAAAAAAAAAA_30_40\tDog,Speech\nBBBBBBBBBBB_0_10\tCar\n")
    _write(root / "AVVP_test_pd.csv", "filename\tevent_labels\nAAAAAAAAAAA_30_40\tDog,Speech\n")
    _write(
        root / "AVVP_eval_audio.csv", "filename\tonset\toffset\tevent_labels\nAAAAAAAAAAA_30_40\t2\t5\tDog\n"
    )
    _write(
        root / "AVVP_eval_visual.csv",
        "filename\tonset\toffset\tevent_labels\nAAAAAAAAAAA_30_40\t0\t10\tSpeech\n",
    )
    for i, vid in enumerate(("AAAAAAAAAAA", "BBBBBBBBBBB")):
        np.save(root / "feats" / "vggish" / f"{vid}.npy", np.full((10, 4), i, dtype=np.float32))
        # frame f of the 80 ResNet frames holds f: segment s averages frames 8s..8s+7 -> 8s + 3.5
        np.save(
            root / "feats" / "res152" / f"{vid}.npy",
            np.repeat(np.arange(80, dtype=np.float32)[:, None], 3, 1),
        )
        np.save(root / "feats" / "r2plus1d_18" / f"{vid}.npy", np.full((10, 2), -1, dtype=np.float32))
    return root


def _module(root, **kwargs):
    return LLPVideoParsing(root=str(root), audio_dim=4, feature_dim=5, motion_dim=2, batch_size=2, **kwargs)


def test_dataset_averages_frames_and_concatenates_motion(tmp_path):
    dm = _module(_tiny_dataset(tmp_path))
    assert dm.num_classes == 25
    dm.setup("fit")
    sample = dm.datasets["train"][0]
    assert sample["audio"].shape == (10, 4)
    assert sample["visual"].shape == (10, 5)
    assert sample["visual"][:, 0].tolist() == [8 * s + 3.5 for s in range(10)]
    assert (sample["visual"][:, 3:] == -1).all()
    assert sample["labels"].nonzero().flatten().tolist() == [CLASS_INDEX["Speech"], CLASS_INDEX["Dog"]]
    # training sees the video-level labels only
    assert set(sample["target"]) == {"video_id", "labels"}

    batch = next(iter(dm.val_dataloader()))
    assert batch["audio"].shape == (2, 10, 4) and batch["visual"].shape == (2, 10, 5)
    assert batch["mask"].all() and batch["labels"].shape == (2, 25)
    a, b = batch["targets"]
    assert a["video_id"] == "AAAAAAAAAAA_30_40"
    assert a["audio"][:, CLASS_INDEX["Dog"]].tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    assert a["visual"][:, CLASS_INDEX["Speech"]].sum() == 10
    # a video without eval rows: all-zero ground truth (scored 1.0 when nothing is predicted)
    assert b["audio"].sum() == 0 and b["visual"].sum() == 0


def test_features_named_by_the_first_11_characters_or_the_whole_filename(tmp_path):
    root = _tiny_dataset(tmp_path)
    for folder in ("vggish", "res152", "r2plus1d_18"):
        path = root / "feats" / folder / "BBBBBBBBBBB.npy"
        path.rename(path.with_name("BBBBBBBBBBB_0_10.npy"))
    dm = _module(root)
    dm.setup("validate")
    assert len(dm.datasets["val"]) == 2
    assert dm.datasets["val"][1]["audio"][0, 0] == 1.0


def test_missing_and_malformed_features(tmp_path, caplog):
    root = _tiny_dataset(tmp_path)
    (root / "feats" / "r2plus1d_18" / "BBBBBBBBBBB.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 2 train videos .*r2plus1d_18/BBBBBBBBBBB.npy"):
        _module(root).setup("fit")
    with caplog.at_level(logging.WARNING):
        dm = _module(root, strict=False)
        dm.setup("fit")
    assert len(dm.datasets["train"]) == 1 and "skipping them" in caplog.text
    np.save(root / "feats" / "res152" / "AAAAAAAAAAA.npy", np.zeros((75, 3), dtype=np.float32))
    with pytest.raises(
        ValueError, match=r"AAAAAAAAAAA.npy \(appearance features of AAAAAAAAAAA_30_40\): 75 steps"
    ):
        dm.datasets["train"][0]
    np.save(root / "feats" / "vggish" / "AAAAAAAAAAA.npy", np.zeros((10, 128), dtype=np.float32))
    with pytest.raises(ValueError, match="features have dim 128 but feature_dim is 4"):
        dm.datasets["train"][0]


def test_synthetic_dataset_official_layout_and_signal(tmp_path):
    root = write_llp(tmp_path / "llp", num_train=12, num_val=8, num_test=4, seed=3)
    for name in ("AVVP_train.csv", "AVVP_val_pd.csv", "AVVP_test_pd.csv"):
        with (root / name).open() as f:
            assert f.readline() == "filename\tevent_labels\n"
    assert (root / "AVVP_eval_audio.csv").read_text().startswith("filename\tonset\toffset\tevent_labels\n")
    dm = LLPVideoParsing(root=str(root), audio_dim=128, feature_dim=192, motion_dim=64)
    train, val = dm.videos("train"), dm.videos("val")
    assert len(train) == 12 and len(val) == 8
    assert all(len(v.filename.split("_")[0]) >= 1 and len(v.filename) > 11 for v in train)
    assert np.load(root / "feats" / "res152" / f"{train[0].filename[:11]}.npy").shape == (80, 128)
    modalities = set()
    for video in val:
        # the video-level labels are exactly the classes with an audio or a visual event
        audible = {n for *_, n in video.audio_events}
        visible = {n for *_, n in video.visual_events}
        assert audible | visible == set(video.labels)
        modalities |= {("a" if n in audible else "") + ("v" if n in visible else "") for n in video.labels}
    assert modalities == {"a", "v", "av"}
    # the event's class prototype is in the audio features of its segments only
    dm.setup("validate")
    sample = dm.datasets["val"][0]
    gt = sample["target"]["audio"]
    if gt.any():
        t, k = gt.nonzero()[0].tolist()
        other = (~gt[:, k].bool()).nonzero().flatten()
        if len(other):
            inside, outside = sample["audio"][t], sample["audio"][other[0]]
            assert (inside - outside).norm() > 3
    assert write_llp(tmp_path / "again", num_train=12, num_val=8, num_test=4, seed=3)
    with (root / "AVVP_train.csv").open() as f, (tmp_path / "again" / "AVVP_train.csv").open() as g:
        assert list(csv.reader(f)) == list(csv.reader(g))  # a pure function of the seed
    assert torch.equal(
        torch.from_numpy(np.load(root / "feats" / "vggish" / f"{train[0].filename[:11]}.npy")),
        torch.from_numpy(np.load(tmp_path / "again" / "feats" / "vggish" / f"{train[0].filename[:11]}.npy")),
    )


def test_fit_on_a_header_only_csv_stops_with_one_line(tmp_path, monkeypatch, capsys):
    """It used to train nothing and exit 0; `vidlit fit` now prints the file's one-line error."""
    import sys
    from pathlib import Path

    from vidlit.cli import main

    root = write_llp(
        tmp_path / "llp", num_train=2, num_val=1, num_test=1, audio_dim=8, visual_dim=8, motion_dim=4
    )
    (root / "AVVP_train.csv").write_text("filename\tevent_labels\n")
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "llp.yaml"
    argv = ["vidlit", "fit", "--config", str(recipe), "--data.init_args.root", str(root),
            "--data.init_args.audio_dim", "8", "--data.init_args.feature_dim", "12",
            "--data.init_args.motion_dim", "4",
            "--trainer.default_root_dir", str(tmp_path / "runs")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit:
        main()
    assert exit.value.code == 1
    err = capsys.readouterr().err
    line = f"{root / 'AVVP_train.csv'}: no video after the header row (the split would have nothing to use)"
    assert err.endswith(f"vidlit: error: {line}\n")
