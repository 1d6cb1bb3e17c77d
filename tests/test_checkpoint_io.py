import os
import pickle

import pytest
import torch

from vidlit.checkpoint_io import AtomicCheckpointIO


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_round_trip_and_no_temporary_left(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "sub" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 2}, path)
    assert os.listdir(path.parent) == ["last.ckpt"]
    loaded = io.load_checkpoint(path)
    assert loaded["epoch"] == 2 and torch.equal(loaded["state_dict"]["w"], torch.ones(3))


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1}, path)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        io.save_checkpoint({"epoch": 2, "bad": lambda: None}, path)  # torch.save fails mid-way
    assert io.load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_load_is_weights_only(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"payload": _Evil()}, path)
    with pytest.raises(pickle.UnpicklingError):
        AtomicCheckpointIO().load_checkpoint(path)


def test_missing_checkpoint_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.ckpt"):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "nothing.ckpt")


def test_checkpoint_has_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        AtomicCheckpointIO().save_checkpoint({"epoch": 0}, tmp_path / "a.ckpt")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.ckpt").stat().st_mode & 0o777 == 0o644
