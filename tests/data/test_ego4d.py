import json
import shutil

import numpy as np
import pytest
import torch

from vidlit.data.ego4d import (
    Ego4DMomentQueries,
    collate_temporal_features,
    read_moment_annotations,
    write_moment_submission,
)


def _annotation(tmp_path, labels, name="moments_train.json"):
    doc = {
        "videos": [
            {
                "video_uid": "v1",
                "split": "train",
                "clips": [
                    {
                        "clip_uid": "c1",
                        "video_start_sec": 10.0,
                        "video_end_sec": 70.0,
                        "annotations": [{"annotator_uid": "a", "labels": labels}],
                    }
                ],
            }
        ]
    }
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_reads_official_layout_and_dedups_annotators(tmp_path):
    label = {"start_time": 1.0, "end_time": 5.5, "label": "wash_hands", "primary": True}
    secondary = {"start_time": 1.0, "end_time": 5.5, "label": "use_phone", "primary": False}
    path = _annotation(tmp_path, [label, label, secondary])
    (clip,) = read_moment_annotations(path)
    assert clip.clip_uid == "c1" and clip.video_uid == "v1" and clip.duration == 60.0
    assert clip.moments == [(1.0, 5.5, "use_phone"), (1.0, 5.5, "wash_hands")]
    (clip,) = read_moment_annotations(path, primary_only=True)
    assert clip.moments == [(1.0, 5.5, "wash_hands")]


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "moments_train.json"
    path.write_text('{"videos": [\n  {"clips": [}\n]}')
    with pytest.raises(ValueError, match=r"moments_train.json: line 2 column"):
        read_moment_annotations(path)


def test_missing_key_names_clip(tmp_path):
    path = _annotation(tmp_path, [{"start_time": 1.0, "label": "x", "primary": True}])
    with pytest.raises(
        ValueError, match=r"clip_uid c1\).annotations\[0\].labels\[0\]: missing key 'end_time'"
    ):
        read_moment_annotations(path)


def test_end_before_start_is_rejected(tmp_path):
    path = _annotation(tmp_path, [{"start_time": 4.0, "end_time": 1.0, "label": "x", "primary": True}])
    with pytest.raises(ValueError, match="end_time 1.0 is before start_time 4.0"):
        read_moment_annotations(path)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_moment_annotations(tmp_path / "nope.json")


@pytest.fixture
def mq_copy(mq_root, tmp_path):
    return shutil.copytree(mq_root, tmp_path / "mq")


def test_data_module_batches(mq_root):
    dm = Ego4DMomentQueries(root=str(mq_root), feature_dim=256, batch_size=3)
    assert dm.num_classes == 6 and dm.class_names == sorted(dm.class_names)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    b, t, c = batch["features"].shape
    assert (b, c) == (3, 256)
    assert batch["mask"].sum(1).max() == t
    assert torch.allclose(batch["step_sec"], torch.full((3,), 16 / 30))
    assert torch.allclose(batch["offset_sec"], torch.full((3,), 16 / 30))
    for target, clip in zip(batch["targets"], dm.clips("val")[:3]):
        assert target["video_id"] == clip.clip_uid
        assert target["segments"].shape == (len(clip.moments), 2)
        assert (target["segments"][:, 1] <= clip.duration + 1e-3).all()


def test_missing_feature_file_names_clip(mq_copy):
    clip = read_moment_annotations(mq_copy / "moments_val.json")[3]
    (mq_copy / "features" / f"{clip.clip_uid}.pt").unlink()
    dm = Ego4DMomentQueries(root=str(mq_copy), feature_dim=256)
    with pytest.raises(FileNotFoundError, match=f"1 of 32 val clips, e.g. clip {clip.clip_uid}"):
        dm.setup("validate")
    lenient = Ego4DMomentQueries(root=str(mq_copy), feature_dim=256, strict=False)
    lenient.setup("validate")
    assert len(lenient.datasets["val"]) == 31


def test_wrong_feature_dim_names_file_and_clip(mq_root):
    dm = Ego4DMomentQueries(root=str(mq_root), feature_dim=2304)
    dm.setup("validate")
    clip = dm.clips("val")[0]
    with pytest.raises(
        ValueError,
        match=rf"{clip.clip_uid}.pt \(clip {clip.clip_uid}\): features have dim 256 but feature_dim is 2304",
    ):
        dm.datasets["val"][0]


def test_error_in_dataloader_worker_keeps_the_name(mq_copy):
    clip = read_moment_annotations(mq_copy / "moments_val.json")[0]
    (mq_copy / "features" / f"{clip.clip_uid}.pt").write_bytes(b"not a tensor")
    dm = Ego4DMomentQueries(root=str(mq_copy), feature_dim=256, num_workers=1)
    dm.setup("validate")
    with pytest.raises(
        ValueError, match=f"{clip.clip_uid}.pt \\(clip {clip.clip_uid}\\): cannot read feature file"
    ):
        next(iter(dm.val_dataloader()))


def test_npy_features_are_read(mq_copy):
    clip = read_moment_annotations(mq_copy / "moments_val.json")[0]
    pt = mq_copy / "features" / f"{clip.clip_uid}.pt"
    features = torch.load(pt, weights_only=True)
    np.save(pt.with_suffix(".npy"), features.numpy())
    pt.unlink()
    dm = Ego4DMomentQueries(root=str(mq_copy), feature_dim=256)
    dm.setup("validate")
    assert torch.equal(dm.datasets["val"][0]["features"], features)


def test_training_crop_keeps_moments_in_window(mq_root):
    dm = Ego4DMomentQueries(root=str(mq_root), feature_dim=256, max_steps=64)
    dataset = dm.dataset("train")
    torch.manual_seed(0)
    for i in range(10):
        sample = dataset[i]
        assert sample["features"].shape[0] == 64
        assert sample["duration"] == pytest.approx(64 * 16 / 30)
        assert (sample["segments"] >= 0).all() and (sample["segments"] <= sample["duration"]).all()
    assert dm.dataset("val")[0]["features"].shape[0] > 64  # evaluation is never cropped


def test_collate_pads_and_masks():
    samples = [
        {
            "features": torch.ones(t, 4),
            "video_id": f"c{t}",
            "duration": 1.0,
            "step_sec": 0.5,
            "offset_sec": 0.25,
            "segments": torch.zeros(0, 2),
            "labels": torch.zeros(0, dtype=torch.long),
        }
        for t in (3, 5)
    ]
    batch = collate_temporal_features(samples)
    assert batch["features"].shape == (2, 5, 4)
    assert batch["mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert batch["features"][0, 3:].abs().sum() == 0


def test_submission_json_is_official_layout(tmp_path):
    preds = [
        {
            "video_id": "c1",
            "segments": torch.tensor([[1.0, 2.5]]),
            "labels": torch.tensor([1]),
            "scores": torch.tensor([0.75]),
        },
        {
            "video_id": "c2",
            "segments": torch.zeros(0, 2),
            "labels": torch.zeros(0, dtype=torch.long),
            "scores": torch.zeros(0),
        },
    ]
    path = write_moment_submission(preds, ["a", "b"], tmp_path / "out" / "sub.json")
    doc = json.loads(path.read_text())
    assert doc["version"] == "1.0" and doc["challenge"] == "ego4d_moment_queries"
    assert doc["detect_results"] == {"c1": [{"label": "b", "score": 0.75, "segment": [1.0, 2.5]}], "c2": []}
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_synthetic_data_is_generated_on_first_use(tmp_path, caplog):
    root = tmp_path / "fresh"
    dm = Ego4DMomentQueries(root=str(root), feature_dim=32, synthetic=True)
    assert (root / "moments_train.json").is_file() and dm.num_classes > 1
    assert "SYNTHETIC" in caplog.text
