"""TaskModule's ``compile`` option, the head's epoch hooks, and bf16-mixed MQ training on one GPU.

A compiled fit on a GPU is in ``tests/test_strategies.py``, with the other GPU training runs.
"""

import csv
import math
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torchmetrics import MetricCollection

from vidlit.backbones import create_backbone
from vidlit.cli import VidlitCLI, main
from vidlit.heads import ActionFormerHead, TaskHead
from vidlit.metrics.classification import TopKAccuracy
from vidlit.tasks import TaskModule

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "ego4d_mq.yaml")


def _module(**kwargs) -> TaskModule:
    return TaskModule(ActionFormerHead(in_dim=64, num_classes=3, embed_dim=32, head_dim=32), **kwargs)


@pytest.fixture
def compiled(monkeypatch) -> list[nn.Module]:
    """The modules ``nn.Module.compile`` is called on (without compiling anything)."""
    calls = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, *args, **kwargs: calls.append(self))
    return calls


def test_compile_the_backbone_once(compiled):
    module = _module(backbone=create_backbone("vit_test"), compile=True)
    assert compiled == []  # compiled when the trainer sets the model up, not at construction
    module.configure_model()
    module.configure_model()  # every trainer.fit / validate / test calls it again
    assert compiled == [module.backbone]


def test_compile_the_head_without_a_backbone(compiled):
    module = _module(compile=True)
    module.configure_model()
    assert compiled == [module.head]


def test_compile_is_off_by_default(compiled):
    _module(backbone=create_backbone("vit_test")).configure_model()
    assert compiled == []


def test_compile_from_the_cli(mq_root):
    cli = VidlitCLI(
        args=["--config", RECIPE, "--data.init_args.root", str(mq_root), "--model.init_args.compile", "true"],
        run=False,
    )
    assert cli.model.use_compile is True


@pytest.mark.slow
def test_compiled_backbone_matches_eager_and_keeps_checkpoint_names():
    # about 30 s on 2 CPU cores, nearly all of it inductor compiling the two blocks
    module = _module(backbone=create_backbone("vit_test"), compile=True).eval()
    video = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        eager = module.backbone(video, output="temporal")
    names = list(module.state_dict())
    module.configure_model()
    with torch.no_grad():
        compiled = module.backbone(video, output="temporal")
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    assert list(module.state_dict()) == names  # no `_orig_mod.` prefixes: old checkpoints still load


# -- one GPU ----------------------------------------------------------------------------------------


@pytest.fixture
def data_root(mq_root, tmp_path):
    return str(shutil.copytree(mq_root, tmp_path / "data"))


@pytest.mark.gpu
def test_recipe_bf16_mixed_on_one_gpu(data_root, tmp_path):
    runs = tmp_path / "runs"
    main(
        [
            "fit",
            "--config",
            RECIPE,
            "--data.init_args.root",
            data_root,
            "--trainer.default_root_dir",
            str(runs),
            "--trainer.accelerator",
            "gpu",
            "--trainer.devices",
            "1",
            "--trainer.precision",
            "bf16-mixed",
            "--trainer.max_epochs",
            "1",
        ]
    )
    rows = [r for r in csv.DictReader((runs / "version_0" / "metrics.csv").open()) if r.get("val/mAP")]
    assert 0.0 <= float(rows[-1]["val/mAP"]) <= 1.0 and math.isfinite(float(rows[-1]["val/loss"]))
    assert (runs / "version_0" / "checkpoints" / "last.ckpt").is_file()


# -- the head's epoch hooks -------------------------------------------------------------------------


class _EpochLoggingHead(TaskHead):
    """A linear classifier on pooled features that records the hooks and evaluations it sees."""

    feature_layout = "pooled"

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.events: list[tuple[str, int]] = []

    def forward(self, features, batch):
        if not self.training:
            self.events.append(("eval", -1))
        return self.fc(features)

    def loss(self, outputs, batch):
        return {"loss": nn.functional.cross_entropy(outputs, batch["labels"])}

    def predict(self, outputs, batch):
        return [{"video_id": i, "scores": s} for i, s in zip(batch["video_ids"], outputs.softmax(-1))]

    def metrics(self):
        return MetricCollection({"acc": TopKAccuracy(2, top_k=(1,))})

    def on_train_epoch_start(self, epoch):
        self.events.append(("start", epoch))

    def on_train_epoch_end(self, epoch):
        self.events.append(("end", epoch))


def _epoch_batch(i: int) -> dict:
    labels = torch.tensor([i % 2, 1 - i % 2])
    targets = [{"video_id": f"v{i}{j}", "label": int(y)} for j, y in enumerate(labels)]
    ids = [t["video_id"] for t in targets]
    return {"features": torch.randn(2, 4), "labels": labels, "targets": targets, "video_ids": ids, "index": i}


def _fit_on_three_batches(head: TaskHead, tmp_path, **trainer_kwargs) -> L.Trainer:
    """Two epochs over 3 training batches, each epoch closing with 1 validation batch."""
    batches = [_epoch_batch(i) for i in range(3)]
    trainer = L.Trainer(
        max_epochs=2,
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **trainer_kwargs,
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    trainer.fit(TaskModule(head), loader, torch.utils.data.DataLoader(batches[:1], batch_size=None))
    return trainer


def test_head_hooks_get_the_epoch_and_end_before_validation(tmp_path):
    """``on_train_epoch_end`` comes after the epoch's last step and before its validation."""
    head = _EpochLoggingHead()
    _fit_on_three_batches(head, tmp_path)
    assert head.events == [
        ("start", 0),
        ("end", 0),
        ("eval", -1),
        ("start", 1),
        ("end", 1),
        ("eval", -1),
    ]


class _StepLoggingHead(_EpochLoggingHead):
    """Also records each training step (by the batch's ``index``)."""

    def forward(self, features, batch):
        if self.training:
            self.events.append(("step", int(batch["index"])))
        return super().forward(features, batch)


class _OptimizerStepLog(L.Callback):
    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        pl_module.head.events.append(("update", trainer.global_step))


def test_head_epoch_end_under_limit_train_batches_and_accumulation(tmp_path):
    """With 3 batches available, ``limit_train_batches=2`` and ``accumulate_grad_batches=2``, each epoch
    ends (for the head) once, after its 2nd step and the optimizer update it completes, before validation.
    """
    head = _StepLoggingHead()
    trainer = _fit_on_three_batches(
        head, tmp_path, limit_train_batches=2, accumulate_grad_batches=2, callbacks=[_OptimizerStepLog()]
    )
    epoch = [("step", 0), ("step", 1)]
    assert head.events == [
        ("start", 0),
        *epoch,
        ("update", 0),
        ("end", 0),
        ("eval", -1),
        ("start", 1),
        *epoch,
        ("update", 1),
        ("end", 1),
        ("eval", -1),
    ]
    assert trainer.global_step == 2
