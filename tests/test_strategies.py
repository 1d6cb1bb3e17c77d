"""Scaling: VideoFSDPStrategy (policies, YAML, errors), FSDP and compiled training on a GPU, 8-bit AdamW."""

import csv
import math
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric, MetricCollection

from vidlit.backbones import VideoViT, create_backbone
from vidlit.backbones.vit import Block
from vidlit.cli import VidlitCLI, main
from vidlit.heads import TaskHead
from vidlit.layers.temporal_pyramid import LocalTransformerBlock
from vidlit.strategies import DEFAULT_BLOCK_CLASSES, VideoFSDPStrategy, resolve_block_classes
from vidlit.tasks import TaskModule

RECIPE = str(Path(__file__).resolve().parents[1] / "recipes" / "ego4d_mq.yaml")
SMALL = [
    "--model.init_args.head.init_args.embed_dim",
    "32",
    "--model.init_args.head.init_args.head_dim",
    "32",
]


def _wraps(policy, module: nn.Module) -> bool:
    """Whether a ModuleWrapPolicy makes ``module`` its own unit (torch's policy call signature)."""
    return bool(policy(module=module, recurse=False, nonwrapped_numel=0))


def test_default_policies_wrap_and_checkpoint_vidlit_blocks():
    strategy = VideoFSDPStrategy()
    assert strategy.block_classes == (Block, LocalTransformerBlock)
    assert len(DEFAULT_BLOCK_CLASSES) == 2
    for policy in (strategy.auto_wrap_policy, strategy.activation_checkpointing_policy):
        assert _wraps(policy, Block(16, 2))
        assert _wraps(policy, LocalTransformerBlock(16, 2))
        assert not _wraps(policy, nn.Linear(4, 4))
    assert strategy.sharding_strategy.name == "FULL_SHARD"
    assert strategy.cpu_offload.offload_params is False


def test_options_reach_lightning_fsdp():
    strategy = VideoFSDPStrategy(
        sharding_strategy="SHARD_GRAD_OP",
        activation_checkpointing=False,
        block_classes=["vidlit.backbones.vit.Block"],
        cpu_offload=True,
        state_dict_type="sharded",
    )
    assert strategy.block_classes == (Block,)
    assert not _wraps(strategy.auto_wrap_policy, LocalTransformerBlock(16, 2))
    assert strategy.activation_checkpointing_policy is None
    assert strategy.sharding_strategy.name == "SHARD_GRAD_OP"
    assert strategy.cpu_offload.offload_params is True
    assert strategy._state_dict_type == "sharded"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("vidlit.backbones.vit.Blok", r"cannot import 'vidlit\.backbones\.vit\.Blok'.*has no 'Blok'"),
        ("nopackage.layers.Block", r"cannot import 'nopackage\.layers\.Block'.*nopackage"),
        ("Block", r"'Block' is not an import path"),
        ("collections.OrderedDict", r"'collections\.OrderedDict' is not a torch\.nn\.Module subclass"),
    ],
)
def test_bad_block_class_names_it(path, message):
    with pytest.raises(ValueError, match=f"block_classes: {message}"):
        VideoFSDPStrategy(block_classes=[path])


def test_bad_options():
    with pytest.raises(ValueError, match="sharding_strategy must be"):
        VideoFSDPStrategy(sharding_strategy="FULL")
    with pytest.raises(ValueError, match="state_dict_type must be"):
        VideoFSDPStrategy(state_dict_type="gathered")
    with pytest.raises(ValueError, match="sets auto_wrap_policy from block_classes"):
        VideoFSDPStrategy(auto_wrap_policy={nn.Linear})


class _OtherBlock(nn.Module):
    pass


class _OtherBackbone(nn.Module):
    block_class = _OtherBlock


def test_prepare_blocks_adds_declared_blocks_and_stops_double_checkpointing():
    backbone = create_backbone("vit_test", grad_checkpointing=True)
    strategy = VideoFSDPStrategy()
    strategy.prepare_blocks(nn.ModuleDict({"backbone": backbone, "other": _OtherBackbone()}))
    assert strategy.block_classes == (Block, LocalTransformerBlock, _OtherBlock)
    assert _wraps(strategy.auto_wrap_policy, _OtherBlock())
    assert _wraps(strategy.activation_checkpointing_policy, _OtherBlock())
    assert backbone.grad_checkpointing is False  # FSDP's checkpoint wrappers do it instead

    explicit = VideoFSDPStrategy(block_classes=["vidlit.backbones.vit.Block"], activation_checkpointing=False)
    backbone = create_backbone("vit_test", grad_checkpointing=True)
    explicit.prepare_blocks(nn.ModuleDict({"backbone": backbone, "other": _OtherBackbone()}))
    assert explicit.block_classes == (Block,)
    assert backbone.grad_checkpointing is True


def test_resolve_accepts_classes_and_drops_repeats():
    assert resolve_block_classes([Block, "vidlit.backbones.vit.Block", VideoViT]) == (Block, VideoViT)


def test_yaml_config_builds_the_strategy(mq_root, tmp_path):
    config = tmp_path / "fsdp.yaml"
    config.write_text(
        "trainer:\n"
        "  accelerator: cpu\n"
        "  precision: bf16-mixed\n"
        "  strategy:\n"
        "    class_path: vidlit.strategies.VideoFSDPStrategy\n"
        "    init_args:\n"
        "      sharding_strategy: HYBRID_SHARD\n"
        "      activation_checkpointing: false\n"
        "      block_classes: [vidlit.layers.temporal_pyramid.LocalTransformerBlock]\n"
        "      state_dict_type: sharded\n"
    )
    cli = VidlitCLI(
        args=["--config", RECIPE, "--config", str(config), "--data.init_args.root", str(mq_root)], run=False
    )
    strategy = cli.trainer.strategy
    assert isinstance(strategy, VideoFSDPStrategy)
    assert strategy.block_classes == (LocalTransformerBlock,)
    assert strategy.sharding_strategy.name == "HYBRID_SHARD"
    assert strategy.activation_checkpointing_policy is None
    assert strategy._state_dict_type == "sharded"
    assert cli.trainer.precision == "bf16-mixed"


def test_cpu_run_stops_with_a_clear_error(tmp_path):
    module = TaskModule(head=_ClipHead(), backbone=create_backbone("vit_test"))
    trainer = L.Trainer(
        accelerator="cpu", devices=1, strategy=VideoFSDPStrategy(), logger=False, default_root_dir=tmp_path
    )
    with pytest.raises(ValueError, match="VideoFSDPStrategy needs GPUs.*trainer.accelerator"):
        trainer.fit(module, datamodule=_RandomClips())


# -- a tiny clip-classification task on random videos, for training a VideoViT end to end --------


class _ClipAccuracy(Metric):
    def __init__(self):
        super().__init__()
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds, targets):
        self.correct += sum(int(p["label"] == t["label"]) for p, t in zip(preds, targets))
        self.total += len(targets)

    def compute(self):
        return self.correct.float() / self.total.clamp(min=1)


class _ClipHead(TaskHead):
    input = "video"
    feature_layout = "pooled"

    def __init__(self, in_dim: int = 64, num_classes: int = 3):
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, features, batch):
        return self.fc(features)

    def loss(self, outputs, batch):
        return {"loss": F.cross_entropy(outputs.float(), batch["labels"])}

    def predict(self, outputs, batch):
        return [{"video_id": v, "label": int(k)} for v, k in zip(batch["video_ids"], outputs.argmax(-1))]

    def metrics(self):
        return MetricCollection({"acc": _ClipAccuracy()})


class _Clips(Dataset):
    def __init__(self, n: int):
        generator = torch.Generator().manual_seed(0)
        self.labels = torch.randint(0, 3, (n,), generator=generator)
        self.videos = (
            torch.randn(n, 3, 8, 32, 32, generator=generator) + self.labels[:, None, None, None, None]
        )

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.videos[i], int(self.labels[i]), f"clip{i}"


def _collate(samples):
    videos, labels, ids = zip(*samples)
    return {
        "video": torch.stack(videos),
        "labels": torch.tensor(labels),
        "video_ids": list(ids),
        "targets": [{"video_id": v, "label": k} for v, k in zip(ids, labels)],
    }


class _RandomClips(L.LightningDataModule):
    def train_dataloader(self):
        return DataLoader(_Clips(16), batch_size=4, shuffle=True, collate_fn=_collate)

    def val_dataloader(self):
        return DataLoader(_Clips(8), batch_size=4, collate_fn=_collate)


@pytest.mark.gpu
def test_fsdp_fit_on_one_gpu(tmp_path):
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper
    from torch.distributed.fsdp import FullyShardedDataParallel

    module = TaskModule(head=_ClipHead(), backbone=create_backbone("vit_test"))
    trainer = L.Trainer(
        accelerator="gpu",
        devices=1,
        strategy=VideoFSDPStrategy(),
        precision="bf16-mixed",
        max_epochs=2,
        logger=CSVLogger(tmp_path, name=""),
        log_every_n_steps=1,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
    )
    trainer.fit(module, datamodule=_RandomClips())
    wrapped = trainer.strategy.model
    assert sum(isinstance(m, FullyShardedDataParallel) for m in wrapped.modules()) == 1 + 2  # root + blocks
    assert sum(isinstance(m, CheckpointWrapper) for m in wrapped.modules()) == 2
    rows = list(csv.DictReader((tmp_path / "version_0" / "metrics.csv").open()))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)  # 2 epochs of 4 batches
    assert any(r.get("val/acc") for r in rows)
    (ckpt,) = (tmp_path / "version_0" / "checkpoints").glob("*.ckpt")
    state = torch.load(ckpt, weights_only=True, map_location="cpu")["state_dict"]
    assert state["backbone.blocks.1.mlp.fc2.weight"].shape == (64, 256)  # full (gathered) weights


@pytest.mark.gpu
def test_compiled_backbone_fit_on_one_gpu(tmp_path):
    module = TaskModule(head=_ClipHead(), backbone=create_backbone("vit_test"), compile=True)
    trainer = L.Trainer(
        accelerator="gpu",
        devices=1,
        precision="bf16-mixed",
        max_epochs=2,
        logger=CSVLogger(tmp_path, name=""),
        log_every_n_steps=1,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
    )
    trainer.fit(module, datamodule=_RandomClips())
    assert module.backbone._compiled_call_impl is not None  # nn.Module.compile, in place
    rows = list(csv.DictReader((tmp_path / "version_0" / "metrics.csv").open()))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    (ckpt,) = (tmp_path / "version_0" / "checkpoints").glob("*.ckpt")
    state = torch.load(ckpt, weights_only=True, map_location="cpu")["state_dict"]
    assert "backbone.blocks.0.attn.qkv.weight" in state and not any("_orig_mod" in k for k in state)


# -- bitsandbytes 8-bit AdamW as an optimizer choice -----------------------------------------------

ADAMW8BIT = [
    "--model.init_args.optimizer",
    "{class_path: bitsandbytes.optim.AdamW8bit, init_args: {lr: 0.001}}",
]


def test_adamw8bit_parses_through_the_cli(mq_root):
    bnb = pytest.importorskip("bitsandbytes")
    cli = VidlitCLI(args=["--config", RECIPE, "--data.init_args.root", str(mq_root), *ADAMW8BIT], run=False)
    optimizer = cli.model.optimizer([nn.Parameter(torch.zeros(8))])
    assert isinstance(optimizer, bnb.optim.AdamW8bit)
    assert optimizer.defaults["lr"] == 0.001


@pytest.mark.slow
def test_adamw8bit_trains_and_resumes_on_cpu(mq_root, tmp_path):
    # bitsandbytes 0.50 runs its 8-bit optimizers on the CPU too (older releases need CUDA)
    pytest.importorskip("bitsandbytes")
    data = shutil.copytree(mq_root, tmp_path / "data")
    common = ["--config", RECIPE, "--data.init_args.root", str(data), *ADAMW8BIT, *SMALL]
    common += ["--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.limit_train_batches", "2"]
    common += ["--trainer.limit_val_batches", "1"]
    main(["fit", *common, "--trainer.max_epochs", "1"])
    last = tmp_path / "runs" / "version_0" / "checkpoints" / "last.ckpt"
    states = torch.load(last, weights_only=True)["optimizer_states"][0]["state"].values()
    moments = [s.get("__bnb_optimizer_quant_state__", s)["state1"] for s in states]
    assert any(m.dtype == torch.uint8 for m in moments)  # e.g. the head's 256 -> 32 input projection
    main(["fit", *common, "--trainer.max_epochs", "2", "--ckpt_path", "last"])  # train longer: a resume
    assert not (tmp_path / "runs" / "version_1").exists()  # the resumed run continues its own folder
    rows = [r for r in csv.DictReader((tmp_path / "runs" / "version_0" / "metrics.csv").open())]
    assert any(r.get("val/mAP") and r["epoch"] == "1" for r in rows)
