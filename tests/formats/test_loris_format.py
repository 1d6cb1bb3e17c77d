"""The LORIS contract: one line triple per clip, errors naming file, line and key."""

import pytest

from vidlit.formats import AnnotationError, validate
from vidlit.formats.loris import LorisClip, condition_steps, list_name

GOOD = {"audio": "audio/gBR_a.wav", "visual": "visual/gBR_a.npy", "pose": "pose/gBR_a.npy"}


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        ({"audio": "audio/a.mp3"}, "audio", r"expected a \.wav file"),
        ({"pose": "pose/a.json"}, "pose", r"expected a \.npy file"),
        ({"visual": ""}, "visual", "at least 1 character"),
        ({"audio": 3}, "audio", "valid string"),
        ({"pose": None}, "pose", "valid string"),
    ],
)
def test_malformed_lines_name_file_line_and_key(change, key, problem):
    with pytest.raises(AnnotationError, match=rf"^train_audio\.txt: line 4: key '{key}': .*{problem}"):
        validate(LorisClip, {**GOOD, **change}, "train_audio.txt", where="line 4")


def test_missing_key_and_good_line():
    with pytest.raises(AnnotationError, match="key 'pose': missing"):
        validate(LorisClip, {"audio": "a.wav", "visual": "a.npy"}, "f.txt", where="line 1")
    clip = validate(LorisClip, GOOD, "f.txt")
    assert clip.clip_id == "gBR_a" and list_name("test", "pose") == "test_pose.txt"


def test_condition_steps_cover_the_audio():
    assert condition_steps(2**19, 22050, 16.0) == 381  # 23.78 s of 16-Hz pose frames
    assert condition_steps(2**14, 4096, 16.0) == 64 and condition_steps(2**14, 4096, 2.0) == 8
