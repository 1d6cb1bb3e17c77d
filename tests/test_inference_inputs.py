"""``vidlit.inference`` input builders for heads on stored features: bad input is one clear line."""

import numpy as np
import pytest
import torch


def test_infer_nlq_input_errors(tmp_path):
    """No queries, or a window the features do not cover: one line naming the input."""
    from vidlit.data.ego4d_nlq import Ego4DNLQ
    from vidlit.inference import _Given, _nlq_input

    dm = Ego4DNLQ(root=str(tmp_path), feature_dim=8)
    path = tmp_path / "v.pt"
    torch.save(torch.randn(20, 8), path)
    with pytest.raises(ValueError, match="needs non-empty queries"):
        _nlq_input(dm, path, "v", str(path), _Given())
    with pytest.raises(ValueError, match="0 <= start < end"):
        _nlq_input(dm, path, "v", str(path), _Given(["where?"], (5.0, 2.0)))
    with pytest.raises(ValueError, match="no feature step"):
        _nlq_input(dm, path, "v", str(path), _Given(["where?"], (100.0, 120.0)))
    batch, submit = _nlq_input(dm, path, "v", str(path), _Given(["where is it?", "and this?"]))
    assert batch["video_ids"] == ["v/texts/0", "v/texts/1"] and batch["queries"] == [
        "where is it?",
        "and this?",
    ]
    assert batch["features"].shape == (2, 20, 8) and callable(submit)


def test_infer_xd_violence_names_missing_files(tmp_path):
    from vidlit.data.xd_violence import XDViolence
    from vidlit.inference import _Given, _xd_violence_input

    dm = XDViolence(root=str(tmp_path), feature_dim=8, audio_dim=4, num_crops=2)
    crop = tmp_path / "film_label_A__0.npy"
    np.save(crop, np.zeros((3, 8), "float32"))
    with pytest.raises(FileNotFoundError, match=r"film_label_A__1\.npy.*film_label_A__vggish\.npy"):
        _xd_violence_input(dm, crop, crop.stem, str(crop), _Given())
    with pytest.raises(ValueError, match="<video>__<crop>"):
        _xd_violence_input(dm, tmp_path / "features.pt", "features", "tensor", _Given())
    with pytest.raises(ValueError, match="--texts does not apply"):
        _xd_violence_input(dm, crop, crop.stem, str(crop), _Given(texts=["a query"]))
