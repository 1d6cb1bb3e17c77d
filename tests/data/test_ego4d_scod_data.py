"""Ego4D SCOD reader, COCO conversion, dataset, data module and submission on the synthetic sample."""

import json
import shutil

import pytest
import torch
from einops import rearrange

from vidlit.data.ego4d_scod import (
    Ego4DSCOD,
    clip_window,
    read_coco_image_ids,
    read_scod_annotations,
    write_scod_submission,
)
from vidlit.data.synth import synthesize
from vidlit.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vidlit.formats._schema import validate
from vidlit.formats.ego4d_scod import SCODFile, scod_to_coco


@pytest.fixture(scope="module")
def scod_root(tmp_path_factory):
    return synthesize(
        "ego4d_scod", tmp_path_factory.mktemp("scod") / "data", num_train=4, num_val=3, num_test=2
    )


def test_synthetic_files_follow_the_official_layout(scod_root):
    doc = json.loads((scod_root / "fho_scod_val.json").read_text())
    clip = doc["clips"][0]
    assert {
        "clip_uid",
        "video_uid",
        "clip_parent_start_frame",
        "pre_frame",
        "pnr_frame",
        "post_frame",
    } <= set(clip)
    pnr = clip["pnr_frame"]
    assert pnr["frame_number"] == clip["clip_parent_start_frame"] + pnr["clip_frame_number"]
    assert (
        clip["pre_frame"]["clip_frame_number"]
        < pnr["clip_frame_number"]
        < clip["post_frame"]["clip_frame_number"]
    )
    assert {b["object_type"] for b in pnr["bbox"]} == {"object_of_change", "right_hand"}
    assert set(pnr["bbox"][0]["bbox"]) == {"x", "y", "width", "height"}
    test = json.loads((scod_root / "fho_scod_test_unannotated.json").read_text())
    assert all("bbox" not in c["pnr_frame"] for c in test["clips"])
    assert (scod_root / "clips" / f"{clip['clip_uid']}.mp4").is_file()


def test_reader_keeps_the_object_of_change(scod_root):
    clips = read_scod_annotations(scod_root / "fho_scod_val.json")
    raw = json.loads((scod_root / "fho_scod_val.json").read_text())["clips"][0]["pnr_frame"]["bbox"][0][
        "bbox"
    ]
    assert len(clips) == 3
    assert clips[0].pnr.boxes.tolist() == [[raw["x"], raw["y"], raw["width"], raw["height"]]]
    hands = read_scod_annotations(scod_root / "fho_scod_val.json", object_type="right_hand")
    assert hands[0].pnr.boxes.shape == (1, 4) and not torch.equal(hands[0].pnr.boxes, clips[0].pnr.boxes)
    unannotated = read_scod_annotations(scod_root / "fho_scod_test_unannotated.json")
    assert not unannotated[0].pnr.annotated and unannotated[0].pnr.boxes.shape == (0, 4)


def test_coco_file_matches_the_baselines_layout(scod_root):
    clips = read_scod_annotations(scod_root / "fho_scod_val.json")
    path = scod_root / "fho_scod_val.json"
    coco = scod_to_coco(validate(SCODFile, json.loads(path.read_text()), path).clips)
    assert coco["categories"] == [{"id": 1, "name": "object_of_change"}]
    first = coco["images"][0]
    assert first["file_name"] == f"{clips[0].video_uid}/{clips[0].pnr.frame_number}.jpg"
    ann = coco["annotations"][0]
    assert ann["image_id"] == first["id"] and ann["area"] == ann["bbox"][2] * ann["bbox"][3]
    assert json.loads((scod_root / "coco_annotations" / "val.json").read_text()) == coco
    records = validate(SCODFile, json.loads(path.read_text()), path).clips
    assert len(scod_to_coco(records, ("pre_frame", "pnr_frame", "post_frame"))["images"]) == 9


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        read_scod_annotations(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{\n  oops")
    with pytest.raises(ValueError, match="line 2 column 3: invalid JSON"):
        read_scod_annotations(tmp_path / "bad.json")


def test_clip_window_centres_the_pnr_frame():
    assert clip_window(10, 4, 2, 32).tolist() == [6, 8, 10, 12]
    assert clip_window(1, 4, 2, 32).tolist() == [0, 0, 1, 3]  # clamped at the start
    assert clip_window(30, 4, 2, 32).tolist() == [26, 28, 30, 31]


def test_data_module_batches(scod_root):
    dm = Ego4DSCOD(root=str(scod_root), num_frames=8, frame_stride=2, size=32, batch_size=2)
    dm.setup("fit")
    raw = next(iter(dm.val_dataloader()))
    assert raw["video"].shape == (2, 8, 32, 32, 3) and raw["video"].dtype == torch.uint8
    frames = raw["video"].clone()
    batch = dm.on_after_batch_transfer(raw, 0)
    assert batch["video"].shape == (2, 3, 8, 32, 32) and batch["video"].dtype == torch.float32
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    expected = rearrange((frames.float() / 255 - mean) / std, "b t h w c -> b c t h w")
    assert torch.allclose(batch["video"], expected, atol=1e-4)
    assert batch["frame_size"].tolist() == [[64, 64], [64, 64]]
    clip = dm.datasets["val"].clips[0]
    assert batch["image_ids"][0] == clip.image_id() and batch["video_ids"][0] == clip.clip_uid
    # loss boxes are the metric's COCO boxes, normalized cxcywh
    x, y, w, h = batch["targets"][0]["boxes"][0].tolist()
    assert batch["boxes"][0][0].tolist() == pytest.approx(
        [(x + w / 2) / 64, (y + h / 2) / 64, w / 64, h / 64]
    )
    assert batch["labels"][0].tolist() == [0]


def test_training_flip_mirrors_frames_and_boxes(scod_root):
    dm = Ego4DSCOD(root=str(scod_root), size=32, hflip=1.0)
    dm.setup("fit")
    flipped, plain = (
        dm.datasets["train"][0],
        dm.datasets["val"].__class__(dm.datasets["train"].clips, dm.video_dir, size=32)[0],
    )
    assert torch.equal(flipped["video"], plain["video"].flip(2))
    assert flipped["boxes"][:, 0].tolist() == pytest.approx((1 - plain["boxes"][:, 0]).tolist())
    assert torch.equal(
        flipped["target"]["boxes"], plain["target"]["boxes"]
    )  # the metric's boxes are not flipped


def test_missing_videos_and_unannotated_splits(scod_root, tmp_path):
    root = shutil.copytree(scod_root, tmp_path / "data")
    next((root / "clips").glob("*.mp4")).unlink()
    with pytest.raises(FileNotFoundError, match=r"no video for 1 of \d+ .* clips"):
        for split in ("train", "val"):
            Ego4DSCOD(root=str(root)).dataset(split)
    with pytest.raises(ValueError, match="no pnr_frame.bbox list"):
        Ego4DSCOD(
            root=str(scod_root), val_annotations="fho_scod_test_unannotated.json"
        ).setup("fit")


def test_submission_uses_the_coco_image_ids(scod_root, tmp_path):
    dm = Ego4DSCOD(root=str(scod_root))
    ids = read_coco_image_ids(scod_root / "coco_annotations" / "val.json")
    clips = read_scod_annotations(scod_root / "fho_scod_val.json")
    preds = [
        {
            "image_id": c.image_id(),
            "boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]]),
            "scores": torch.tensor([0.5]),
        }
        for c in reversed(clips)
    ]
    doc = json.loads(dm.write_submission(preds, tmp_path / "sub.json").read_text())
    assert [r["image_id"] for r in doc] == [ids[c.image_id()] for c in reversed(clips)]
    assert doc[0] == {
        "image_id": ids[clips[-1].image_id()],
        "category_id": 1,
        "bbox": [1.0, 2.0, 3.0, 4.0],
        "score": 0.5,
    }
    with pytest.raises(ValueError, match="not an image of the COCO annotation file"):
        write_scod_submission([{**preds[0], "image_id": "x/1.jpg"}], tmp_path / "bad.json", ids)
    numbered = json.loads(write_scod_submission(preds, tmp_path / "n.json").read_text())
    assert [r["image_id"] for r in numbered] == [1, 2, 3]


def test_synthetic_writer_checks_the_shortest_clip_it_can_draw(tmp_path):
    from vidlit.data.synth.ego4d_scod import PNR_OFFSET, write_ego4d_scod

    shortest = 2 * PNR_OFFSET + 13
    with pytest.raises(ValueError, match=f"at least {shortest}"):
        write_ego4d_scod(tmp_path / "short", num_frames=shortest - 1)
    root = write_ego4d_scod(tmp_path / "ok", num_frames=shortest, num_train=2, num_val=1, num_test=1, size=32)
    assert len(list((root / "clips").glob("*.mp4"))) == 4
