"""The Ego4D STA contract: every malformed case is one line naming file, record and key; ids stay in root."""

from __future__ import annotations

import copy
import json

import pytest

from vidlit.data.ego4d_sta import Ego4DSTA, read_sta_annotations

OBJECT = "annotations[0].objects[0]"


def _doc(nouns: int = 2) -> dict:
    obj = {
        "box": [1.0, 2.0, 10.0, 12.0],
        "noun_category_id": 1,
        "verb_category_id": 0,
        "time_to_contact": 0.5,
    }
    return {
        "noun_categories": [{"id": i, "name": f"noun{i}"} for i in range(nouns)],
        "verb_categories": [{"id": 0, "name": "take"}],
        "annotations": [{"uid": "u1", "video_uid": "v1", "frame": 100, "objects": [obj]}],
    }


def _object(**values):
    return lambda d: d["annotations"][0]["objects"][0].update(values)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            _object(verb_category_id=-1),
            f"{OBJECT}: key 'verb_category_id': Input should be greater than or equal to 0 (got -1)",
        ),
        (
            _object(verb_category_id=1),
            "{OBJECT}: key 'verb_category_id': 1 is not a verb id of {path} (ids 0..0)",
        ),
        (
            _object(noun_category_id=2),
            "{OBJECT}: key 'noun_category_id': 2 is not a noun id of {path} (ids 0..1)",
        ),
        (
            _object(time_to_contact=-0.5),
            f"{OBJECT}: key 'time_to_contact': Input should be greater than or equal to 0 (got -0.5)",
        ),
        (
            _object(time_to_contact=float("nan")),
            f"{OBJECT}: key 'time_to_contact': Input should be a finite number (got nan)",
        ),
        (
            _object(box=[5.0, 2.0, 1.0, 12.0]),
            f"{OBJECT}: key 'box': box must be [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2, "
            "got [5.0, 2.0, 1.0, 12.0]",
        ),
        (
            lambda d: d["annotations"][0].update(frame=-5),
            "annotations[0]: key 'frame': Input should be greater than or equal to 0 (got -5)",
        ),
        (
            lambda d: d["annotations"][0].update(frame="100"),
            "annotations[0]: key 'frame': Input should be a valid integer (got '100')",
        ),
        (
            lambda d: d["annotations"].append(copy.deepcopy(d["annotations"][0])),
            "annotations[1]: key 'uid': uid 'u1' is listed twice",
        ),
    ],
)
def test_malformed_file_is_one_line_naming_file_record_and_key(tmp_path, edit, expected):
    doc = _doc()
    edit(doc)
    path = tmp_path / "fho_sta_train.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as error:
        read_sta_annotations(path)
    assert str(error.value) == f"{path}: {expected.format(OBJECT=OBJECT, path=path)}"


def _root(tmp_path, val: dict):
    root = tmp_path / "sta"
    root.mkdir()
    (root / "fho_sta_train.json").write_text(json.dumps(_doc()))
    (root / "fho_sta_val.json").write_text(json.dumps(val))
    return root


def test_a_val_id_outside_the_train_taxonomy_is_an_error(tmp_path):
    val = _doc(nouns=3)  # the val file lists a noun the train file does not
    val["annotations"][0]["objects"][0]["noun_category_id"] = 2
    root = _root(tmp_path, val)
    dm = Ego4DSTA(str(root))  # nothing is read while constructing
    with pytest.raises(ValueError) as error:
        dm.setup("validate")
    assert str(error.value) == (
        f"{root / 'fho_sta_val.json'}: {OBJECT}: key 'noun_category_id': 2 is not a noun id of "
        f"{root / 'fho_sta_train.json'} (ids 0..1)"
    )


def test_a_video_uid_cannot_leave_the_video_folder(tmp_path):
    val = _doc()
    val["annotations"][0]["video_uid"] = "../../outside/stolen"
    root = _root(tmp_path, val)
    with pytest.raises(ValueError) as error:
        Ego4DSTA(str(root)).setup("validate")
    assert str(error.value) == (
        f"{root / 'fho_sta_val.json'}: annotations[0]: key 'video_uid': '../../outside/stolen.mp4' points "
        f"outside {root / 'videos'}"
    )
