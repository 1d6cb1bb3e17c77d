import copy
import json
import shutil

import numpy as np
import pytest
import torch

from vidlit.data.ego4d_mq import (
    Ego4DMQ,
    collate_temporal_features,
    read_moment_annotations,
    truncate_moments,
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


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_moment_annotations(tmp_path / "nope.json")


@pytest.fixture
def mq_copy(mq_root, tmp_path):
    return shutil.copytree(mq_root, tmp_path / "mq")


def test_data_module_batches(mq_root):
    dm = Ego4DMQ(root=str(mq_root), feature_dim=256, batch_size=3)
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
    dm = Ego4DMQ(root=str(mq_copy), feature_dim=256)
    with pytest.raises(FileNotFoundError, match=f"1 of 32 val clips, e.g. clip {clip.clip_uid}"):
        dm.setup("validate")
    lenient = Ego4DMQ(root=str(mq_copy), feature_dim=256, strict=False)
    lenient.setup("validate")
    assert len(lenient.datasets["val"]) == 31


def test_wrong_feature_dim_names_file_and_clip(mq_root):
    dm = Ego4DMQ(root=str(mq_root), feature_dim=2304)
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
    dm = Ego4DMQ(root=str(mq_copy), feature_dim=256, num_workers=1)
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
    dm = Ego4DMQ(root=str(mq_copy), feature_dim=256)
    dm.setup("validate")
    assert torch.equal(dm.datasets["val"][0]["features"], features)


def test_training_crop_keeps_moments_in_window(mq_root):
    dm = Ego4DMQ(root=str(mq_root), feature_dim=256, max_steps=64)
    dataset = dm.dataset("train")
    # ActionFormer widens the window by half a receptive field (offset_sec) on each side
    slack = 2 * dm.offset_sec
    for i in range(10):
        sample = dataset[i]
        assert sample["features"].shape[0] == 64
        assert sample["duration"] == pytest.approx(64 * 16 / 30)
        segments = sample["segments"]
        assert (segments >= 0).all() and (segments <= sample["duration"] + slack + 1e-5).all()
        assert len(segments) == len(sample["labels"]) >= 1  # a crop with no moment is re-drawn
    assert dm.dataset("val")[0]["features"].shape[0] > 64  # evaluation is never cropped


def _official_truncate_feats(
    data_dict, max_seq_len, trunc_thresh, offset, crop_ratio=None, max_num_trials=200, randint=None
):
    """ActionFormer's ``truncate_feats`` (libs/datasets/data_utils.py), ported; ``randint`` is
    upstream's ``random.randint`` (injected so both sides draw from one generator)."""
    feat_len = data_dict["feats"].shape[1]
    num_segs = data_dict["segments"].shape[0]
    if feat_len <= max_seq_len:
        if crop_ratio is None:
            return data_dict
        max_seq_len = randint(
            max(round(crop_ratio[0] * feat_len), 1), min(round(crop_ratio[1] * feat_len), feat_len)
        )
        if feat_len == max_seq_len:
            return data_dict
    data_dict = copy.deepcopy(data_dict)
    for _ in range(max_num_trials):
        st = randint(0, feat_len - max_seq_len)
        ed = st + max_seq_len
        window = torch.as_tensor([st, ed], dtype=torch.float32)
        window = window[None].repeat(num_segs, 1)
        left = torch.maximum(window[:, 0] - offset, data_dict["segments"][:, 0])
        right = torch.minimum(window[:, 1] + offset, data_dict["segments"][:, 1])
        inter = (right - left).clamp(min=0)
        area_segs = torch.abs(data_dict["segments"][:, 1] - data_dict["segments"][:, 0])
        inter_ratio = inter / area_segs
        seg_idx = inter_ratio >= trunc_thresh
        if seg_idx.sum().item() > 0:  # has_action
            break
    data_dict["feats"] = data_dict["feats"][:, st:ed].clone()
    data_dict["segments"] = torch.stack((left[seg_idx], right[seg_idx]), dim=1)
    data_dict["segments"] = data_dict["segments"] - st
    data_dict["labels"] = data_dict["labels"][seg_idx].clone()
    return data_dict


@pytest.mark.parametrize("seed", range(6))
def test_truncate_moments_matches_actionformer(seed):
    g = torch.Generator().manual_seed(seed)
    num_steps = int(torch.randint(40, 200, (), generator=g))
    n = int(torch.randint(1, 6, (), generator=g))
    starts = torch.rand(n, generator=g) * num_steps - 3  # small negative starts occur upstream too
    segments = torch.stack([starts, starts + 0.5 + torch.rand(n, generator=g) * 40], dim=1)
    if seed == 5:
        segments[0, 1] = segments[0, 0]  # a zero-length moment: 0 / 0, never kept
    labels = torch.arange(n)
    max_steps = 64 if seed % 2 else 256  # crop long clips, or crop_ratio-crop short ones
    for thresh in (0.3, 0.5, 0.9):
        rng_ours, rng_ref = np.random.default_rng(seed), np.random.default_rng(seed)
        crop = truncate_moments(num_steps, segments, max_steps, thresh, 1.0, rng_ours, (0.9, 1.0))
        feats = torch.arange(num_steps, dtype=torch.float32)[None]
        ref = _official_truncate_feats(
            {"feats": feats, "segments": segments, "labels": labels}, max_steps, thresh, 1.0, (0.9, 1.0),
            randint=lambda a, b, rng=rng_ref: int(rng.integers(a, b + 1)),
        )  # fmt: skip
        if crop is None:
            assert ref["feats"].shape[1] == num_steps
            continue
        assert torch.equal(ref["feats"][0], feats[0, crop.start : crop.end])
        assert torch.allclose(crop.segments, ref["segments"])
        assert torch.equal(labels[crop.keep], ref["labels"])


def test_truncate_moments_keeps_by_intersection_over_the_moment():
    # window [0, 10) widened by 0 steps; moment A keeps 4 of 10 steps, B 2 of 10, C is inside
    segments = torch.tensor([[6.0, 16.0], [8.0, 18.0], [1.0, 3.0]])
    rng = np.random.default_rng(0)
    crop = truncate_moments(10, segments, 10, 0.3, 0.0, rng)
    assert crop is None  # short enough and no crop_ratio: whole
    crop = truncate_moments(30, segments, 10, 0.3, 0.0, _FixedStart(0))
    assert crop.keep.tolist() == [True, False, True]
    assert crop.segments.tolist() == [[6.0, 10.0], [1.0, 3.0]]  # the kept part, not the whole moment
    # no window keeps a moment: drawn max_trials times, the last draw is used
    draws = _FixedStart(20)
    crop = truncate_moments(30, segments[2:], 10, 0.5, 0.0, draws, max_trials=7)
    assert draws.calls == 7 and crop.start == 20 and len(crop.segments) == 0


class _FixedStart:
    """A stand-in generator whose every window starts at ``start``."""

    def __init__(self, start):
        self.start, self.calls = start, 0

    def integers(self, low, high):
        self.calls += 1
        return self.start


def test_training_crops_are_a_function_of_seed_epoch_and_index(mq_root, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    dataset = Ego4DMQ(root=str(mq_root), feature_dim=256, max_steps=48).dataset("train")
    first = [dataset[i]["segments"] for i in range(4)]
    torch.manual_seed(123)  # global RNG state plays no part
    assert all(torch.equal(a, dataset[i]["segments"]) for i, a in enumerate(first))
    dataset.set_epoch(1)
    assert any(not torch.equal(a, dataset[i]["segments"]) for i, a in enumerate(first))
    dataset.set_epoch(0)
    assert all(torch.equal(a, dataset[i]["segments"]) for i, a in enumerate(first))


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
    dm = Ego4DMQ(root=str(root), feature_dim=32, synthetic=True)
    assert (root / "moments_train.json").is_file() and dm.num_classes > 1
    assert "SYNTHETIC" in caplog.text
