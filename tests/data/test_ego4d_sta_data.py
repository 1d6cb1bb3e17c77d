"""Ego4D STA: the official annotation / detection readers, clips, the data module and submissions."""

import json

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from vidlit.data import ego4d_sta
from vidlit.data.ego4d_sta import (
    STA_CHALLENGE,
    Ego4DSTA,
    parse_sta_detections,
    read_sta_annotations,
    read_sta_detections,
    sta_frame_indices,
)
from vidlit.data.synth.ego4d_sta import write_ego4d_sta
from vidlit.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vidlit.data.video import open_video


@pytest.fixture(scope="module")
def sta_root(tmp_path_factory):
    return write_ego4d_sta(tmp_path_factory.mktemp("sta") / "data", num_train=8, num_val=4, num_test=2)


def test_reader_parses_the_official_layout(sta_root):
    ann = read_sta_annotations(sta_root / "fho_sta_train.json")
    assert ann.noun_names == ["cup", "knife", "bowl", "apple"] and len(ann.verb_names) == 4
    first = ann.frames[0]
    assert first.uid == f"{first.video_uid}_{first.frame:07d}" and first.clip_uid == first.video_uid
    assert first.boxes.shape == (1, 4) and first.ttcs.dtype == torch.float32
    assert ann.video_metadata[first.video_uid]["frame_width"] == 64
    test = read_sta_annotations(sta_root / "fho_sta_test_unannotated.json")
    assert all(len(f.nouns) == 0 for f in test.frames)
    dets = read_sta_detections(sta_root / "object_detections.json")
    boxes, scores, nouns = dets[first.uid]
    assert boxes.shape == (2, 4) and scores[0] > scores[1] and nouns[0] == first.nouns[0]


def test_frame_indices_end_at_the_annotated_frame():
    assert sta_frame_indices(15, 8, 2) == [1, 3, 5, 7, 9, 11, 13, 15]
    assert sta_frame_indices(3, 4, 2) == [0, 0, 1, 3]  # clamped at the start of the video


def test_data_module_batches_and_submission(sta_root, tmp_path):
    dm = Ego4DSTA(
        str(sta_root), detections="object_detections.json", batch_size=3,
        predict_annotations="fho_sta_test_unannotated.json",
    )  # fmt: skip
    assert dm.num_classes == 4 and dm.num_verbs == 4
    dm.setup("fit")
    raw = next(iter(dm.train_dataloader()))
    # uint8 frames leave the workers; the device normalizes them (one way for FHP, SCOD and STA)
    assert raw["video"].shape == (3, 8, 32, 32, 3) and raw["video"].dtype == torch.uint8
    frames = raw["video"].clone()
    batch = dm.on_after_batch_transfer(raw, 0)
    assert batch["video"].shape == (3, 3, 8, 32, 32) and batch["video"].dtype == torch.float32
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    expected = rearrange((frames.float() / 255 - mean) / std, "b t h w c -> b c t h w")
    assert torch.allclose(batch["video"], expected, atol=1e-4)
    assert all(len(b) == 1 for b in batch["boxes"])  # training: the ground-truth boxes
    assert all(((b >= 0) & (b <= 1)).all() for b in batch["boxes"])
    assert torch.equal(batch["orig_boxes"][0], batch["targets"][0]["boxes"])
    val = next(iter(dm.val_dataloader()))
    assert all(len(b) == 2 for b in val["boxes"])  # evaluation: the detector's boxes
    # the hand is on screen in the annotated (last) frame: skin colour is present
    dm.setup("predict")
    predict = dm.datasets["predict"]
    assert len(predict) == 2 and len(predict[0]["target"]["nouns"]) == 0
    preds = [{"video_id": uid, "boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]]), "nouns": torch.tensor([1]),
              "verbs": torch.tensor([2]), "ttcs": torch.tensor([0.5]), "scores": torch.tensor([0.7])}
             for uid in val["video_ids"]]  # fmt: skip
    doc = json.loads(dm.write_submission(preds, tmp_path / "sub.json").read_text())
    assert doc["challenge"] == STA_CHALLENGE and doc["version"] == "1.0"
    entry = doc["results"][val["video_ids"][0]][0]
    # the official validator's type checks: int ids, float TTC and score, 4-number box
    assert isinstance(entry["noun_category_id"], int) and isinstance(entry["verb_category_id"], int)
    assert isinstance(entry["time_to_contact"], float) and isinstance(entry["score"], float)
    assert entry["box"] == [1.0, 2.0, 3.0, 4.0]


def test_inference_inputs_take_boxes_in_memory_or_from_a_file(sta_root, tmp_path):
    """``vidlit serve`` hands the drawn box as a list; ``vidlit infer`` a detections file: one batch."""
    dm = Ego4DSTA(str(sta_root))
    item = read_sta_annotations(sta_root / "fho_sta_val.json").frames[0]
    video = sta_root / "videos" / f"{item.video_uid}.mp4"
    boxes = [{"box": b, "score": 0.9} for b in item.boxes.tolist()]
    file = tmp_path / "detections.json"
    file.write_text(json.dumps({item.video_uid: boxes}))
    given = dm.inference_inputs(video, "mine", boxes, frame=item.frame).batch
    read = dm.inference_inputs(video, "mine", file, frame=item.frame).batch
    torch.testing.assert_close(given["orig_boxes"][0], item.boxes)
    torch.testing.assert_close(given["box_scores"][0], torch.full((len(boxes),), 0.9))
    torch.testing.assert_close(given["boxes"][0], read["boxes"][0])
    assert torch.equal(given["video"], read["video"])
    with pytest.raises(ValueError, match=r"^mine: detections: detection 0: box must be \[x1, y1, x2, y2\]"):
        dm.inference_inputs(video, "mine", [{"box": [1, 2, 3], "score": 1.0}], frame=item.frame)
    with pytest.raises(ValueError, match=r"^mine: detections: detection 0: missing key 'score'"):
        dm.inference_inputs(video, "mine", [{"box": [1, 2, 3, 4]}], frame=item.frame)
    with pytest.raises(ValueError, match=r"^mine: detections: detection 0: noun_category_id must be a class"):
        named = [{"box": [1, 2, 3, 4], "score": 1, "noun_category_id": "cup"}]
        dm.inference_inputs(video, "mine", named, frame=item.frame)
    _, _, nouns = parse_sta_detections([{"box": [1, 2, 3, 4], "score": 1, "noun_category_id": None}], "mine")
    assert nouns.tolist() == [-1]  # null: the detector named no noun (it was a TypeError)


def test_unannotated_predict_needs_detections(sta_root):
    dm = Ego4DSTA(str(sta_root), predict_annotations="fho_sta_test_unannotated.json")
    with pytest.raises(ValueError, match="need detector boxes"):
        dm.setup("predict")


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_frames_are_resized_by_the_decoder(sta_root, backend, monkeypatch):
    # the decoder scales to size x size; the same clip decoded at full size and shrunk with an
    # antialiased bilinear resize (what the dataset did before) differs only by resampling noise
    dm = Ego4DSTA(str(sta_root), backend=backend, size=32)
    dataset = dm.dataset("train")
    asked = []

    def spy(*args, **kwargs):  # the real open_video, recording the size it is asked for
        asked.append(kwargs.get("resize"))
        return open_video(*args, **kwargs)

    monkeypatch.setattr(ego4d_sta, "open_video", spy)
    item = dataset[1]
    assert asked == [(32, 32)]
    path, frame = dataset.source(dataset.frames[1])
    with open_video(path, backend) as reader:
        full = reader.get_frames(sta_frame_indices(frame, dm.num_frames, dm.frame_stride))
    assert full.shape[1:3] == (64, 64)  # the synthetic videos are 64 x 64
    shrunk = F.interpolate(
        rearrange(full, "t h w c -> t c h w").float(), size=(32, 32), mode="bilinear", antialias=True
    )
    shrunk = rearrange(shrunk.round().clamp(0, 255), "t c h w -> t h w c")
    assert item["video"].shape == shrunk.shape == (8, 32, 32, 3) and item["video"].dtype == torch.uint8
    diff = (item["video"].float() - shrunk).abs()
    assert diff.mean() < 4.0  # of 255 levels; measured about 2.3 (edges of the shapes, chroma)
    assert (item["video"].float().mean((1, 2)) - shrunk.mean((1, 2))).abs().max() < 2.0
    # boxes are normalized by the annotated frame size, not the decoded one
    width = dm.annotations("train").video_metadata[dataset.frames[1].video_uid]["frame_width"]
    assert torch.allclose(item["boxes"], dataset.frames[1].boxes / width)
    dataset.annotations.video_metadata.clear()  # no metadata: the size comes from the video header
    assert torch.equal(dataset[1]["boxes"], item["boxes"])


def test_missing_video_raises_or_is_skipped(sta_root, tmp_path):
    import shutil

    root = shutil.copytree(sta_root, tmp_path / "copy")
    victim = read_sta_annotations(root / "fho_sta_val.json").frames[0]
    (root / "videos" / f"{victim.video_uid}.mp4").unlink()
    with pytest.raises(
        FileNotFoundError, match=f"no video for 1 of 4 val frames, e.g. {victim.video_uid}.mp4"
    ):
        Ego4DSTA(str(root)).dataset("val")
    kept = Ego4DSTA(str(root), strict=False).dataset("val")
    assert len(kept) == 3 and victim.uid not in {f.uid for f in kept.frames}
