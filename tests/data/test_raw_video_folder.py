"""RawVideoFolderDataModule: the shared setup of the Ego4D STA, SCOD and FHP raw-video readers."""

import json
import logging
import shutil

import pytest
import torch
from einops import rearrange

from vidlit.data.ego4d_fhp import Ego4DFHP
from vidlit.data.ego4d_scod import Ego4DSCOD
from vidlit.data.ego4d_sta import Ego4DSTA
from vidlit.data.raw_video import RawVideoFolderDataModule
from vidlit.data.synth.ego4d_fhp import write_ego4d_fhp
from vidlit.data.synth.ego4d_scod import write_ego4d_scod
from vidlit.data.synth.ego4d_sta import write_ego4d_sta
from vidlit.data.transforms import IMAGENET_MEAN, IMAGENET_STD

READERS = {
    # reader, writer of a small sample, its val file, keyword arguments
    "sta": (Ego4DSTA, lambda p: write_ego4d_sta(p, num_train=4, num_val=3, num_test=1), "fho_sta_val.json",
            {"num_frames": 4}),
    "scod": (Ego4DSCOD, lambda p: write_ego4d_scod(p, num_train=3, num_val=3, num_test=1),
             "fho_scod_val.json", {"num_frames": 4}),
    "fhp": (Ego4DFHP, lambda p: write_ego4d_fhp(p, num_train=3, num_val=3, num_test=1), "fho_hands_val.json",
            {"num_frames": 4}),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(READERS))
def reader(request, tmp_path_factory):
    cls, write, val_file, kwargs = READERS[request.param]
    root = write(tmp_path_factory.mktemp(request.param) / "data")
    return cls, root, val_file, kwargs


def test_readers_share_the_base(reader):
    cls, root, _, kwargs = reader
    dm = cls(str(root), size=32, **kwargs)
    assert isinstance(dm, RawVideoFolderDataModule)
    assert dm.root == root and dm.video_dir.parent == root and dm.strict
    assert dm.files["test"] == dm.files["val"]  # test and predict default to val
    assert dm.files["predict"] == dm.files["val"]


def test_annotations_are_read_once_per_split(reader, tmp_path):
    cls, root, val_file, kwargs = reader
    copy = shutil.copytree(root, tmp_path / "data")
    dm = cls(str(copy), size=32, **kwargs)
    dm.setup("validate")
    first = dm.datasets["val"]
    (copy / val_file).unlink()  # a second setup does not read the file again
    dm.setup("validate")
    assert dm.annotations("val") is dm.annotations("val")
    assert len(dm.datasets["val"]) == len(first) > 0


def test_a_file_that_fails_is_read_again(reader, tmp_path):
    cls, root, val_file, kwargs = reader
    copy = shutil.copytree(root, tmp_path / "data")
    good = (copy / val_file).read_text()
    (copy / val_file).write_text("{")
    dm = cls(str(copy), size=32, **kwargs)
    with pytest.raises(ValueError, match=val_file):
        dm.setup("validate")
    (copy / val_file).write_text(good)
    dm.setup("validate")
    assert len(dm.datasets["val"]) > 0


def test_batches_are_the_decoded_frames_normalized_on_the_device(reader):
    cls, root, _, kwargs = reader
    dm = cls(str(root), size=32, batch_size=2, **kwargs)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    frames = batch["video"].clone()  # uint8 [b, t, 32, 32, 3] from the decoder
    assert frames.dtype == torch.uint8 and frames.shape[2:] == (32, 32, 3)
    video = dm.on_after_batch_transfer(batch, 0)["video"]
    mean, std = (
        torch.tensor(IMAGENET_MEAN)[:, None, None, None],
        torch.tensor(IMAGENET_STD)[:, None, None, None],
    )
    expected = (rearrange(frames, "b t h w c -> b c t h w").float() / 255 - mean) / std
    torch.testing.assert_close(video, expected)


def test_synthetic_sample_is_written_and_announced(tmp_path, caplog):
    root = tmp_path / "scod"
    with caplog.at_level(logging.WARNING, logger="vidlit.data.ego4d_scod"):
        dm = Ego4DSCOD(str(root), synthetic=True)
    assert "writing the SYNTHETIC Ego4D SCOD sample dataset there" in caplog.text
    assert dm.files["train"].is_file() and dm.video_dir.is_dir()


def test_a_bad_argument_raises_before_the_sample_is_written(tmp_path):
    with pytest.raises(ValueError, match="must be positive"):
        Ego4DSTA(str(tmp_path / "sta"), synthetic=True, num_frames=0)
    with pytest.raises(ValueError, match="frame_field"):
        Ego4DSCOD(str(tmp_path / "scod"), synthetic=True, frame_field="frame")
    assert not (tmp_path / "sta").exists() and not (tmp_path / "scod").exists()


def test_drop_missing_raises_when_strict_else_drops(tmp_path, caplog):
    root = write_ego4d_sta(tmp_path / "data", num_train=4, num_val=3, num_test=1)
    uids = [a["video_uid"] for a in json.loads((root / "fho_sta_val.json").read_text())["annotations"]]
    (root / "videos" / f"{uids[0]}.mp4").unlink()
    lost = uids.count(uids[0])
    with pytest.raises(FileNotFoundError, match=f"no video for {lost} of {len(uids)} val frames"):
        Ego4DSTA(str(root), num_frames=4).dataset("val")
    with caplog.at_level(logging.WARNING, logger="vidlit.data.base"):
        kept = Ego4DSTA(str(root), num_frames=4, strict=False).dataset("val")
    assert len(kept) == len(uids) - lost and "strict=False" in caplog.text
    assert all(item.video_uid != uids[0] for item in kept.frames)
