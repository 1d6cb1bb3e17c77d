"""The shared contract machinery: one-line errors naming file, record and key; ids confined to roots."""

from __future__ import annotations

import pytest
from pydantic import model_validator

from vidlit.core.io import confined_path
from vidlit.formats._schema import AnnotationError, NonEmptyStr, NonNegativeFloat, Record, dump, validate


class Label(Record):
    start_time: NonNegativeFloat
    end_time: NonNegativeFloat
    label: NonEmptyStr

    @model_validator(mode="after")
    def _ordered(self) -> Label:
        if self.end_time <= self.start_time:
            raise ValueError(f"end_time {self.end_time} is not after start_time {self.start_time}")
        return self


class Clip(Record):
    clip_uid: NonEmptyStr
    labels: list[Label]


def _error(document: dict) -> str:
    with pytest.raises(AnnotationError) as e:
        validate(Clip, document, "moments_val.json", "videos[0].clips[3]")
    message = str(e.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ("1.5", "key 'start_time': Input should be a valid number (got '1.5')"),
        (float("nan"), "key 'start_time': Input should be a finite number (got nan)"),
        (-1.0, "key 'start_time': Input should be greater than or equal to 0 (got -1.0)"),
        (True, "key 'start_time': Input should be a valid number (got True)"),
    ],
)
def test_bad_values_name_file_record_and_key(start, expected):
    message = _error(
        {
            "clip_uid": "c",
            "labels": [
                {"start_time": 0, "end_time": 1, "label": "a"},
                {"start_time": start, "end_time": 2, "label": "a"},
            ],
        }
    )
    assert message == f"moments_val.json: videos[0].clips[3].labels[1]: {expected}"


def test_missing_key_and_cross_field_rule():
    assert _error({"labels": []}) == "moments_val.json: videos[0].clips[3]: key 'clip_uid': missing"
    assert _error({"clip_uid": "c", "labels": [{"start_time": 3, "end_time": 2, "label": "a"}]}) == (
        "moments_val.json: videos[0].clips[3].labels[0]: end_time 2.0 is not after start_time 3.0"
    )


def test_valid_record_round_trips_with_extra_keys():
    document = {
        "clip_uid": "c",
        "labels": [{"start_time": 0, "end_time": 1.5, "label": "a", "primary": True}],
    }
    clip = validate(Clip, document, "f.json")
    assert clip.labels[0].end_time == 1.5
    assert dump(clip) == {
        "clip_uid": "c",
        "labels": [{"start_time": 0.0, "end_time": 1.5, "label": "a", "primary": True}],
    }


def test_confined_path_refuses_ids_outside_the_root(tmp_path):
    root = tmp_path / "features"
    root.mkdir()
    assert confined_path(root, "clip_a.pt", "f.json: clips[0]") == root / "clip_a.pt"
    for bad in ("../../outside/stolen.pt", "/etc/passwd", "a/../../b.pt"):
        with pytest.raises(ValueError, match=r"^f\.json: clips\[0\]: .* points outside "):
            confined_path(root, bad, "f.json: clips[0]")
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="points outside"):
        confined_path(root, "link/x.pt", "f.json: clips[0]")
