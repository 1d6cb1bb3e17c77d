"""The Ego4D FHP contract: every malformed case is one line naming file, record and key; ids stay in root."""

from __future__ import annotations

import copy
import json

import pytest

from vidlit.data.ego4d_fhp import Ego4DFHP, read_hand_annotations

ACTION = "clips[0].frames[0]"


def _doc() -> dict:
    boxes = [{"left_hand": [1.0, 2.0]}, {"right_hand": [3.0, 4.0]}]
    action = {
        "pre_45": {"frame": 100, "clip_frame": 32, "boxes": boxes},
        "contact_frame": {"frame": 145, "clip_frame": 77, "boxes": boxes},
    }
    return {"clips": [{"clip_id": 1, "clip_uid": "c1", "video_uid": "v1", "frames": [action]}]}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["clips"][0]["frames"][0].pop("pre_45"), f"{ACTION}: key 'pre_45': missing"),
        (
            lambda d: d["clips"][0]["frames"][0]["pre_45"].update(frame=-1),
            f"{ACTION}.pre_45: key 'frame': Input should be greater than or equal to 0 (got -1)",
        ),
        (
            lambda d: d["clips"][0]["frames"][0]["pre_45"].update(clip_frame="32"),
            f"{ACTION}.pre_45: key 'clip_frame': Input should be a valid integer (got '32')",
        ),
        (
            lambda d: d["clips"][0]["frames"][0]["pre_45"]["boxes"][0].update(left_hand=[1.0]),
            f"{ACTION}.pre_45.boxes[0]: key 'left_hand': List should have at least 2 items after validation, "
            "not 1 (got [1.0])",
        ),
        (
            lambda d: d["clips"][0]["frames"][0]["pre_45"]["boxes"][0].update(left_hand=[float("nan"), 1.0]),
            f"{ACTION}.pre_45.boxes[0].left_hand[0]: Input should be a finite number (got nan)",
        ),
        (
            lambda d: d["clips"][0]["frames"][0]["pre_45"]["boxes"][1].update(right_hand=["3", 4.0]),
            f"{ACTION}.pre_45.boxes[1].right_hand[0]: Input should be a valid number (got '3')",
        ),
        (
            lambda d: d["clips"][0].update(clip_id="1"),
            "clips[0]: key 'clip_id': Input should be a valid integer (got '1')",
        ),
        (
            lambda d: d["clips"].append(copy.deepcopy(d["clips"][0])),
            "clips[1]: key 'clip_uid': clip_uid 'c1' is listed twice",
        ),
    ],
)
def test_malformed_file_is_one_line_naming_file_record_and_key(tmp_path, edit, expected):
    doc = _doc()
    edit(doc)
    path = tmp_path / "fho_hands_train.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as error:
        read_hand_annotations(path)
    assert str(error.value) == f"{path}: {expected}"


def test_a_clip_uid_cannot_leave_the_video_folder(tmp_path):
    root = tmp_path / "fhp"
    root.mkdir()
    doc = _doc()
    doc["clips"][0]["clip_uid"] = "../../outside/stolen"
    for name in ("fho_hands_train.json", "fho_hands_val.json"):
        (root / name).write_text(json.dumps(doc))
    with pytest.raises(ValueError) as error:
        Ego4DFHP(root=str(root)).setup("validate")
    assert str(error.value) == (
        f"{root / 'fho_hands_val.json'}: clips[0]: key 'clip_uid': '../../outside/stolen.mp4' points outside "
        f"{root / 'clips'}"
    )
