"""Synthetic Kinetics: the official CSV layout, read by VideoListDataModule as the zero-shot recipe does."""

from __future__ import annotations

from vidlit.data import VideoListDataModule


def test_synthetic_kinetics_is_read_as_the_official_csv(tmp_path):
    root = tmp_path / "kinetics_synth"
    dm = VideoListDataModule(
        str(root), synthetic="kinetics", list_format="kinetics", val_list="annotations/val.csv",
        video_dir="videos/{split}", sampling="segments", size=32, short_side=32, batch_size=36,
    )  # fmt: skip
    assert (
        (root / "annotations" / "val.csv")
        .read_text()
        .startswith("label,youtube_id,time_start,time_end,split")
    )
    assert dm.class_names[:2] == ["red square", "red circle"] and dm.num_classes == 9
    dm.setup("test")
    (batch,) = list(dm.test_dataloader())
    assert batch["video"].shape[0] == 36 and not batch["skipped"]
    assert sorted(batch["labels"].tolist()) == sorted(list(range(9)) * 4)
