import re

import h5py
import numpy as np
import pytest
import torch

from vidlit.data.ave import (
    AVE_CATEGORIES,
    HEADER,
    AVEDataModule,
    read_ave_annotations,
    segment_labels_from_events,
    video_order,
)
from vidlit.data.synth.ave import write_ave
from vidlit.formats import AnnotationError

BG = 28
CLASSES = [*AVE_CATEGORIES, "background"]


@pytest.fixture(scope="module")
def ave_root(tmp_path_factory):
    return write_ave(
        tmp_path_factory.mktemp("ave"),
        num_categories=3,
        videos_per_category=(2, 1, 1),
        num_noisy=2,
        visual_dim=16,
    )


def test_annotation_parsing_and_segment_labels(tmp_path):
    path = tmp_path / "Annotations.txt"
    path.write_text(
        "Category&VideoID&Quality&StartTime&EndTime\n"
        "Church bell&RUhOCu3LNXM&good&0&10\n"
        "Bark&3jS8tWfLJxI&good&7&9\n"
        "Church bell&VWi2ENBuTbw&good&0&0\n"
        "Bark&3jS8tWfLJxI&good&1&3\n"  # a second row of the same video
    )
    events = read_ave_annotations(path)
    assert [e.video_id for e in events][:2] == ["RUhOCu3LNXM", "3jS8tWfLJxI"] and events[1].line == 3
    assert video_order(events) == ["RUhOCu3LNXM", "3jS8tWfLJxI", "VWi2ENBuTbw"]
    labels = segment_labels_from_events(events, CLASSES, path)
    assert labels["RUhOCu3LNXM"].tolist() == [0] * 10
    # seconds [t, t + 1) with start <= t < end; "Bark" is class 2
    assert labels["3jS8tWfLJxI"].tolist() == [BG, 2, 2, BG, BG, BG, BG, 2, 2, BG]
    assert labels["VWi2ENBuTbw"].tolist() == [BG] * 10  # a zero-length event is all background


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("Bark&x&good&3", r"line 2: expected 'Category&VideoID"),
        ("Bark&x&good&3&11", r"line 2: need 0 <= StartTime <= EndTime <= 10, got 3..11"),
        ("Bark&x&good&5&3", r"line 2: need 0 <= StartTime <= EndTime <= 10, got 5..3"),
        ("Bark&x&good&-1&3", r"line 2: need 0 <= StartTime"),
        ("Bark&x&good&a&5", r"line 2: key 'start': must be whole seconds, got 'a'"),
        ("Bark&x&good&1.5&5", r"line 2: key 'start': must be whole seconds, got '1.5'"),
        ("Bark&&good&1&5", r"line 2: key 'video_id': String should have at least 1 character"),
        ("&x&good&1&5", r"line 2: key 'category': String should have at least 1 character"),
        ("Kazoo&x&good&1&5", r"line 2: key 'category': unknown event category 'Kazoo'"),
    ],
)
def test_annotation_errors_name_file_line_and_key(tmp_path, line, match):
    path = tmp_path / "Annotations.txt"
    path.write_text(f"Bark&y&good&0&1\n{line}\n")
    with pytest.raises(AnnotationError, match=rf"^{re.escape(str(path))}: {match}") as err:
        read_ave_annotations(path, CLASSES)
    assert "\n" not in str(err.value)


def test_a_missing_annotation_file_is_one_line(tmp_path):
    path = tmp_path / "trainSet.txt"
    with pytest.raises(FileNotFoundError, match=rf"^{re.escape(str(path))}: AVE annotation file not found$"):
        read_ave_annotations(path)


def test_unknown_category_and_overlap(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("Kazoo&x&good&0&2\n")
    with pytest.raises(
        AnnotationError, match="a.txt: line 1: key 'category': unknown event category 'Kazoo'"
    ):
        segment_labels_from_events(read_ave_annotations(path), CLASSES, path)
    path.write_text("Bark&x&good&0&4\nCat&x&good&3&5\n")
    with pytest.raises(
        AnnotationError, match=r"a.txt: line 2: video x has two different events on second\(s\) \[3\]"
    ):
        segment_labels_from_events(read_ave_annotations(path), CLASSES, path)
    path.write_text(HEADER + "\n")
    with pytest.raises(AnnotationError, match="a.txt: no event line"):
        read_ave_annotations(path)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_ave_annotations(tmp_path / "missing.txt")


def test_category_text_must_agree_with_labels_h5(ave_root, tmp_path):
    """labels.h5 wins for the labels, but a category text that contradicts it is an error, not ignored."""
    import shutil

    root = tmp_path / "ave"
    shutil.copytree(ave_root, root)
    lines = (root / "Annotations.txt").read_text().splitlines()
    category, rest = lines[1].split("&", 1)
    other = next(c for c in AVE_CATEGORIES[:3] if c != category)
    lines[1] = f"{other}&{rest}"
    (root / "Annotations.txt").write_text("\n".join(lines) + "\n")
    dm = AVEDataModule(root=str(root), feature_dim=16)
    with pytest.raises(
        AnnotationError,
        match=rf"Annotations.txt: line 2: key 'category': '{re.escape(other)}' but labels.h5 row 0",
    ):
        dm.setup("fit")
    lines[1] = f"Kazoo&{rest}"
    (root / "Annotations.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        AnnotationError, match=r"Annotations.txt: line 2: key 'category': unknown event category 'Kazoo'"
    ):
        AVEDataModule(root=str(root), feature_dim=16).setup("fit")


def test_official_h5_layout(ave_root):
    with h5py.File(ave_root / "visual_feature.h5") as f:
        assert f["avadataset"].shape == (12, 10, 7, 7, 16)
    with h5py.File(ave_root / "audio_feature.h5") as f:
        assert f["avadataset"].shape == (12, 10, 128)
    with h5py.File(ave_root / "labels.h5") as f:
        labels = f["avadataset"][()]
    assert labels.shape == (12, 10, 29) and (labels.sum(-1) == 1).all()
    with h5py.File(ave_root / "test_order.h5") as f:
        assert f["order"][()].tolist() == [3, 7, 11]
    with h5py.File(ave_root / "labels_noisy.h5") as f:
        assert f["avadataset"][()][:, BG].tolist() == [1.0, 1.0]
    # the annotation text matches labels.h5
    events = read_ave_annotations(ave_root / "Annotations.txt")
    derived = segment_labels_from_events(events, CLASSES)
    assert np.stack([derived[v] for v in video_order(events)]).tolist() == labels.argmax(-1).tolist()


def test_full_and_weak_batches(ave_root):
    full = AVEDataModule(root=str(ave_root), feature_dim=16, batch_size=4)
    full.setup("fit")
    assert full.num_classes == 29
    assert [len(full.dataset(s)) for s in ("train", "val", "test")] == [6, 3, 3]
    batch = next(iter(full.val_dataloader()))
    assert batch["audio"].shape == (3, 10, 128) and batch["visual"].shape == (3, 10, 7, 7, 16)
    assert torch.equal(batch["segment_labels"], torch.stack([t["labels"] for t in batch["targets"]]))

    weak = AVEDataModule(root=str(ave_root), feature_dim=16, supervision="weak", batch_size=16)
    weak.setup("fit")
    assert len(weak.dataset("train")) == 8  # + the 2 background-only videos
    train = next(iter(weak.train_dataloader()))
    assert "segment_labels" not in train  # the loss cannot see segment labels
    noisy = [i for i, v in enumerate(train["video_ids"]) if v.startswith("noisy")]
    assert len(noisy) == 2 and (train["video_labels"][noisy, BG] == 1).all()
    assert (train["video_labels"][noisy].sum(-1) == 1).all()
    val = next(iter(weak.val_dataloader()))
    assert "segment_labels" not in val and val["targets"][0]["labels"].shape == (10,)


def test_labels_and_splits_from_text_alone(ave_root, tmp_path):
    """Without labels.h5 and the order files the reader derives both from the annotation text."""
    root = tmp_path / "text_only"
    root.mkdir()
    for name in (
        "Annotations.txt",
        "trainSet.txt",
        "valSet.txt",
        "testSet.txt",
        "audio_feature.h5",
        "visual_feature.h5",
    ):
        (root / name).write_bytes((ave_root / name).read_bytes())
    from_text = AVEDataModule(root=str(root), feature_dim=16, synthetic=False, batch_size=8)
    from_h5 = AVEDataModule(root=str(ave_root), feature_dim=16, batch_size=8)
    a, b = (next(iter(dm.test_dataloader())) for dm in (from_text, from_h5))
    assert a["video_ids"] == b["video_ids"]
    assert torch.equal(a["segment_labels"], b["segment_labels"])
    assert torch.equal(a["video_labels"], b["video_labels"])


def test_layout_errors(ave_root, tmp_path):
    with pytest.raises(ValueError, match=r"visual_feature.h5: expected \[12, 10, 7, 7, 512\]"):
        AVEDataModule(root=str(ave_root)).setup("fit")
    with pytest.raises(ValueError, match="supervision"):
        AVEDataModule(supervision="semi")
    with pytest.raises(FileNotFoundError, match="audio_feature.h5: not found"):
        AVEDataModule(root=str(tmp_path), synthetic=False).setup("fit")
    root = tmp_path / "bad"
    root.mkdir()
    for name in ("audio_feature.h5", "visual_feature.h5", "labels.h5"):
        (root / name).write_bytes((ave_root / name).read_bytes())
    with h5py.File(root / "train_order.h5", "w") as f:
        f.create_dataset("order", data=np.array([0, 99]))
    with pytest.raises(ValueError, match=r"train_order.h5: row index 99 outside \[0, 12\)"):
        AVEDataModule(root=str(root), feature_dim=16, synthetic=False).setup("fit")
    # a file that is not HDF5 (a truncated download, an HTML error page): one line naming it
    (root / "train_order.h5").write_text("<html>Access denied</html>")
    with pytest.raises(AnnotationError, match=r"train_order.h5: not a readable HDF5 file") as err:
        AVEDataModule(root=str(root), feature_dim=16, synthetic=False).setup("fit")
    assert "\n" not in str(err.value)
    (root / "audio_feature.h5").unlink()
    (root / "audio_feature.h5").mkdir()  # h5py's message for a folder spans two lines
    with pytest.raises(AnnotationError, match=r"audio_feature.h5: not a readable HDF5 file") as err:
        AVEDataModule(root=str(root), feature_dim=16, synthetic=False).setup("fit")
    assert "\n" not in str(err.value)


def test_synthetic_features_are_gzip_h5_chunked_per_video(ave_root):
    # the sample data stays small (about 58 MB at the official 512 channels) and a row reads alone
    for name in ("audio_feature", "visual_feature", "audio_feature_noisy", "visual_feature_noisy"):
        with h5py.File(ave_root / f"{name}.h5", "r") as f:
            data = f["avadataset"]
            assert data.compression == "gzip" and data.chunks == (1, *data.shape[1:]), name
            assert data.dtype == np.float32
