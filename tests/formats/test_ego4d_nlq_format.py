"""The Ego4D NLQ contract: every malformed case is one line naming file, record and key; ids stay in root."""

from __future__ import annotations

import copy
import json

import pytest

from vidlit.data.ego4d_nlq import Ego4DNLQ, read_nlq_annotations

CLIP = "videos[0].clips[0]"
QUERY = f"{CLIP}.annotations[0].language_queries[0]"


def _doc() -> dict:
    query = {"query": "where is the cup?", "clip_start_sec": 1.0, "clip_end_sec": 5.0}
    clip = {
        "clip_uid": "c1",
        "video_start_sec": 10.0,
        "video_end_sec": 70.0,
        "annotations": [{"annotation_uid": "a1", "language_queries": [query]}],
    }
    return {"videos": [{"video_uid": "v1", "clips": [clip]}]}


def _set(key: str, value):
    def edit(doc: dict) -> None:
        query = doc["videos"][0]["clips"][0]["annotations"][0]["language_queries"][0]
        if value is _DROP:
            del query[key]
        else:
            query[key] = value

    return edit


_DROP = object()


def _duplicate(doc: dict) -> None:
    doc["videos"][0]["clips"].append(copy.deepcopy(doc["videos"][0]["clips"][0]))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_set("query", _DROP), f"{QUERY}: key 'query': missing"),
        (_set("query", 7), f"{QUERY}: key 'query': Input should be a valid string (got 7)"),
        (_set("query", ""), f"{QUERY}: key 'query': String should have at least 1 character (got '')"),
        (_set("query", "   "), f"{QUERY}: key 'query': the query is blank"),
        (
            _set("clip_end_sec", 61.0),
            f"{QUERY}: key 'clip_end_sec': 61 is past the end of the clip (60 s long)",
        ),
        (_set("clip_end_sec", 0.5), f"{QUERY}: key 'clip_end_sec': 0.5 is not after clip_start_sec 1"),
        (
            _set("clip_start_sec", -2.0),
            f"{QUERY}: key 'clip_start_sec': Input should be greater than or equal to 0 (got -2.0)",
        ),
        (
            _set("clip_start_sec", "1.5"),
            f"{QUERY}: key 'clip_start_sec': Input should be a valid number (got '1.5')",
        ),
        (
            _set("clip_start_sec", float("nan")),
            f"{QUERY}: key 'clip_start_sec': Input should be a finite number (got nan)",
        ),
        (_set("clip_end_sec", _DROP), f"{QUERY}: key 'clip_end_sec': missing (clip_start_sec is given)"),
        (_duplicate, "videos[0].clips[1]: key 'clip_uid': clip_uid 'c1' is listed twice"),
    ],
)
def test_malformed_file_is_one_line_naming_file_record_and_key(tmp_path, edit, expected):
    doc = _doc()
    edit(doc)
    path = tmp_path / "nlq_train.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as error:
        read_nlq_annotations(path)
    assert str(error.value) == f"{path}: {expected}"


def test_unannotated_queries_are_valid(tmp_path):
    doc = _doc()
    for key in ("clip_start_sec", "clip_end_sec"):
        _set(key, _DROP)(doc)
    path = tmp_path / "nlq_test_unannotated.json"
    path.write_text(json.dumps(doc))
    assert read_nlq_annotations(path)[0].window is None


def test_a_video_uid_cannot_leave_the_feature_folder(tmp_path):
    root = tmp_path / "nlq"
    root.mkdir()
    doc = _doc()
    doc["videos"][0]["video_uid"] = "../../outside/stolen"
    for name in ("nlq_train.json", "nlq_val.json"):
        (root / name).write_text(json.dumps(doc))
    with pytest.raises(ValueError) as error:
        Ego4DNLQ(root=str(root), feature_dim=4).setup("validate")
    assert str(error.value) == (
        f"{root / 'nlq_val.json'}: videos[0]: key 'video_uid': '../../outside/stolen' points outside "
        f"{root / 'features'}"
    )
