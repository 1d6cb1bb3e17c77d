"""One-input builders (``inference_inputs``) of the data modules: bad input is one clear line."""

import numpy as np
import pytest
import torch


def test_infer_nlq_input_errors(tmp_path):
    """No queries, or a window the features do not cover: one line naming the input."""
    from vidlit.data.ego4d_nlq import Ego4DNLQ

    dm = Ego4DNLQ(root=str(tmp_path), feature_dim=8)
    path = tmp_path / "v.pt"
    torch.save(torch.randn(20, 8), path)
    with pytest.raises(ValueError, match="needs non-empty queries"):
        dm.inference_inputs(path, str(path))
    with pytest.raises(ValueError, match="0 <= start < end"):
        dm.inference_inputs(path, str(path), ["where?"], (5.0, 2.0))
    with pytest.raises(ValueError, match="no feature step"):
        dm.inference_inputs(path, str(path), ["where?"], (100.0, 120.0))
    prepared = dm.inference_inputs(path, str(path), ["where is it?", "and this?"])
    batch = prepared.batch
    assert batch["video_ids"] == ["v/texts/0", "v/texts/1"]
    assert batch["queries"] == ["where is it?", "and this?"]
    assert batch["features"].shape == (2, 20, 8) and callable(prepared.submit)


def test_feature_steps_reads_the_header_only(tmp_path):
    """The NLQ default window's length comes from the file's header, for .pt and .npy alike."""
    from vidlit.data.features import feature_steps

    torch.save(torch.randn(13, 4), tmp_path / "a.pt")
    np.save(tmp_path / "b.npy", np.zeros((7, 4), "float32"))
    assert feature_steps(tmp_path / "a.pt") == 13 and feature_steps(tmp_path / "b.npy") == 7
    (tmp_path / "c.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read feature file"):
        feature_steps(tmp_path / "c.pt")


def test_infer_xd_violence_names_missing_files(tmp_path):
    from vidlit.data.xd_violence import XDViolence

    dm = XDViolence(root=str(tmp_path), feature_dim=8, audio_dim=4, num_crops=2)
    crop = tmp_path / "film_label_A__0.npy"
    np.save(crop, np.zeros((3, 8), "float32"))
    with pytest.raises(FileNotFoundError, match=r"film_label_A__1\.npy.*film_label_A__vggish\.npy"):
        dm.inference_inputs(crop, str(crop))
    with pytest.raises(ValueError, match="<video>__<crop>"):
        dm.inference_inputs(tmp_path / "features.pt", "tensor")


def test_infer_refuses_an_option_the_input_does_not_take(tmp_path):
    """``--texts`` on an XD-Violence model, ``--audio`` without it on AVE: one line naming the option."""
    from vidlit.data.ave import AVEDataModule
    from vidlit.data.xd_violence import XDViolence
    from vidlit.inference import Predictor

    crop = tmp_path / "film_label_A__0.npy"
    np.save(crop, np.zeros((3, 8), "float32"))
    predictor = Predictor.__new__(Predictor)  # the input side only: no model is run
    predictor.datamodule, predictor.backbone, predictor.device = XDViolence(root=str(tmp_path)), None, "cpu"
    with pytest.raises(ValueError, match="XDViolence: --texts does not apply"):
        predictor.prepare(crop, texts=["a query"])
    with pytest.raises(ValueError, match="--start / --end does not apply"):
        predictor.prepare(crop, window=(0.0, 1.0))

    predictor.datamodule = AVEDataModule(root=str(tmp_path), synthetic=False, feature_dim=8, audio_dim=4)
    with pytest.raises(ValueError, match="--audio"):
        predictor.prepare(crop)
    np.save(tmp_path / "a.npy", np.zeros((10, 4), "float32"))
    np.save(tmp_path / "v.npy", np.zeros((10, 7, 7, 8), "float32"))
    clip = predictor.prepare(tmp_path / "v.npy", audio=tmp_path / "a.npy")
    assert clip.batch["visual"].shape == (1, 10, 7, 7, 8) and clip.batch["audio"].shape == (1, 10, 4)
    with pytest.raises(ValueError, match=r"must be \[10, 4\]"):
        predictor.prepare(tmp_path / "v.npy", audio=tmp_path / "v.npy")


@pytest.mark.parametrize("family", ["ego4d_mq", "ego4d_nlq"])
def test_infer_reads_a_feature_file_once(family, tmp_path, monkeypatch):
    """MQ's duration and NLQ's default window come without a second full read of the features."""
    import importlib

    module = importlib.import_module(f"vidlit.data.{family}")
    reads = []
    load = module.load_feature_file
    monkeypatch.setattr(module, "load_feature_file", lambda *a, **k: reads.append(a[0]) or load(*a, **k))
    path = tmp_path / "clip.pt"
    torch.save(torch.randn(12, 8), path)
    if family == "ego4d_mq":
        dm = module.Ego4DMQ(root=str(tmp_path), feature_dim=8, class_names=["a", "b"])
        batch = dm.inference_inputs(path, str(path)).batch
        assert float(batch["duration"][0]) == pytest.approx(12 * dm.step_sec)
    else:
        dm = module.Ego4DNLQ(root=str(tmp_path), feature_dim=8)
        batch = dm.inference_inputs(path, str(path), ["where?", "when?"]).batch
        assert batch["features"].shape == (2, 12, 8)
    assert reads == [path]


def test_a_folder_or_a_file_that_is_no_checkpoint_is_named(tmp_path):
    """A folder given as the video, a video given as the checkpoint: one line saying which."""
    from pathlib import Path

    from vidlit.inference import Predictor, _build, load

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "video_cls.yaml"
    module, datamodule = _build(recipe)
    (tmp_path / "clips").mkdir()
    with pytest.raises(FileNotFoundError, match="clips: a folder, not a file"):
        Predictor(module, datamodule).prepare(tmp_path / "clips")
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    with pytest.raises(ValueError, match=r"clip.mp4: not a checkpoint \(not the zip archive"):
        load(tmp_path / "clip.mp4", config=recipe)
