"""Ego4D future hands: the official fho_hands JSON, clip decoding before pre_45, the submission."""

import json

import pytest
import torch
from einops import rearrange

from vidlit.data.ego4d_fhp import Ego4DFHP, read_hand_annotations
from vidlit.data.synth.ego4d_fhp import write_ego4d_fhp
from vidlit.data.transforms import IMAGENET_MEAN, IMAGENET_STD


@pytest.fixture(scope="module")
def fhp_root(tmp_path_factory):
    return write_ego4d_fhp(tmp_path_factory.mktemp("fhp") / "data", num_train=3, num_val=2, num_test=1)


def test_reader_follows_the_official_layout(fhp_root):
    doc = json.loads((fhp_root / "fho_hands_train.json").read_text())
    samples = read_hand_annotations(fhp_root / "fho_hands_train.json")
    clip, action = doc["clips"][0], doc["clips"][0]["frames"][0]
    first = samples[0]
    assert (
        first.clip_uid == clip["clip_uid"]
        and first.key == f"{clip['clip_id']}_{action['pre_45']['frame'] - 1}"
    )
    for f, name in enumerate(("pre_45", "pre_30", "pre_15", "pre_frame", "contact_frame")):
        boxes = {k: v for box in action[name]["boxes"] for k, v in box.items()}
        for h, hand in enumerate(("left_hand", "right_hand")):
            assert first.valid[f, h] == (hand in boxes)
            if hand in boxes:
                assert first.hands[f, h].tolist() == pytest.approx(boxes[hand])
            else:
                assert first.hands[f, h].tolist() == [0.0, 0.0]  # zero-padded, as the baseline
    test = read_hand_annotations(fhp_root / "fho_hands_test_unannotated.json")
    assert test and not any(s.valid.any() for s in test)


def test_clips_end_before_pre_45_and_views(fhp_root):
    data = Ego4DFHP(root=str(fhp_root), size=32, num_frames=8, sampling_rate=4, test_views=2, batch_size=2)
    data.setup("fit")
    train = data.datasets["train"]
    sample = train.samples[0]
    indices = train.frame_indices(sample)
    assert indices == [sample.pre45_clip_frame - 4 * (8 - i) for i in range(8)]
    raw = next(iter(data.train_dataloader()))
    # uint8 frames leave the workers; the device normalizes them (one way for FHP, SCOD and STA)
    assert raw["video"].shape == (2, 8, 32, 32, 3) and raw["video"].dtype == torch.uint8
    frames = raw["video"].clone()
    batch = data.on_after_batch_transfer(raw, 0)
    assert batch["video"].shape == (2, 3, 8, 32, 32) and batch["hands"].shape == (2, 5, 2, 2)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    expected = rearrange((frames.float() / 255 - mean) / std, "b t h w c -> b c t h w")
    assert torch.allclose(batch["video"], expected, atol=1e-4)
    data.setup("test")
    test = data.datasets["test"]
    assert len(test) == 2 * len(test.samples)
    assert test.frame_indices(test.samples[0], 1) == [
        max(0, i - 2) for i in test.frame_indices(test.samples[0], 0)
    ]


def test_submission_sums_views_like_the_baseline(fhp_root, tmp_path):
    data = Ego4DFHP(root=str(fhp_root))
    preds = [
        {"video_id": "5_99", "hands": torch.ones(5, 2, 2)},
        {"video_id": "5_99", "hands": torch.ones(5, 2, 2) * 2},
        {"video_id": "6_10", "hands": torch.arange(20.0)},
    ]
    doc = json.loads(data.write_submission(preds, tmp_path / "hands.json").read_text())
    assert doc == {"5_99": [3.0] * 20, "6_10": [float(i) for i in range(20)]}


def test_missing_clip(fhp_root, tmp_path):
    import shutil

    root = shutil.copytree(fhp_root, tmp_path / "copy")
    victim = read_hand_annotations(root / "fho_hands_val.json")[0].clip_uid
    (root / "clips" / f"{victim}.mp4").unlink()
    with pytest.raises(FileNotFoundError, match=f"no video for 1 val clips, e.g. {victim}.mp4"):
        Ego4DFHP(root=str(root)).dataset("val")
    assert len(Ego4DFHP(root=str(root), strict=False).dataset("val").samples) == 1


def test_cache_returns_the_same_clips_without_decoding_again(fhp_root):
    data = Ego4DFHP(root=str(fhp_root), num_frames=4, sampling_rate=2, size=32, cache=True)
    data.setup("fit")
    dataset = data.datasets["train"]
    first = dataset[0]["video"]
    assert set(dataset._frames) == {0}
    dataset.video_dir = fhp_root / "no_such_dir"  # a second read must come from memory
    assert torch.equal(dataset[0]["video"], first)
