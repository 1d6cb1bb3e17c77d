"""The Ego4D SCOD contract: every malformed case is one line naming file, record and key; ids stay in root."""

from __future__ import annotations

import copy
import json

import pytest

from vidlit.data.ego4d_scod import Ego4DSCOD, read_scod_annotations

PNR = "clips[0].pnr_frame"


def _doc() -> dict:
    def frame(number: int) -> dict:
        box = {"x": 1.0, "y": 2.0, "width": 10.0, "height": 12.0}
        return {"frame_number": 100 + number, "clip_frame_number": number, "width": 64, "height": 64,
                "bbox": [{"object_type": "object_of_change", "bbox": box}]}  # fmt: skip

    return {"clips": [{"clip_uid": "c1", "video_uid": "v1", "pre_frame": frame(4), "pnr_frame": frame(10),
                       "post_frame": frame(16)}]}  # fmt: skip


def _box(**values):
    return lambda d: d["clips"][0]["pnr_frame"]["bbox"][0]["bbox"].update(values)


def _frame(**values):
    return lambda d: d["clips"][0]["pnr_frame"].update(values)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_box(width=0.0), f"{PNR}.bbox[0].bbox: key 'width': Input should be greater than 0 (got 0.0)"),
        (_box(x=float("nan")), f"{PNR}.bbox[0].bbox: key 'x': Input should be a finite number (got nan)"),
        (_box(y="2"), f"{PNR}.bbox[0].bbox: key 'y': Input should be a valid number (got '2')"),
        (
            _frame(frame_number=-1),
            f"{PNR}: key 'frame_number': Input should be greater than or equal to 0 (got -1)",
        ),
        (
            _frame(clip_frame_number=10.5),
            f"{PNR}: key 'clip_frame_number': Input should be a valid integer (got 10.5)",
        ),
        (_frame(height=0), f"{PNR}: key 'height': Input should be greater than 0 (got 0)"),
        (lambda d: d["clips"][0].pop("pnr_frame"), "clips[0]: key 'pnr_frame': missing"),
        (
            lambda d: d["clips"][0]["pnr_frame"]["bbox"][0].pop("object_type"),
            f"{PNR}.bbox[0]: key 'object_type': missing",
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
    path = tmp_path / "fho_scod_train.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as error:
        read_scod_annotations(path)
    assert str(error.value) == f"{path}: {expected}"


@pytest.mark.parametrize(
    ("frame_field", "key"), [("clip_frame_number", "clip_uid"), ("frame_number", "video_uid")]
)
def test_an_id_cannot_leave_the_video_folder(tmp_path, frame_field, key):
    root = tmp_path / "scod"
    root.mkdir()
    doc = _doc()
    doc["clips"][0][key] = "../../outside/stolen"
    for name in ("fho_scod_train.json", "fho_scod_val.json"):
        (root / name).write_text(json.dumps(doc))
    with pytest.raises(ValueError) as error:
        Ego4DSCOD(root=str(root), frame_field=frame_field).setup("validate")
    assert str(error.value) == (
        f"{root / 'fho_scod_val.json'}: clips[0]: key '{key}': '../../outside/stolen.mp4' points outside "
        f"{root / 'clips'}"
    )
