"""MSR-VTT, DiDeMo and ActivityNet Captions contracts: a bad case is one line naming file, record, key."""

from __future__ import annotations

import json

import pytest

from vidlit.data.retrieval import read_activitynet_captions, read_didemo, read_msrvtt
from vidlit.formats.retrieval import paragraph

MSRVTT_HEADER = "key,vid_key,video_id,sentence\n"
GOOD_ANET = {"duration": 10.0, "timestamps": [[0.0, 5.0], [5.0, 10.0]], "sentences": ["A cat.", " It sits."]}
GOOD_DIDEMO = {"video": "1@N0_2.mov", "description": "a dog runs", "times": [[0, 0], [0, 1], [0, 0], [0, 0]]}


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (
            "ret0,msr1,,a cat\n",
            r"MSRVTT_JSFUSION_test.csv: line 2: key 'video_id': must be a non-empty string",
        ),
        ("ret0,msr1,video1,  \n", r"line 2: key 'sentence': must be a non-empty string"),
        ("ret0,msr1,video1\n", r"MSRVTT_JSFUSION_test.csv:2: expected 4 fields"),
        (
            "ret0,msr1,video1,a\nret1,msr1,video1,b\n",
            r"line 3: key 'video_id': 'video1' is already on line 2",
        ),
    ],
)
def test_msrvtt_rows_are_checked(tmp_path, rows, match):
    path = tmp_path / "MSRVTT_JSFUSION_test.csv"
    path.write_text(MSRVTT_HEADER + rows)
    with pytest.raises(ValueError, match=match) as err:
        read_msrvtt(path)
    _one_line(err)


def test_msrvtt_header_must_name_the_columns(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("key,video,caption\nret0,video1,a cat\n")
    with pytest.raises(
        ValueError, match=r"test.csv:1: the header row must name columns 'video_id', 'sentence', got"
    ):
        read_msrvtt(path)
    # the video lists' CSV reader: a column named twice is refused, not read as its last copy
    path.write_text("key,video_id,video_id,sentence\nret0,video1,video2,a cat\n")
    with pytest.raises(ValueError, match=r"test.csv:1: duplicate column names"):
        read_msrvtt(path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"duration": -1.0}, r"video 'v_abc': key 'duration': must be a positive number of seconds"),
        ({"duration": "10"}, r"video 'v_abc': key 'duration': Input should be a valid number"),
        ({"sentences": []}, r"video 'v_abc': key 'sentences': no sentences"),
        ({"sentences": ["A cat.", " "]}, r"video 'v_abc': key 'sentences': sentence 1 is empty"),
        ({"timestamps": [[0.0, 5.0]]}, r"video 'v_abc': 1 timestamps for 2 sentences"),
        (
            {"timestamps": [[0.0, float("nan")], [5.0, 10.0]]},
            r"video 'v_abc'\.timestamps\[0\]\[1\]: Input should be a finite number",
        ),
        ({"sentences": None}, r"video 'v_abc': key 'sentences'"),
    ],
)
def test_activitynet_videos_are_checked(tmp_path, change, match):
    path = tmp_path / "val_1.json"
    path.write_text(json.dumps({"v_ok": GOOD_ANET, "v_abc": {**GOOD_ANET, **change}}))
    with pytest.raises(ValueError, match=rf"val_1.json: {match}") as err:
        read_activitynet_captions(path)
    _one_line(err)


def test_activitynet_quirks_of_the_real_file_are_accepted(tmp_path):
    # a timestamp past the duration and one that starts after it ends both occur in val_1.json
    path = tmp_path / "val_1.json"
    path.write_text(json.dumps({"v_x": {**GOOD_ANET, "timestamps": [[0.0, 10.4], [9.0, 8.0]], "extra": 1}}))
    (video,) = read_activitynet_captions(path)
    assert video.caption == "A cat. It sits." and video.end is None


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            {"times": [[0, 6]]},
            r"\[1\]: key 'times': segment pair \[0, 6\] must satisfy 0 <= start <= end <= 5",
        ),
        ({"times": [[3, 2]]}, r"\[1\]: key 'times': segment pair \[3, 2\]"),
        ({"times": []}, r"\[1\]: key 'times': no annotator times"),
        ({"times": [["0", "1"]]}, r"\[1\]\.times\[0\]\[0\]: Input should be a valid integer"),
        ({"description": ""}, r"\[1\]: key 'description': must be a non-empty string"),
        ({"video": None}, r"\[1\]: key 'video': must be a non-empty string"),
    ],
)
def test_didemo_moments_are_checked(tmp_path, change, match):
    path = tmp_path / "test_data.json"
    path.write_text(json.dumps([GOOD_DIDEMO, {**GOOD_DIDEMO, **change}]))
    with pytest.raises(ValueError, match=rf"test_data.json: {match}") as err:
        read_didemo(path)
    _one_line(err)


def test_files_of_the_wrong_shape_are_named(tmp_path):
    (tmp_path / "a.json").write_text("[]")
    with pytest.raises(ValueError, match=r"a.json: expected a non-empty JSON object keyed by video id"):
        read_activitynet_captions(tmp_path / "a.json")
    (tmp_path / "d.json").write_text("{")
    with pytest.raises(ValueError, match=r"d.json: line 1 column 2: invalid JSON"):
        read_didemo(tmp_path / "d.json")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_msrvtt(tmp_path / "missing.csv")


def test_paragraph_joins_stripped_sentences_in_order():
    assert paragraph(["A man cooks.", "  He serves the food. ", "Guests eat."]) == (
        "A man cooks. He serves the food. Guests eat."
    )
