"""vidlit.backbones._builder: Lightning checkpoints name their backbone's prefix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vidlit.backbones import create_backbone
from vidlit.backbones._builder import (
    BACKBONE_PREFIX_KEY,
    lightning_backbone_prefixes,
    lightning_backbone_weights,
    register_backbone_prefix,
)


def _checkpoint(state: dict, **extra) -> dict:
    return {"pytorch-lightning_version": "2.5", "state_dict": state, **extra}


def test_task_modules_declare_their_prefixes():
    from vidlit.tasks import MVMPretrain, TaskModule, VideoTextPretrain

    assert (TaskModule.backbone_prefix, MVMPretrain.backbone_prefix) == ("backbone.", "backbone.")
    assert VideoTextPretrain.backbone_prefix == "model.video."
    assert lightning_backbone_prefixes()[:2] == ("backbone.", "model.video.")


def test_recorded_prefix_wins_over_the_registered_ones():
    weight = torch.ones(2)
    state = {"backbone.a": weight, "tower.a": 2 * weight}
    assert torch.equal(lightning_backbone_weights(_checkpoint(state))["a"], weight)
    recorded = lightning_backbone_weights(_checkpoint(state, **{BACKBONE_PREFIX_KEY: "tower."}))
    assert torch.equal(recorded["a"], 2 * weight)


def test_register_rejects_a_class_without_a_prefix():
    class NoPrefix:
        pass

    with pytest.raises(ValueError, match="NoPrefix.backbone_prefix must be a key prefix"):
        register_backbone_prefix(NoPrefix)


def test_checkpoint_loads_where_vidlit_tasks_is_not_imported(tmp_path):
    """A checkpoint records its prefix, so a script that imports only vidlit.backbones reads it."""
    import lightning as L

    from vidlit.tasks import VideoTextPretrain

    torch.manual_seed(0)
    task = VideoTextPretrain(create_backbone("vit_test", depth=1), text="text_test", proj_dim=16)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(task)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    assert torch.load(path, weights_only=True)[BACKBONE_PREFIX_KEY] == "model.video."
    expected = tmp_path / "expected.pt"
    torch.save(task.model.video.state_dict(), expected)
    script = (
        "import sys, torch; from vidlit.backbones import create_backbone\n"
        f"m = create_backbone('vit_test', depth=1, checkpoint_path={str(path)!r})\n"
        f"ref = torch.load({str(expected)!r}, weights_only=True)\n"
        "assert 'vidlit.tasks' not in sys.modules\n"
        "assert all(torch.equal(m.state_dict()[k], v) for k, v in ref.items())\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", script], check=True, cwd=root, env={"PYTHONPATH": str(root)})
