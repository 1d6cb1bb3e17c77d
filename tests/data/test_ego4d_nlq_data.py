"""Ego4D NLQ: the official annotation JSON, per-video features cut by seconds, the submission."""

import json

import pytest
import torch

from vidlit.core.segments import segment_iou
from vidlit.core.temporal import slice_by_seconds, span_to_seconds
from vidlit.data.ego4d_nlq import Ego4DNLQ, read_nlq_annotations
from vidlit.data.synth.ego4d_nlq import write_ego4d_nlq

FEATURE_DIM = 16


@pytest.fixture(scope="module")
def nlq_root(tmp_path_factory):
    return write_ego4d_nlq(
        tmp_path_factory.mktemp("nlq") / "data", num_train_videos=3, num_val_videos=2, num_test_videos=1,
        feature_dim=FEATURE_DIM,
    )  # fmt: skip


def test_reader_parses_the_official_layout(nlq_root):
    queries = read_nlq_annotations(nlq_root / "nlq_train.json")
    doc = json.loads((nlq_root / "nlq_train.json").read_text())
    clip = doc["videos"][0]["clips"][0]
    first = queries[0]
    assert first.clip_uid == clip["clip_uid"] and first.video_uid == doc["videos"][0]["video_uid"]
    assert first.annotation_uid == clip["annotations"][0]["annotation_uid"] and first.query_idx == 0
    raw = clip["annotations"][0]["language_queries"][0]
    assert first.window == (raw["clip_start_sec"], raw["clip_end_sec"]) and first.query == raw["query"]
    assert first.duration == pytest.approx(clip["video_end_sec"] - clip["video_start_sec"])
    assert len(queries) == 3 * 2 * 3  # videos x clips x queries
    test = read_nlq_annotations(nlq_root / "nlq_test_unannotated.json")
    assert test and all(q.window is None for q in test)


def test_samples_are_cut_from_the_video_features(nlq_root):
    data = Ego4DNLQ(root=str(nlq_root), feature_dim=FEATURE_DIM, max_len=128, batch_size=4)
    data.setup("fit")
    dataset = data.datasets["train"]
    query = dataset.queries[0]
    sample = dataset[0]
    video = torch.load(nlq_root / "features" / f"{query.video_uid}.pt")
    expected = slice_by_seconds(video, query.video_start_sec, query.video_end_sec, 16 / 30)
    assert torch.equal(sample["features"], expected)
    assert 0 <= sample["start_index"] <= sample["end_index"] < len(expected)
    batch = next(iter(data.train_dataloader()))
    assert batch["features"].shape[0] == 4 and batch["mask"].dtype == torch.bool
    assert len(batch["queries"]) == 4 and batch["targets"][0]["window"].shape == (2,)


def test_long_clips_are_resampled(nlq_root):
    data = Ego4DNLQ(root=str(nlq_root), feature_dim=FEATURE_DIM, max_len=16)
    data.setup("validate")
    assert all(data.datasets["val"][i]["features"].shape[0] == 16 for i in range(3))


def test_missing_features_strict_and_lenient(nlq_root, tmp_path):
    import shutil

    root = shutil.copytree(nlq_root, tmp_path / "copy")
    victim = read_nlq_annotations(root / "nlq_val.json")[0].video_uid
    (root / "features" / f"{victim}.pt").unlink()
    with pytest.raises(FileNotFoundError, match=f"no feature file .* val videos, e.g. video {victim}"):
        Ego4DNLQ(root=str(root), feature_dim=FEATURE_DIM).dataset("val")
    lenient = Ego4DNLQ(root=str(root), feature_dim=FEATURE_DIM, strict=False).dataset("val")
    assert lenient.queries and all(q.video_uid != victim for q in lenient.queries)


def test_submission_is_the_official_challenge_json(nlq_root, tmp_path):
    data = Ego4DNLQ(
        root=str(nlq_root), feature_dim=FEATURE_DIM, predict_annotations="nlq_test_unannotated.json"
    )
    queries = data.queries("predict")
    preds = [{"video_id": q.key, "windows": torch.tensor([[1.0, 2.0], [0.5, 3.0]])} for q in queries]
    path = data.write_submission(preds, tmp_path / "nlq.json")
    doc = json.loads(path.read_text())
    assert doc["version"] == "1.0" and doc["challenge"] == "ego4d_nlq_challenge"
    first = doc["results"][0]
    assert first == {
        "clip_uid": queries[0].clip_uid,
        "annotation_uid": queries[0].annotation_uid,
        "query_idx": queries[0].query_idx,
        "predicted_times": [[1.0, 2.0], [0.5, 3.0]],
    }
    assert len(doc["results"]) == len(queries)


def test_span_labels_decode_back_to_the_annotated_windows(nlq_root):
    """Every training label (start_index, end_index) maps back through span_to_seconds to its window."""
    data = Ego4DNLQ(root=str(nlq_root), feature_dim=FEATURE_DIM)
    data.setup("fit")
    for dataset in data.datasets.values():
        for item in dataset:
            window = span_to_seconds(
                torch.tensor(item["start_index"]), torch.tensor(item["end_index"]),
                item["features"].shape[0], item["duration"],
            )  # fmt: skip
            iou = segment_iou(window[None].double(), item["window"][None].double())
            assert float(iou) > 0.999, (item["video_id"], window, item["window"])


def test_timing_comes_from_the_extraction_record(tmp_path):
    """fps / stride are stated once, where the features were made (``vidlit extract``'s record)."""
    features = tmp_path / "nlq" / "features"
    features.mkdir(parents=True)
    assert Ego4DNLQ(str(tmp_path / "nlq"), feature_dim=8).step_sec == pytest.approx(16 / 30)  # official
    (features / "extraction.json").write_text(
        json.dumps({"fps": 25.0, "feature_stride": 8, "feature_window": 16})
    )
    assert Ego4DNLQ(str(tmp_path / "nlq"), feature_dim=8).step_sec == pytest.approx(8 / 25)
    with pytest.raises(ValueError, match=r"extraction\.json: key 'feature_stride': .*extracted with 8, but"):
        Ego4DNLQ(str(tmp_path / "nlq"), feature_dim=8, feature_stride=16)
