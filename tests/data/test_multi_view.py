"""Multi-view testing on video lists: temporal clips x spatial crops, averaged once per view."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from vidlit.backbones import create_backbone
from vidlit.callbacks import SubmissionWriter
from vidlit.data import VideoListDataModule
from vidlit.data.synth.videos import write_video
from vidlit.data.transforms import VideoBatchTransform, three_crop_boxes
from vidlit.data.video import open_video
from vidlit.data.video_list import write_synthetic_video_list
from vidlit.heads import LinearProbeHead
from vidlit.inference import Predictor
from vidlit.metrics import TopKAccuracy
from vidlit.tasks import TaskModule


def test_three_crops_lie_along_the_long_side():
    # wide 32 x 64 and tall 48 x 24 frames, crops of 16 after resizing the short side to 16
    boxes = three_crop_boxes(torch.tensor([[32, 64], [48, 24]]), size=16, short_side=16)
    assert boxes.shape == (2, 3, 4)
    # (y0, x0, h, w) in source pixels: the crop spans the short side; start, centre, end of the long
    assert boxes[0].tolist() == [[0, 0, 32, 32], [0, 16, 32, 32], [0, 32, 32, 32]]
    assert boxes[1].tolist() == [[0, 0, 24, 24], [12, 0, 24, 24], [24, 0, 24, 24]]
    # a larger eval short side crops inside the short side, centred on it
    (box,) = three_crop_boxes(torch.tensor([[32, 64]]), size=16, short_side=32)
    assert box[:, 0].tolist() == [8, 8, 8] and box[:, 1].tolist() == [0, 24, 48]


def test_batch_transform_gives_each_clip_its_crops_consecutively():
    # pixel value = column, so a crop's mean value tells where along the width it was cut
    columns = torch.arange(64, dtype=torch.uint8).view(1, 1, 1, 64, 1).expand(2, 3, 32, 64, 3).clone()
    columns[1] += 100  # the second clip is brighter: crops must stay with their clip
    transform = VideoBatchTransform(32, train=False, num_crops=3, mean=(0, 0, 0), std=(1, 1, 1))
    out = transform(columns) * 255
    assert out.shape == (6, 3, 3, 32, 32)
    means = out.mean(dim=(1, 2, 3, 4))
    torch.testing.assert_close(
        means, torch.tensor([15.5, 31.5, 47.5, 115.5, 131.5, 147.5]), atol=1e-3, rtol=0
    )
    with pytest.raises(ValueError, match="num_crops must be 1 .* or 3"):
        VideoBatchTransform(32, train=False, num_crops=2)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("multi_view")
    write_synthetic_video_list(root, num_videos=8, num_frames=16, size=32)
    return root


def _views(dm: VideoListDataModule, loader: DataLoader) -> list[dict]:
    """Every view the loader gives, after the device transform, with the scores of a fake model."""
    out = []
    for batch in loader:
        batch = dm.on_after_batch_transfer(batch, 0)
        assert (
            batch["video"].shape[0]
            == len(batch["targets"])
            == len(batch["video_ids"])
            == len(batch["labels"])
        )
        out.extend(batch["targets"])
    return out


def test_five_clips_by_three_crops_give_fifteen_views_per_video(root):
    dm = VideoListDataModule(
        root=str(root),
        train_list="videos.csv",
        val_list="videos.csv",
        size=16,
        short_side=16,
        num_frames=4,
        frame_stride=1,
        num_clips=5,
        num_crops=3,
        batch_size=3,
    )
    dm.setup("test")
    targets = _views(dm, dm.test_dataloader())
    by_video: dict[str, list[int]] = {}
    for target in targets:
        by_video.setdefault(target["video_id"], []).append(target["view"])
    assert len(by_video) == 8 and all(views == list(range(15)) for views in by_video.values())

    # the metric averages the 15 views of a video: class 0's score rises with the view index and
    # only the mean of all 15 (7 of them above 0.5) decides, once per video
    metric = TopKAccuracy(num_classes=4, top_k=(1,))
    preds = []
    for target in targets:
        scores = torch.full((4,), 0.0)
        scores[target["label"]] = 0.55 if target["view"] < 8 else 0.0
        scores[(target["label"] + 1) % 4] = 0.0 if target["view"] < 8 else 0.6
        preds.append({"video_id": target["video_id"], "scores": scores})
    metric.update(preds, targets)
    # mean true score 8 * 0.55 / 15 = 0.293 > rival 7 * 0.6 / 15 = 0.28: every video right
    assert metric.compute() == {"top1": 1.0}


def test_padding_copies_of_a_distributed_sampler_count_once(root):
    """3 ranks over 8 videos: the sampler pads rank 2 with a copy of the first video's 15 views."""
    dm = VideoListDataModule(
        root=str(root),
        train_list="videos.csv",
        val_list="videos.csv",
        size=16,
        short_side=16,
        num_frames=4,
        frame_stride=1,
        num_clips=5,
        num_crops=3,
        batch_size=2,
    )
    dm.setup("test")
    dataset = dm.datasets["test"]
    per_rank = []
    for rank in range(3):
        sampler = DistributedSampler(dataset, num_replicas=3, rank=rank, shuffle=False)
        loader = DataLoader(dataset, batch_size=2, sampler=sampler, collate_fn=dm._collate())
        per_rank.append(_views(dm, loader))
    gathered = [t for views in per_rank for t in views]
    assert len(gathered) == 9 * 15  # one padded video: its 15 views twice
    first_id = per_rank[0][0]["video_id"]
    assert [t["video_id"] for t in per_rank[2][-15:]] == [first_id] * 15

    def scores(target: dict, wrong: bool) -> torch.Tensor:
        s = torch.full((4,), 0.1)
        s[(target["label"] + 1) % 4 if wrong else target["label"]] = 0.7
        return s

    metric = TopKAccuracy(num_classes=4, top_k=(1,))
    # the first occurrence of video 0 has 8 right views of 15, its padding copy 15 wrong ones: read
    # twice, the copy would outvote the original and the first video would be wrong
    for rank, views in enumerate(per_rank):
        preds = []
        for target in views:
            copy = rank == 2 and target["video_id"] == first_id
            wrong = copy or (target["video_id"] == first_id and target["view"] >= 8)
            preds.append({"video_id": target["video_id"], "scores": scores(target, wrong)})
        metric.update(preds, views)
    assert metric.compute() == {"top1": 1.0}
    # without view indices the copy's views are views of their own: the first video turns wrong
    plain = TopKAccuracy(num_classes=4, top_k=(1,))
    for rank, views in enumerate(per_rank):
        preds, bare = [], []
        for target in views:
            copy = rank == 2 and target["video_id"] == first_id
            wrong = copy or (target["video_id"] == first_id and target["view"] >= 8)
            preds.append({"video_id": target["video_id"], "scores": scores(target, wrong)})
            bare.append({"video_id": target["video_id"], "label": target["label"]})
        plain.update(preds, bare)
    assert plain.compute() == {"top1": 7 / 8}


def test_trainer_test_and_predict_average_clips_by_crops(root, tmp_path):
    """Through Lightning: 2 clips x 3 crops per video; the logged top-1 is the mean over videos of the
    view-averaged prediction, and the submission averages the same 6 views."""
    L.seed_everything(0)
    model = TaskModule(LinearProbeHead(64, 4), backbone=create_backbone("vit_test", depth=1))
    dm = VideoListDataModule(
        root=str(root),
        train_list="videos.csv",
        val_list="videos.csv",
        size=32,
        short_side=32,
        num_frames=8,
        num_clips=2,
        num_crops=3,
        batch_size=3,
    )
    submission = tmp_path / "submission.json"
    trainer = L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=[SubmissionWriter(str(submission))],
    )
    (logged,) = trainer.test(model, dm, verbose=False)
    batches = trainer.predict(model, dm)
    views: dict[str, list[torch.Tensor]] = {}
    for batch in batches:
        for pred in batch:
            views.setdefault(pred["video_id"], []).append(pred["scores"])
    assert len(views) == 8 and all(len(v) == 6 for v in views.values())
    labels = {e.video_id: e.label for e in dm.entries("test")}
    mean = {video_id: torch.stack(v).double().mean(0) for video_id, v in views.items()}
    top1 = sum(int(m.argmax()) == labels[video_id] for video_id, m in mean.items()) / 8
    assert next(v for k, v in logged.items() if k.endswith("top1")) == pytest.approx(top1)
    results = json.loads(submission.read_text())["results"]
    assert set(results) == set(views)
    for video_id, top in results.items():
        assert top[0]["score"] == pytest.approx(float(mean[video_id].max()), abs=1e-6)


def test_infer_on_three_crops_averages_them_and_maps_the_first(root, tmp_path):
    """``vidlit infer`` with a 3-crop data module: the submission averages the 6 views, and the
    crop the pointing page maps its tokens through is the first view's (the left of a wide frame)."""
    L.seed_everything(0)
    model = TaskModule(LinearProbeHead(64, 4), backbone=create_backbone("vit_test", depth=1))
    dm = VideoListDataModule(
        root=str(root),
        train_list="videos.csv",
        val_list="videos.csv",
        size=32,
        short_side=32,
        num_frames=8,
        num_clips=2,
        num_crops=3,
        batch_size=3,
    )
    video = root / "videos" / "000000.mp4"
    wide = tmp_path / "wide.mkv"
    with open_video(video, "pyav") as reader:
        frames = reader.get_frames(list(range(len(reader))))
    write_video(wide, torch.cat((frames, frames), dim=2).numpy(), fps=15, codec="ffv1")  # 32 x 64
    predictor = Predictor(model, dm)
    clip = predictor.prepare(wide)
    assert clip.batch["video"].shape[0] == 6 and clip.crop == (0.0, 0.0, 1.0, 0.5)
    result = predictor.predict(clip)
    scores = torch.stack([p["scores"] for p in result.predictions]).double().mean(0)
    (top,) = result.submission["results"].values()
    assert top[0]["score"] == pytest.approx(float(scores.max()), abs=1e-6)
