"""The Ego4D MQ contract: every malformed case is one line naming file, record and key; ids stay in root."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from vidlit.data.ego4d_mq import Ego4DMQ, read_moment_annotations

CLIP = "videos[0].clips[0]"
LABEL = f"{CLIP}.annotations[0].labels[0]"


def _doc(label: str = "wash_hands") -> dict:
    return {
        "videos": [
            {
                "video_uid": "v1",
                "clips": [
                    {
                        "clip_uid": "c1",
                        "video_start_sec": 10.0,
                        "video_end_sec": 70.0,
                        "annotations": [
                            {
                                "labels": [
                                    {"start_time": 1.0, "end_time": 5.5, "label": label, "primary": True}
                                ]
                            }
                        ],
                    }
                ],
            }
        ]
    }


def _set(key: str, value):
    def edit(doc: dict) -> None:
        doc["videos"][0]["clips"][0]["annotations"][0]["labels"][0][key] = value

    return edit


def _duplicate(doc: dict) -> None:
    doc["videos"][0]["clips"].append(copy.deepcopy(doc["videos"][0]["clips"][0]))


def _drop(key: str):
    def edit(doc: dict) -> None:
        del doc["videos"][0]["clips"][0]["annotations"][0]["labels"][0][key]

    return edit


def _clip(key: str, value):
    def edit(doc: dict) -> None:
        doc["videos"][0]["clips"][0][key] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_set("start_time", "1.5"), f"{LABEL}: key 'start_time': Input should be a valid number (got '1.5')"),
        (
            _set("start_time", float("nan")),
            f"{LABEL}: key 'start_time': Input should be a finite number (got nan)",
        ),
        (
            _set("start_time", -1.0),
            f"{LABEL}: key 'start_time': Input should be greater than or equal to 0 (got -1.0)",
        ),
        (_set("end_time", 61.0), f"{LABEL}: key 'end_time': 61 is past the end of the clip (60 s long)"),
        (_set("end_time", 0.5), f"{LABEL}: key 'end_time': 0.5 is not after start_time 1"),
        (_set("end_time", "5.5"), f"{LABEL}: key 'end_time': Input should be a valid number (got '5.5')"),
        (_drop("end_time"), f"{LABEL}: key 'end_time': missing"),
        (_set("label", ""), f"{LABEL}: key 'label': String should have at least 1 character (got '')"),
        (_set("label", 3), f"{LABEL}: key 'label': Input should be a valid string (got 3)"),
        (_set("primary", "yes"), f"{LABEL}: key 'primary': Input should be a valid boolean (got 'yes')"),
        (_clip("video_end_sec", 5.0), f"{CLIP}: key 'video_end_sec': 5 is not after video_start_sec 10"),
        (_clip("clip_uid", ""), f"{CLIP}: key 'clip_uid': String should have at least 1 character (got '')"),
        (_duplicate, "videos[0].clips[1]: key 'clip_uid': clip_uid 'c1' is listed twice"),
    ],
)
def test_malformed_file_is_one_line_naming_file_record_and_key(tmp_path, edit, expected):
    doc = _doc()
    edit(doc)
    path = tmp_path / "moments_train.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as error:
        read_moment_annotations(path)
    assert str(error.value) == f"{path}: {expected}"


def _root(tmp_path: Path, val_label: str = "wash_hands", clip_uid: str = "c1") -> Path:
    root = tmp_path / "mq"
    root.mkdir()
    (root / "moments_train.json").write_text(json.dumps(_doc()))
    val = _doc(val_label)
    val["videos"][0]["clips"][0]["clip_uid"] = clip_uid
    (root / "moments_val.json").write_text(json.dumps(val))
    return root


def test_a_val_label_outside_the_train_taxonomy_is_an_error(tmp_path):
    root = _root(tmp_path, val_label="wash_hand")
    dm = Ego4DMQ(root=str(root), feature_dim=4)  # nothing is read while constructing
    with pytest.raises(ValueError) as error:
        dm.setup("validate")
    assert str(error.value) == (
        f"{root / 'moments_val.json'}: {LABEL}: key 'label': 'wash_hand' is not a class of "
        f"{root / 'moments_train.json'} (1 classes)"
    )


def test_a_clip_uid_cannot_leave_the_feature_folder(tmp_path):
    root = _root(tmp_path, clip_uid="../../../outside/stolen")
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(ValueError) as error:
        Ego4DMQ(root=str(root), feature_dim=4).setup("validate")
    assert str(error.value) == (
        f"{root / 'moments_val.json'}: {CLIP}: key 'clip_uid': '../../../outside/stolen' points outside "
        f"{root / 'features'}"
    )


def test_construction_reads_nothing(tmp_path):
    Ego4DMQ(root=str(tmp_path / "missing"), feature_dim=4)  # errors come from setup(), not the parser


def test_predict_split_test_reads_the_unannotated_file(tmp_path):
    root = _root(tmp_path)
    test = _doc()
    del test["videos"][0]["clips"][0]["annotations"]
    (root / "moments_test_unannotated.json").write_text(json.dumps(test))
    assert Ego4DMQ(root=str(root)).files["predict"] == root / "moments_val.json"
    dm = Ego4DMQ(root=str(root), predict_split="test")
    assert dm.files["predict"] == root / "moments_test_unannotated.json"
    assert [c.moments for c in dm.clips("predict")] == [[]]
    with pytest.raises(ValueError, match="predict_split must be 'val' or 'test', got 'train'"):
        Ego4DMQ(root=str(root), predict_split="train")


@pytest.mark.parametrize("split", ["train", "val"])
def test_fit_on_a_malformed_file_prints_one_line(tmp_path, capsys, monkeypatch, split):
    from vidlit.cli import main
    from vidlit.formats import AnnotationError

    root = _root(tmp_path)
    (root / "features").mkdir()
    torch.save(torch.zeros(8, 256), root / "features" / "c1.pt")
    doc = _doc()
    _set("start_time", float("nan"))(doc)
    path = root / f"moments_{split}.json"
    path.write_text(json.dumps(doc))
    argv = ["fit", "--config", "recipes/ego4d_mq.yaml", "--data.init_args.root", str(root),
            "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.logger", "false"]  # fmt: skip
    line = f"{path}: {LABEL}: key 'start_time': Input should be a finite number (got nan)"
    # the command line: one line on stderr, exit status 1
    monkeypatch.setattr("sys.argv", ["vidlit", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"vidlit: error: {line}"
    assert not any("Union" in text or "Traceback" in text for text in err)
    # from Python: the same line as the exception, not wrapped by the parser's link
    with pytest.raises(AnnotationError) as error:
        main(argv)
    assert str(error.value) == line
