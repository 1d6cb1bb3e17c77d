"""The public datasets' published list formats (Kinetics CSV, SSv2 JSON, UCF101 / HMDB51 splits)."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from vidlit.data import VideoListDataModule
from vidlit.data.video_list import (
    detect_list_format,
    read_class_names,
    read_video_list,
    write_synthetic_video_list,
)

CLASSES = ["down", "left", "right", "up"]  # the synthetic motion labels, sorted


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> list[tuple[Path, str]]:
    """8 synthetic 16-frame 32 px clips: (file, motion label)."""
    root = tmp_path_factory.mktemp("formats")
    write_synthetic_video_list(root, num_videos=8, num_frames=16, size=32)
    with open(root / "videos.csv") as f:
        return [(root / row["path"], row["label"]) for row in csv.DictReader(f)]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)


def _labels_of(dm: VideoListDataModule, split: str) -> list[str]:
    return [dm.class_names[e.label] for e in dm.entries(split)]


def test_kinetics_csv_finds_clips_by_youtube_id_and_time(synth, tmp_path):
    header = "label,youtube_id,time_start,time_end,split,is_cc\n"
    rows = {"train": synth[:6], "val": synth[6:]}
    for split, items in rows.items():
        lines = []
        for i, (video, label) in enumerate(items):
            youtube_id = f"-yt{split}{i}_x"  # ids start with '-' and contain '_', as real ones do
            _copy(video, tmp_path / "clips" / split / f"{youtube_id}_{10 * i:06d}_{10 * i + 10:06d}.mp4")
            lines.append(f'"{label}",{youtube_id},{10 * i},{10 * i + 10},{split},0\n')
        _write(tmp_path / "annotations" / f"{split}.csv", header + "".join(lines))
    # the test CSV has no label column
    _write(
        tmp_path / "annotations" / "test.csv", "youtube_id,time_start,time_end,split\n-ytval0_x,0,10,val\n"
    )
    assert detect_list_format(tmp_path / "annotations" / "train.csv") == "kinetics"
    dm = VideoListDataModule(
        root=str(tmp_path),
        train_list="annotations/train.csv",
        val_list="annotations/val.csv",
        predict_list="annotations/test.csv",
        classes=None,
        video_dir="clips/{split}",
        size=16,
        num_frames=4,
    )
    assert dm.class_names == sorted({label for _, label in synth[:6]})
    assert _labels_of(dm, "train") == [label for _, label in synth[:6]]
    first = dm.entries("val")[0]
    assert first.path == tmp_path / "clips/val/-ytval0_x_000000_000010.mp4"
    assert first.video_id == "-ytval0_x_000000_000010.mp4"
    (predicted,) = dm.entries("predict")
    assert predicted.label is None and predicted.path == first.path
    dm.setup("fit")
    item = dm.datasets["val"][0]
    assert "error" not in item and item["video"].shape[0] == 4


def test_ssv2_json_classes_are_templates_without_brackets(synth, tmp_path):
    templates = {label: f"Moving [something] {label}" for _, label in synth}
    labels_json = {
        t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(sorted(templates.values()))
    }
    _write(tmp_path / "labels" / "something-something-v2-labels.json", json.dumps(labels_json, indent=4))
    for i, (video, _) in enumerate(synth):
        _copy(video, tmp_path / "videos" / f"{100 + i}.mp4")

    def records(items, offset):
        return [
            {
                "id": str(100 + offset + i),
                "label": f"moving a pen {label}",
                "template": templates[label],
                "placeholders": ["a pen"],
            }
            for i, (_, label) in enumerate(items)
        ]

    _write(
        tmp_path / "labels" / "something-something-v2-train.json", json.dumps(records(synth[:6], 0), indent=4)
    )
    _write(tmp_path / "labels" / "something-something-v2-validation.json", json.dumps(records(synth[6:], 6)))
    _write(tmp_path / "labels" / "something-something-v2-test.json", json.dumps([{"id": "106"}]))
    dm = VideoListDataModule(
        root=str(tmp_path),
        train_list="labels/something-something-v2-train.json",
        val_list="labels/something-something-v2-validation.json",
        predict_list="labels/something-something-v2-test.json",
        classes="labels/something-something-v2-labels.json",
        video_dir="videos",
        video_ext=".mp4",
        size=16,
    )
    assert dm.class_names == sorted(labels_json)
    assert _labels_of(dm, "train") == [f"Moving something {label}" for _, label in synth[:6]]
    # the line each pretty-printed record (8 lines with its placeholders list) starts on
    assert [e.line for e in dm.entries("train")][:2] == [2, 10]
    assert dm.entries("val")[0].path == tmp_path / "videos" / "106.mp4"
    assert dm.entries("predict")[0].label is None
    # the default suffix is SSv2's .webm
    assert (
        read_video_list(tmp_path / "labels" / "something-something-v2-test.json")[0].path.name == "106.webm"
    )


def test_ucf101_split_files(synth, tmp_path):
    names = ["ApplyEyeMakeup", "HandstandPushups", "PlayingCello", "YoYo"]
    by_label = dict(zip(CLASSES, names))
    _write(
        tmp_path / "ucfTrainTestlist" / "classInd.txt", "".join(f"{i} {n}\n" for i, n in enumerate(names, 1))
    )
    train, test = [], []
    for i, (video, label) in enumerate(synth):
        name = by_label[label]
        # the one class whose files differ in case from classInd.txt, as in the real lists
        stem = "HandStandPushups" if name == "HandstandPushups" else name
        rel = f"{name}/v_{stem}_g{i + 1:02d}_c01.avi"
        _copy(video, tmp_path / "UCF-101" / rel)
        (train if i < 6 else test).append((rel, names.index(name) + 1))
    _write(tmp_path / "ucfTrainTestlist" / "trainlist01.txt", "".join(f"{r} {k}\r\n" for r, k in train))
    _write(tmp_path / "ucfTrainTestlist" / "testlist01.txt", "".join(f"{r}\r\n" for r, _ in test))
    dm = VideoListDataModule(
        root=str(tmp_path),
        train_list="ucfTrainTestlist/trainlist01.txt",
        val_list="ucfTrainTestlist/testlist01.txt",
        classes="ucfTrainTestlist/classInd.txt",
        video_dir="UCF-101",
        size=16,
        num_frames=4,
    )
    assert dm.class_names == names
    assert _labels_of(dm, "train") == [by_label[label] for _, label in synth[:6]]
    assert _labels_of(dm, "val") == [by_label[label] for _, label in synth[6:]]  # from the folder
    dm.setup("validate")
    assert "error" not in dm.datasets["val"][0]


def test_hmdb51_split_files_select_train_and_test_lines(synth, tmp_path):
    split_lines: dict[str, list[str]] = {}
    expected = {"train": [], "val": []}
    for i, (video, label) in enumerate(synth):
        name = f"{label}_clip_{i}.avi"
        _copy(video, tmp_path / "hmdb51" / label / name)
        mark = 1 if i < 6 else 2
        split_lines.setdefault(label, []).append(f"{name} {mark} \n")
        expected["train" if mark == 1 else "val"].append(f"{label}/{name}")
    for label, lines in split_lines.items():
        _write(tmp_path / "splits" / f"{label}_test_split1.txt", "".join(lines) + "unused_clip.avi 0 \n")
        _write(tmp_path / "splits" / f"{label}_test_split2.txt", "")  # another split: not read
    dm = VideoListDataModule(
        root=str(tmp_path),
        train_list="splits/*_test_split1.txt",
        val_list="splits/*_test_split1.txt",
        classes=None,
        video_dir="hmdb51",
        size=16,
    )
    assert dm.class_names == sorted(split_lines)
    for split in ("train", "val"):
        entries = dm.entries(split)
        assert sorted(e.video_id for e in entries) == sorted(expected[split])
        assert all(dm.class_names[e.label] == e.video_id.split("/")[0] for e in entries)


@pytest.mark.parametrize(
    ("name", "text", "kwargs", "message"),
    [
        (
            "k400/train.csv",
            "label,youtube_id,time_start,time_end,split\nabseiling,abc,soon,10,train\n",
            {},
            r"train\.csv: line 2: key 'time_start': must be a whole number of seconds, got 'soon'",
        ),
        (
            "k400/train.csv",
            "label,youtube_id,time_start,time_end,split\nabseiling,abc,10,10,train\n",
            {},
            r"train\.csv: line 2: time_end \(10\) must be after time_start \(10\)",
        ),
        (
            "k400/train.csv",
            "label,youtube_id,time_start,time_end,split\nabseiling,,0,10,train\n",
            {},
            r"train\.csv: line 2: key 'youtube_id': no YouTube id",
        ),
        (
            "k400/train.csv",
            "label,youtube_id,time_start,time_end,split\nabseiling,abc,0,10,../..\n",
            {"video_dir": "clips/{split}"},
            r"train\.csv: line 2: key 'split': '\.\./\.\.' is not a folder name",
        ),
        (
            "k400/train.csv",
            "label,youtube_id,time_start,time_end,split\nabseiling,../../etc/x,0,10,train\n",
            {},
            r"train\.csv:2: '\.\./\.\./etc/x_000000_000010\.mp4' points outside",
        ),
        (
            "something-something-v2-train.json",
            '[\n  {"id": "1", "template": "Moving [something] up"},\n  {"label": "x", "template": "t"}\n]',
            {},
            r"train\.json: line 3: key 'id': missing",
        ),
        (
            "something-something-v2-train.json",
            '[{"id": "1", "label": "moving a pen up"}]',
            {},
            r"train\.json: line 1: key 'template': missing \(the class is the template",
        ),
        (
            "something-something-v2-train.json",
            '[{"id": "../../1", "template": "Moving [something] up"}]',
            {},
            r"train\.json:1: '\.\./\.\./1\.webm' points outside",
        ),
        ("something-something-v2-train.json", '{"id": "1"}', {}, r"train\.json: expected a JSON array"),
        (
            "trainlist01.txt",
            "A/v_A_g01_c01.avi 1\nA/v_A_g02_c01.avi one\n",
            {},
            r"trainlist01\.txt: line 2: key 'label': must be a 1-based class index",
        ),
        (
            "trainlist01.txt",
            "A/v_A_g01_c01.avi 1 2\n",
            {},
            r"trainlist01\.txt:1: expected 'path \[label\]', got 3 fields",
        ),
        (
            "trainlist01.txt",
            "A/v_A_g01_c01.avi 0\n",
            {},
            r"trainlist01\.txt: line 1: key 'label': must be a 1-based class index, got '0'",
        ),
        (
            "trainlist01.txt",
            "/etc/v_A_g01_c01.avi 1\n",
            {},
            r"trainlist01\.txt:1: '/etc/v_A_g01_c01\.avi' points outside",
        ),
        (
            "jump_test_split1.txt",
            "a.avi 1\nb.avi 3\n",
            {},
            r"jump_test_split1\.txt: line 2: key 'mark': must be 1 \(train\), 2 \(test\) or 0",
        ),
        (
            "jump_test_split1.txt",
            "a.avi\n",
            {},
            r"jump_test_split1\.txt:1: expected 'video mark', got 1 fields",
        ),
        ("notes.txt", "a.avi 1\n", {}, r"notes\.txt: cannot tell the list format from the name"),
    ],
)
def test_malformed_lines_name_file_line_and_key(tmp_path, name, text, kwargs, message):
    with pytest.raises(ValueError, match=message):
        read_video_list(_write(tmp_path / name, text), **kwargs)


def test_ucf_label_out_of_range_or_in_another_folder(tmp_path):
    classes = read_class_names(_write(tmp_path / "classInd.txt", "1 Archery\n2 YoYo\n"))
    assert classes == ["Archery", "YoYo"]
    with pytest.raises(
        ValueError, match=r"trainlist01\.txt: line 1: key 'label': class 3 is out of range for 2"
    ):
        read_video_list(_write(tmp_path / "trainlist01.txt", "YoYo/v_YoYo_g01_c01.avi 3\n"), classes)
    with pytest.raises(
        ValueError, match=r"line 1: key 'label': class 1 is 'Archery', but the video is in folder 'YoYo'"
    ):
        read_video_list(_write(tmp_path / "trainlist01.txt", "YoYo/v_YoYo_g01_c01.avi 1\n"), classes)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("classInd.txt", "1 Archery\n3 YoYo\n", r"classInd\.txt:2: expected '2 <class name>'"),
        ("labels.json", '{"a": "0", "b": "2"}', r"labels\.json: key 'b': index must be 0 \.\. 1, got '2'"),
        ("labels.json", '{"a": "0", "b": 0}', r"labels\.json: key 'b': index 0 is also 'a'"),
    ],
)
def test_malformed_class_files(tmp_path, name, text, message):
    with pytest.raises(ValueError, match=message):
        read_class_names(_write(tmp_path / name, text))


def test_detect_list_format(tmp_path):
    assert detect_list_format(_write(tmp_path / "train.csv", "path,label\na.mp4,up\n")) == "csv"
    assert detect_list_format(_write(tmp_path / "l.json", '{"path": "a.mp4"}\n')) == "jsonl"
    assert detect_list_format(_write(tmp_path / "s.json", ' [{"id": "1"}]')) == "ssv2"
    assert detect_list_format(tmp_path / "testlist03.txt") == "ucf101"
    assert detect_list_format(tmp_path / "splits" / "*_test_split2.txt") == "hmdb51"
    with pytest.raises(ValueError, match="list_format must be one of"):
        VideoListDataModule(root=str(tmp_path), list_format="kinetics400")


def test_a_csv_list_with_a_byte_that_is_not_utf8_is_one_line(tmp_path):
    # past the first 4096 characters the format check reads: the reader names the file
    from vidlit.data.lists import read_csv_rows

    path = tmp_path / "train.csv"
    path.write_bytes(b"path,label\n" + b"a.mp4,x\n" * 600 + "b\u00e9.mp4,y\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"train.csv: not UTF-8 text \(invalid") as err:
        list(read_csv_rows(path, ("path",)))
    assert "\n" not in str(err.value)


def test_a_list_that_fails_utf8_is_told_apart_as_binary_or_another_encoding(tmp_path):
    # the bytes decide, not the reader: a JSONL list saved as Latin-1 is text in another encoding
    # (it said "not a text file" before), an MP4 given as a JSON annotation file is binary (it was a
    # bare UnicodeDecodeError traceback)
    from vidlit.core.io import read_json, read_jsonl
    from vidlit.core.storage import OutputFolder
    from vidlit.data.lists import read_csv_rows

    latin = tmp_path / "train.jsonl"
    latin.write_bytes('{"path": "caf\u00e9.mp4", "label": "x"}\n'.encode("latin-1"))
    with pytest.raises(
        ValueError, match=r"train.jsonl: not UTF-8 text \(.*byte b'\\xe9'\); save it as UTF-8$"
    ):
        list(read_jsonl(latin))
    csv_list = tmp_path / "val.csv"  # the byte within the first 4096 characters the format check reads
    csv_list.write_bytes("path,label\ncaf\u00e9.mp4,x\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"val.csv: not UTF-8 text \(.*\); save it as UTF-8$"):
        detect_list_format(csv_list)
    excel = tmp_path / "test.csv"  # a spreadsheet's "Unicode text" export: UTF-16 with its mark
    excel.write_bytes("path,label\na.mp4,x\n".encode("utf-16"))
    with pytest.raises(
        ValueError, match=r"test.csv: UTF-16 text \(its byte-order mark\), not UTF-8; save it as UTF-8$"
    ):
        list(read_csv_rows(excel, ("path",)))
    video = tmp_path / "annotations.json"
    video.write_bytes(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00\xff\xfe" * 8)
    with pytest.raises(
        ValueError, match=r"annotations.json: not a text file \(.*\); expected an annotation file$"
    ):
        read_json(video)
    with pytest.raises(ValueError, match=r"annotations.json: not a text file \(.*\); expected a manifest$"):
        OutputFolder(tmp_path).read_json("annotations.json", "manifest")
