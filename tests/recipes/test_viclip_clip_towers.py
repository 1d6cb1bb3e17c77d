"""recipes/viclip_clip_towers.yaml: ViCLIP's CLIP towers in the video-text recipe, through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vidlit.backbones import create_backbone
from vidlit.backbones.clip_text import CLIPTextEncoder
from vidlit.backbones.clip_video import CLIPVideoViT
from vidlit.cli import main
from vidlit.data.synth.internvid import write_internvid
from vidlit.tasks.video_text import VideoTextPretrain

RECIPES = Path(__file__).resolve().parents[2] / "recipes"

pytestmark = pytest.mark.slow  # through the CLI: ~11 s on 2 shared cores, plus imports


def test_clip_towers_config_instantiates_and_fits_a_step(tmp_path):
    # a smaller sample than the recipe writes on first use: two steps of 16 pairs need 12 videos
    data = write_internvid(tmp_path / "internvid_synth", num_train_videos=12, num_val_videos=2)
    runs = tmp_path / "runs"
    args = [
        "fit",
        "--config", str(RECIPES / "pretrain_viclip.yaml"),
        "--config", str(RECIPES / "viclip_clip_towers.yaml"),
        "--data.init_args.root", str(data),
        "--trainer.default_root_dir", str(runs),
        "--trainer.max_steps", "2",
        "--trainer.limit_val_batches", "0",
        "--trainer.logger", "false",
    ]  # fmt: skip
    main(args)
    (checkpoint,) = runs.rglob("last.ckpt")
    task = VideoTextPretrain.load_from_checkpoint(checkpoint, weights_only=True)
    assert isinstance(task.model.video, CLIPVideoViT) and isinstance(task.model.text, CLIPTextEncoder)
    assert task.model.text.max_length == 32 and task.model.drop_ratio == 0.75
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 2
    # the text tower trained (not frozen): its weights moved from the seeded initialization
    fresh = CLIPTextEncoder("clip_test", max_length=32)
    moved = task.model.text.model.token_embedding.weight - fresh.model.token_embedding.weight
    assert moved.abs().max() > 0
    # ExportBackbone wrote the CLIP video tower; it loads by name, for fine-tuning
    backbone = create_backbone("viclip_test", checkpoint_path=runs / "backbone.pt")
    torch.testing.assert_close(backbone.state_dict(), task.model.video.state_dict())
