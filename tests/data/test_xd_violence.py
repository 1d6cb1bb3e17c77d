"""XD-Violence lists, annotations, frame ground truth and the data module, on the synthetic layout."""

import random
import re
import shutil

import numpy as np
import pytest
import torch

from vidlit.data.synth.xd_violence import write_xd_violence
from vidlit.data.xd_violence import (
    XDViolence,
    frame_labels,
    read_annotations,
    read_feature_lists,
    uniform_extract,
)
from vidlit.formats import AnnotationError

C, A = 16, 8


@pytest.fixture(scope="module")
def xd_root(tmp_path_factory):
    return write_xd_violence(
        tmp_path_factory.mktemp("xd") / "data", num_train=4, num_test=4, feature_dim=C, audio_dim=A, seed=3
    )


def test_synthetic_data_is_in_the_official_layout(xd_root):
    rgb = (xd_root / "list" / "rgb_test.list").read_text().splitlines()
    assert len(rgb) == 20 and [line[-7:] for line in rgb[:5]] == [f"__{c}.npy" for c in range(5)]
    assert all(
        line.endswith("__vggish.npy")
        for line in (xd_root / "list" / "audio_test.list").read_text().splitlines()
    )
    annotated = read_annotations(xd_root / "annotations.txt")
    videos = read_feature_lists(xd_root / "list" / "rgb_test.list", xd_root / "list" / "audio_test.list")
    assert set(annotated) == {v.name for v in videos if v.violent}  # normal videos have no line
    assert {v.violent for v in videos} == {True, False}
    assert all(v.violent == ("_label_A" not in v.name) for v in videos)
    # list/gt.npy as make_gt.py writes it: 16 frames per snippet, concatenated in list order
    gt = np.load(xd_root / "list" / "gt.npy")
    ours = [frame_labels(annotated.get(v.name, []), np.load(v.rgb[0]).shape[0]) for v in videos]
    assert np.array_equal(gt, torch.cat(ours).numpy())


def test_frame_labels_are_half_open_ranges_cut_to_the_snippets():
    labels = frame_labels([(3, 5), (30, 40)], num_snippets=2)
    assert labels.shape == (32,) and labels.nonzero().flatten().tolist() == [3, 4, 30, 31]


def test_uniform_extract_matches_the_official_linspace():
    features = torch.arange(450.0)[:, None]
    official = np.linspace(0, 449, 200, dtype=np.uint16)  # utils.uniform_extract
    assert uniform_extract(features, 200).flatten().long().tolist() == official.tolist()


def test_audio_pairs_by_name_in_any_order(xd_root, tmp_path):
    lines = (xd_root / "list" / "audio.list").read_text().splitlines()
    random.Random(0).shuffle(lines)
    shuffled = tmp_path / "audio.list"
    shuffled.write_text("\n".join(lines) + "\n")
    videos = read_feature_lists(xd_root / "list" / "rgb.list", shuffled, root=xd_root)
    assert all(v.audio.name == f"{v.name}__vggish.npy" for v in videos)
    assert all([p.name for p in v.rgb] == [f"{v.name}__{c}.npy" for c in range(5)] for v in videos)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: lines[:4] + lines[5:], r"line 1: video .* lists crops \[0, 1, 2, 3\], expected 0..4"),
        (
            lambda lines: [lines[0].replace("__0.npy", ".npy")] + lines[1:],
            r"line 1: .* not named <video>__<crop>",
        ),
        (lambda lines: lines + [lines[0]], r"line 21: crop 0 of .* listed twice"),
    ],
)
def test_bad_rgb_list_names_the_line(xd_root, tmp_path, edit, message):
    bad = tmp_path / "rgb.list"
    bad.write_text("\n".join(edit((xd_root / "list" / "rgb.list").read_text().splitlines())) + "\n")
    with pytest.raises(ValueError, match=message):
        read_feature_lists(bad, xd_root / "list" / "audio.list", root=xd_root)


def test_video_without_audio(xd_root, tmp_path):
    audio = tmp_path / "audio.list"
    audio.write_text("\n".join((xd_root / "list" / "audio.list").read_text().splitlines()[1:]) + "\n")
    with pytest.raises(ValueError, match="no audio file .*__vggish.npy"):
        read_feature_lists(xd_root / "list" / "rgb.list", audio, root=xd_root)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "v_label_B1-0-0 10 20 30",
            r"line 2 \(v_label_B1-0-0\): key 'ranges': expected pairs of frame numbers",
        ),
        ("v_label_B1-0-0 10 2x", r"line 2 \(v_label_B1-0-0\).ranges\[0\]\[1\]: .*valid integer.*'2x'"),
        ("v_label_B1-0-0 10 1.5", r"line 2 \(v_label_B1-0-0\).ranges\[0\]\[1\]: .*valid integer.*'1.5'"),
        ("v_label_B1-0-0 20 10", r"line 2 \(v_label_B1-0-0\): invalid frame range 20 10"),
        ("v_label_B1-0-0 -5 10", r"line 2 \(v_label_B1-0-0\): invalid frame range -5 10"),
        ("v_label_B1-0-0", r"line 2 \(v_label_B1-0-0\): expected pairs of frame numbers"),
        ("n_label_A 1 5", r"line 2 \(n_label_A\): video 'n_label_A' is named normal"),
        ("ok_label_B1-0-0 1 2", r"line 2 \(ok_label_B1-0-0\): key 'video': .*annotated twice"),
    ],
)
def test_bad_annotations_name_the_line(tmp_path, line, message):
    path = tmp_path / "annotations.txt"
    path.write_text(f"ok_label_B1-0-0 1 2\n{line}\n")
    with pytest.raises(AnnotationError, match=rf"^{re.escape(str(path))}: {message}") as err:
        read_annotations(path)
    assert "\n" not in str(err.value)


def test_empty_annotations_are_an_error_not_ap_zero(tmp_path):
    path = tmp_path / "annotations.txt"
    path.write_text("\n")
    with pytest.raises(AnnotationError, match=r"annotations.txt: no annotated video: .*\(AP 0.0\)"):
        read_annotations(path)


def test_violent_test_video_without_annotation_is_an_error(xd_root, tmp_path):
    import shutil

    root = tmp_path / "xd"
    shutil.copytree(xd_root, root)
    lines = (root / "annotations.txt").read_text().splitlines()
    (root / "annotations.txt").write_text("\n".join(lines[1:]) + "\n")
    data = XDViolence(str(root), feature_dim=C, audio_dim=A)
    with pytest.raises(AnnotationError, match=r"annotations.txt: no line for violent test video '.*' \(1 of"):
        data.setup("test")


def test_data_module_trains_on_video_labels_and_evaluates_frames(xd_root, tmp_path):
    data = XDViolence(str(xd_root), feature_dim=C, audio_dim=A, batch_size=6, eval_batch_size=2)
    data.setup("fit")
    assert len(data.train_dataloader()) == 4 and len(data.datasets["train"]) == 20 and data.num_classes == 1
    batch = next(iter(data.train_dataloader()))
    b, t, c = batch["features"].shape
    assert (b, c) == (6, C) and batch["audio"].shape == (6, t, A) and batch["mask"].shape == (6, t)
    # weak supervision: nothing frame-level reaches training
    assert all(set(target) == {"video_id", "label"} for target in batch["targets"])
    assert batch["labels"].tolist() == [float("_label_A" not in v) for v in batch["video_ids"]]
    val = next(iter(data.val_dataloader()))
    assert val["features"].shape[:2] == (2, 5) and val["features"].shape[-1] == C
    lengths = val["mask"].sum(1).tolist()
    assert [len(target["frame_labels"]) for target in val["targets"]] == [16 * n for n in lengths]
    # the official concatenated gt.npy gives the same frame labels
    official = XDViolence(
        str(xd_root), feature_dim=C, audio_dim=A, ground_truth="list/gt.npy", eval_batch_size=2
    )
    official.setup("validate")
    other = next(iter(official.val_dataloader()))
    for ours, theirs in zip(val["targets"], other["targets"]):
        assert torch.equal(ours["frame_labels"], theirs["frame_labels"])


def test_audio_one_snippet_short_drops_the_last_rgb_snippet(xd_root, tmp_path):
    root = shutil.copytree(xd_root, tmp_path / "data")
    video = read_feature_lists(root / "list" / "rgb_test.list", root / "list" / "audio_test.list")[0]
    audio = np.load(video.audio)
    np.save(video.audio, audio[:-1])
    data = XDViolence(str(root), feature_dim=C, audio_dim=A)
    data.setup("test")
    sample = data.datasets["test"][0]
    assert sample["features"].shape == (5, len(audio) - 1, C) and len(
        sample["target"]["frame_labels"]
    ) == 16 * (len(audio) - 1)
    np.save(video.audio, audio[:-3])
    with pytest.raises(ValueError, match="must cover the same snippets"):
        data.datasets["test"][0]


def test_missing_feature_files_are_reported(xd_root, tmp_path):
    data = XDViolence(str(xd_root), feature_dim=C, audio_dim=A, feature_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="listed feature files do not exist"):
        data.setup("fit")


def test_missing_feature_files_are_skipped_unless_strict(xd_root, tmp_path, caplog):
    features = tmp_path / "features"  # every feature file by name, as feature_dir reads them
    features.mkdir()
    for path in xd_root.rglob("*.npy"):
        (features / path.name).symlink_to(path)
    train = read_feature_lists(xd_root / "list" / "rgb.list", xd_root / "list" / "audio.list", xd_root)
    (features / train[0].rgb[2].name).unlink()  # one crop of one training video is missing
    with pytest.raises(FileNotFoundError, match="1 listed feature files do not exist"):
        XDViolence(str(xd_root), feature_dim=C, audio_dim=A, feature_dir=str(features)).videos("train")
    lenient = XDViolence(str(xd_root), feature_dim=C, audio_dim=A, feature_dir=str(features), strict=False)
    with caplog.at_level("WARNING"):
        kept = lenient.videos("train")
    assert [v.name for v in kept] == [v.name for v in train[1:]]
    assert "skipping those videos (strict=False)" in caplog.text
    # the official gt.npy is cut by every test video's length: a missing one always raises
    (features / lenient.videos("test")[0].audio.name).unlink()
    kwargs = dict(feature_dim=C, audio_dim=A, feature_dir=str(features), strict=False)
    assert len(XDViolence(str(xd_root), **kwargs).videos("test")) == 3  # annotations.txt: by name
    with pytest.raises(FileNotFoundError, match="gt.npy needs every test video"):
        XDViolence(str(xd_root), ground_truth="list/gt.npy", **kwargs).videos("test")


def test_each_listed_feature_file_is_checked_once(xd_root, tmp_path, monkeypatch):
    """An incomplete video's files were stat'ed twice (once to find it, once to list what it lacks)."""
    import pathlib

    features = tmp_path / "features"
    features.mkdir()
    for path in xd_root.rglob("*.npy"):
        (features / path.name).symlink_to(path)
    train = read_feature_lists(xd_root / "list" / "rgb.list", xd_root / "list" / "audio.list", xd_root)
    (features / train[1].rgb[3].name).unlink()  # the last-but-one crop: the others come first
    (features / train[2].audio.name).unlink()
    checked = []
    real_is_file = pathlib.Path.is_file

    def counting_is_file(self):
        if self.parent == features:
            checked.append(self.name)
        return real_is_file(self)

    monkeypatch.setattr(pathlib.Path, "is_file", counting_is_file)
    data = XDViolence(str(xd_root), feature_dim=C, audio_dim=A, feature_dir=str(features), strict=False)
    kept = data.videos("train")
    listed = [p.name for v in train for p in (*v.rgb, v.audio)]
    assert sorted(checked) == sorted(listed)  # every listed file, once
    assert [v.name for v in kept] == [v.name for i, v in enumerate(train) if i not in (1, 2)]
