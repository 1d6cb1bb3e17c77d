"""MVMPretrain: optimizer groups, learning-rate scaling, errors, export and loading for fine-tuning."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from vidlit.backbones import VideoViT, create_backbone
from vidlit.tasks import ExportBackbone, MVMPretrain
from vidlit.tasks.pretrain import weight_decay_groups


def clips(num: int, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {"video": torch.randn(3, 8, 32, 32, generator=generator), "video_id": f"clip{i}"} for i in range(num)
    ]


def collate(samples: list[dict]) -> dict:
    return {
        "video": torch.stack([s["video"] for s in samples]),
        "video_ids": [s["video_id"] for s in samples],
    }


class TinyVideos(L.LightningDataModule):
    def __init__(self, batch_size: int = 2, num: int = 4, poison: bool = False):
        super().__init__()
        self.batch_size = batch_size
        self.data = clips(num)
        if poison:
            self.data[1]["video"][0, 0, 0, 0] = float("nan")

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size, collate_fn=collate)

    def val_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size, collate_fn=collate)


def tiny_module(**kwargs) -> MVMPretrain:
    torch.manual_seed(0)
    args = dict(mask_ratio=0.75, decoder_dim=32, decoder_depth=1, decoder_heads=4)
    return MVMPretrain(create_backbone("vit_test"), **{**args, **kwargs})


def trainer(tmp_path, **kwargs) -> L.Trainer:
    args = dict(
        default_root_dir=tmp_path,
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=1,
    )
    return L.Trainer(**{**args, **kwargs})


def test_weight_decay_groups_follow_videomae():
    module = tiny_module()
    decay, no_decay = weight_decay_groups(module)
    names = {id(p): n for n, p in module.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert no_decay["weight_decay"] == 0.0 and "weight_decay" not in decay
    assert "decoder.mask_token" in skipped
    assert {"backbone.blocks.0.attn.q_bias", "backbone.norm.weight", "decoder.head.bias"} <= skipped
    assert {"backbone.blocks.0.attn.qkv.weight", "backbone.patch_embed.proj.weight"} <= decayed
    assert "decoder.encoder_to_decoder.weight" in decayed
    assert len(decayed) + len(skipped) == len(names)
    learned = MVMPretrain(
        create_backbone("vit_test", pos_embed_type="learned"), decoder_dim=32, decoder_heads=4
    )
    assert "backbone.pos_embed" in {
        n
        for n, p in learned.named_parameters()
        if any(p is q for q in weight_decay_groups(learned)[1]["params"])
    }


def test_learning_rate_scales_with_the_effective_batch(tmp_path):
    module = tiny_module(base_lr=1e-3, scheduler=None)
    data = TinyVideos(batch_size=2, num=8)
    trainer(tmp_path, accumulate_grad_batches=2).fit(module, datamodule=data)
    (optimizer,) = module.trainer.optimizers
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["betas"] == (0.9, 0.95)
    assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(1e-3 * 2 * 2 / 256)] * 2
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]


class _BatchSizeAtSetup(L.Callback):
    def setup(self, trainer, pl_module, stage):
        self.size = pl_module.effective_batch_size()


def test_learning_rate_scales_with_a_plain_train_loader(tmp_path):
    """No data module and only ``max_steps`` (so ``max_epochs`` is -1 and
    ``estimated_stepping_batches`` loads nothing): the batch size comes from the loader, loaded early
    enough for ``configure_optimizers`` and even for a callback's ``setup``."""
    module = tiny_module(base_lr=1e-3, scheduler=None)
    probe = _BatchSizeAtSetup()
    loader = DataLoader(clips(4), batch_size=2, collate_fn=collate)
    trainer(tmp_path, max_steps=1, limit_val_batches=0, callbacks=[probe]).fit(module, loader)
    assert probe.size == 2
    (optimizer,) = module.trainer.optimizers
    assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(1e-3 * 2 / 256)] * 2


def test_default_scheduler_warms_up_and_logs(tmp_path):
    module = tiny_module()
    trainer(tmp_path, max_steps=3).fit(module, datamodule=TinyVideos())
    (config,) = module.trainer.lr_scheduler_configs
    assert config.scheduler.total_steps == 3 and config.interval == "step"
    metrics = module.trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and torch.isfinite(metrics["val/loss"])


def test_validation_loss_is_reproducible(tmp_path):
    module = tiny_module()
    t = trainer(tmp_path)
    first = t.validate(module, datamodule=TinyVideos(), verbose=False)[0]["val/loss"]
    torch.manual_seed(123)  # the global RNG must not matter
    assert t.validate(module, datamodule=TinyVideos(), verbose=False)[0]["val/loss"] == first


def test_non_finite_loss_names_the_clips(tmp_path):
    with pytest.raises(
        FloatingPointError, match=r"non-finite training loss at epoch 0, step 0, batch 0.*'clip1'"
    ):
        trainer(tmp_path).fit(tiny_module(), datamodule=TinyVideos(poison=True))


def test_bad_arguments_fail_early():
    with pytest.raises(ValueError, match="mask_ratio"):
        tiny_module(mask_ratio=1.0)
    with pytest.raises(ValueError, match="at least one must stay visible"):
        tiny_module(mask_ratio=0.99)  # 16 positions per frame: nothing left visible
    with pytest.raises(ValueError, match="VideoViT-like"):
        MVMPretrain(torch.nn.Linear(2, 2))
    with pytest.raises(KeyError, match=r"batch\['video'\]"):
        tiny_module().training_step({"frames": torch.zeros(1)}, 0)


def test_exported_backbone_and_checkpoint_load_for_fine_tuning(tmp_path):
    module = tiny_module()
    before = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    t = trainer(tmp_path, enable_checkpointing=True, callbacks=[ExportBackbone(), checkpoints])
    t.fit(module, datamodule=TinyVideos())
    trained = module.backbone.state_dict()
    assert any(not torch.equal(before[k], trained[k]) for k in trained)  # it did train

    exported = tmp_path / "backbone.pt"
    state = torch.load(exported, weights_only=True)
    assert set(state) == set(trained)  # plain VideoViT keys, nothing of the decoder
    for path in (exported, tmp_path / "ckpt" / "last.ckpt"):
        loaded = create_backbone("vit_test", checkpoint_path=path)
        assert all(torch.equal(loaded.state_dict()[k], trained[k]) for k in trained), path
    loaded = VideoViT.from_pretrained(exported, num_heads=4, num_frames=8, img_size=32)
    assert all(torch.equal(loaded.state_dict()[k], trained[k]) for k in trained)


def test_save_backbone_is_atomic_and_unwraps_compile(tmp_path):
    module = tiny_module(compile=True)
    keys = set(module.state_dict())
    module.configure_model()  # compiles in place (lazily: nothing runs here)
    assert set(module.state_dict()) == keys  # checkpoints keep their names
    path = module.save_backbone(tmp_path / "sub" / "backbone.pt")
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    assert set(torch.load(path, weights_only=True)) == set(module.backbone.state_dict())


def test_wrapped_checkpoint_keys_remap_in_any_order():
    from vidlit.backbones.vit import remap_checkpoint_keys

    backbone = create_backbone("vit_test")
    compiled = torch.compile(backbone).state_dict()  # "_orig_mod."-prefixed, nothing is compiled yet
    for prefix in ("backbone.", "_orig_mod.backbone.", "module.backbone."):
        checkpoint = {"state_dict": {f"{prefix}{k}": v for k, v in compiled.items()}, "epoch": 3}
        assert set(remap_checkpoint_keys(checkpoint)) == set(backbone.state_dict()), prefix


# -- end to end: the recipe through the CLI, then fine-tuning from its export -----------------------

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture(scope="module")
def video_root(tmp_path_factory) -> Path:
    """16 synthetic clips (12 train, 4 val) in the layout the recipes' data module reads."""
    from vidlit.data.video_list import write_synthetic_video_list

    return write_synthetic_video_list(tmp_path_factory.mktemp("videos") / "data", num_videos=16)


@pytest.mark.slow
def test_recipe_pretrains_exports_and_fine_tunes(video_root, tmp_path):
    from vidlit.cli import main

    runs = tmp_path / "pretrain"
    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    short += ["--trainer.limit_val_batches", "1", "--trainer.log_every_n_steps", "1"]
    data = ["--data.init_args.root", str(video_root), "--data.init_args.batch_size", "4"]
    main(["fit", "--config", str(RECIPES / "pretrain_mvm.yaml"), "--trainer.default_root_dir", str(runs),
          "--trainer.check_val_every_n_epoch", "1", *short, *data])  # fmt: skip
    exported = runs / "backbone.pt"
    rows = list(csv.DictReader((runs / "version_0" / "metrics.csv").open()))
    assert any(r.get("train/loss") for r in rows) and any(r.get("val/loss") for r in rows)
    trained = create_backbone("vit_test", checkpoint_path=runs / "version_0" / "checkpoints" / "last.ckpt")
    from_export = create_backbone("vit_test", checkpoint_path=exported)
    assert all(torch.equal(v, from_export.state_dict()[k]) for k, v in trained.state_dict().items())

    # a frozen linear probe from the export: the fine-tuned checkpoint holds exactly its weights
    overrides = tmp_path / "probe.yaml"
    overrides.write_text(
        "model:\n  init_args:\n    freeze_backbone: true\n"
        f"    backbone:\n      init_args: {{checkpoint_path: {exported}}}\n"
    )
    probe = tmp_path / "probe"
    main(["fit", "--config", str(RECIPES / "video_cls.yaml"), "--config", str(overrides),
          "--trainer.default_root_dir", str(probe), *short, *data])  # fmt: skip
    (checkpoint,) = probe.glob("version_0/checkpoints/last.ckpt")
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    for key, value in from_export.state_dict().items():
        assert torch.equal(state[f"backbone.{key}"], value), key


@pytest.mark.slow
def test_recipe_pretrains_on_a_list_without_labels(video_root, tmp_path):
    from vidlit.cli import main

    with open(video_root / "videos.csv") as f:
        paths = [row[0] for row in list(csv.reader(f))[1:]]
    unlabelled = tmp_path / "data"
    unlabelled.mkdir()
    for name, part in (("train.csv", paths[:12]), ("val.csv", paths[12:])):
        (unlabelled / name).write_text("path\n" + "".join(f"{video_root / p}\n" for p in part))
    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    short += ["--trainer.limit_val_batches", "1", "--trainer.check_val_every_n_epoch", "1"]
    short += ["--trainer.log_every_n_steps", "1"]
    data = ["--data.init_args.root", str(unlabelled), "--data.init_args.synthetic", "false"]
    data += ["--data.init_args.batch_size", "4"]  # the recipe reads lists with labels: false
    runs = tmp_path / "runs"
    main(["fit", "--config", str(RECIPES / "pretrain_mvm.yaml"), "--trainer.default_root_dir", str(runs),
          *short, *data])  # fmt: skip
    rows = list(csv.DictReader((runs / "version_0" / "metrics.csv").open()))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")] + [
        float(r["val/loss"]) for r in rows if r.get("val/loss")
    ]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses))), losses
    # a classification head over the same unlabelled lists: the conflict, unwrapped from the link
    # that asked for num_classes (the command line prints it as its one `vidlit: error:` line)
    from vidlit.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"^data\.init_args\.labels is false: .* no classes"):
        main(["fit", "--config", str(RECIPES / "video_cls.yaml"), *data, "--data.init_args.labels", "false",
              "--trainer.default_root_dir", str(tmp_path / "cls")])  # fmt: skip
