"""recipes/finetune_ssv2.yaml samples frames as VideoMAE's Something-Something V2 fine-tuning does.

VideoMAE (``ssv2.py``, ``SSVideoClsDataset``) samples SSv2 by segments over the whole video
(TSN), never flips, and tests 2 temporal views x 3 spatial crops: in test mode it reads the
frames ``int(tick * x)`` and ``int(tick * x + tick / 2)`` (``tick = n / num_segment``), sorts
them, and view ``chunk_nb`` takes every second frame from ``chunk_nb`` on.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vidlit.data import VideoListDataModule
from vidlit.data.sampling import multi_view_segments, uniform_segments
from vidlit.data.synth.videos import write_video

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "finetune_ssv2.yaml"


def videomae_ssv2_test_views(num_frames: int, num_segment: int, test_num_segment: int = 2) -> np.ndarray:
    """The frames of each temporal test view, computed the way VideoMAE's ``ssv2.py`` does."""
    tick = num_frames / float(num_segment)
    centres = [int(tick / 2.0 + tick * x) for x in range(num_segment)]
    starts = [int(tick * x) for x in range(num_segment)]
    frames = np.sort(np.array(centres + starts))
    return np.stack([frames[chunk::2] for chunk in range(test_num_segment)])


@pytest.mark.parametrize("num_frames", [7, 8, 16, 17, 33, 50, 300])
@pytest.mark.parametrize("k", [4, 8, 16])
def test_two_segment_views_are_videomaes(num_frames, k):
    views = multi_view_segments(num_frames, k, num_clips=2)
    np.testing.assert_array_equal(views, videomae_ssv2_test_views(num_frames, k))
    # one view is TSN's test view, the segment centres
    np.testing.assert_array_equal(
        multi_view_segments(num_frames, k, 1)[0], uniform_segments(num_frames, k, False)
    )


def test_more_segment_views_spread_over_each_segment():
    # 4 views of 4 segments of 40 frames: offsets 0, 0.25, 0.5, 0.75 of each 10-frame segment
    views = multi_view_segments(40, 4, num_clips=4)
    assert views.tolist() == [[0, 10, 20, 30], [2, 12, 22, 32], [5, 15, 25, 35], [7, 17, 27, 37]]
    with pytest.raises(ValueError, match="num_clips must be positive"):
        multi_view_segments(40, 4, num_clips=0)


@pytest.fixture(scope="module")
def counting_videos(tmp_path_factory) -> Path:
    """Three lossless videos of 20, 33 and 64 frames whose frame ``i`` is grey level ``3 * i``."""
    root = tmp_path_factory.mktemp("ssv2_counting")
    rows = ["path,label"]
    for n in (20, 33, 64):
        frames = np.repeat((3 * np.arange(n, dtype=np.uint8))[:, None, None, None], 3, axis=3)
        write_video(
            root / f"count{n}.mkv",
            np.ascontiguousarray(np.broadcast_to(frames, (n, 32, 48, 3))),
            codec="ffv1",
        )
        rows.append(f"count{n}.mkv,a")
    (root / "videos.csv").write_text("\n".join(rows) + "\n")
    (root / "classes.txt").write_text("a\nb\n")
    return root


def _recipe_data(root: Path) -> VideoListDataModule:
    """The data module exactly as the recipe configures it, on the counting videos."""
    config = yaml.safe_load(RECIPE.read_text())["data"]
    assert config["class_path"] == "vidlit.data.VideoListDataModule"
    args = dict(config["init_args"])
    args.update(root=str(root), synthetic=False, train_list="videos.csv", val_list="videos.csv")
    return VideoListDataModule(**args)


def test_recipe_tests_two_segment_views_by_three_crops_without_flips(counting_videos):
    dm = _recipe_data(counting_videos)
    assert dm.sampling == "segments" and dm.train_transform.hflip == 0.0
    dm.setup("test")
    dataset = dm.datasets["test"]
    k = dm.num_frames
    for index, entry in enumerate(dataset.entries):
        n = int(entry.path.stem.removeprefix("count"))
        item = dataset[index]
        # the decoded frames are the frames VideoMAE reads: grey level / 3 is the frame index
        read = item["video"][..., 0].float().mean(dim=(2, 3)).div(3).round().long().numpy()
        np.testing.assert_array_equal(read, videomae_ssv2_test_views(n, k))
    # through collate and the device transform: 2 views x 3 crops, consecutive per video
    batch = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert batch["video"].shape[0] == 6 * min(dm.batch_size, 3)
    first = [t for t in batch["targets"] if t["video_id"] == batch["video_ids"][0]]
    assert [t["view"] for t in first] == list(range(6))
    assert batch["video"].shape[-2:] == (dm.size, dm.size)


def test_recipe_trains_on_random_segment_frames(counting_videos):
    dm = _recipe_data(counting_videos)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    dataset.set_epoch(0)
    item = dataset[2]  # 64 frames, 8 segments of 8
    read = item["video"][..., 0].float().mean(dim=(2, 3)).div(3).round().long()
    assert read.shape == (dm.repeated_aug, dm.num_frames)
    segment = torch.div(read, 64 // dm.num_frames, rounding_mode="floor")
    assert (segment == torch.arange(dm.num_frames)).all()  # one frame inside each segment
    assert not torch.equal(read[0], read[1])  # each repeated clip draws its own offsets
