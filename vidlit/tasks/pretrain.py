"""MVMPretrain: masked video modeling (VideoMAE / InternVideo) with Lightning.

    vidlit fit --config recipes/pretrain_mvm.yaml

trains a :class:`~vidlit.backbones.VideoViT` by reconstructing the pixels of 90% of a clip's
tubelets from the other 10% (VideoMAE, Tong et al., 2022; the masked branch of InternVideo,
Wang et al., 2022). :class:`ExportBackbone` writes the trained encoder as a plain state dict
that ``create_backbone(name, checkpoint_path=...)`` loads for fine-tuning with
:class:`~vidlit.tasks.TaskModule`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from vidlit.backbones._builder import register_backbone_prefix
from vidlit.backbones.mvm import (
    MVMOutput,
    decoder_for,
    masked_reconstruction,
)
from vidlit.callbacks import smoke_run
from vidlit.checkpoint_io import AtomicCheckpointIO
from vidlit.core.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from vidlit.tasks.empty_batches import EmptyBatches
from vidlit.tasks.finetune import check_finite_loss, record_backbone_prefix, renamed_attribute
from vidlit.tasks.optim import (
    LRSchedulerCallable,
    OptimizerCallable,
    check_interval,
    configure_optimizers,
    default_scheduler,
    weight_decay_groups,
)

__all__ = ["ExportBackbone", "MVMPretrain", "save_backbone", "weight_decay_groups"]

log = logging.getLogger(__name__)

# VideoMAE's learning-rate rule: lr = base_lr * effective batch / 256 (run_mae_pretraining.py).
LR_REFERENCE_BATCH = 256


def default_optimizer(params: Iterable) -> Optimizer:
    """AdamW with betas (0.9, 0.95) and weight decay 0.05, VideoMAE's pretraining optimizer.

    The learning rate given here does not matter: :class:`MVMPretrain` sets every group's rate
    from ``base_lr`` and the effective batch size.
    """
    return torch.optim.AdamW(params, lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)


def save_backbone(backbone: nn.Module, path: str | Path) -> Path:
    """Write a backbone's state dict to ``path`` atomically (temporary file, fsync, rename).

    The file is a plain ``{name: tensor}`` dict on the CPU, VideoViT's own key names, readable
    with ``torch.load(weights_only=True)`` and by ``create_backbone(name, checkpoint_path=path)``.

    Returns:
        ``path``.
    """
    backbone = getattr(backbone, "_orig_mod", backbone)  # a torch.compile wrapper
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    path = Path(path)
    AtomicCheckpointIO().save_checkpoint(state, path)
    return path


@register_backbone_prefix
class MVMPretrain(L.LightningModule):
    """Masked video modeling: VideoMAE pretraining of a video backbone (Tong et al., 2022).

    Every step draws a fresh tube mask per clip (:func:`~vidlit.backbones.mvm.tube_mask`),
    encodes the visible tubelets, reconstructs the masked ones with an
    :class:`~vidlit.backbones.mvm.MVMDecoder` and minimizes the mean squared error against
    per-tubelet normalized pixels (:func:`~vidlit.backbones.mvm.pixel_targets`); the same
    computation as :class:`~vidlit.backbones.mvm.MaskedVideoModel`. InternVideo (Wang et al.,
    2022) pretrains its masked branch the same way. Batches need ``"video"``
    (``[b, c, t, h, w]`` float, normalized by ``pixel_mean``/``pixel_std``); ``"video_ids"``
    is used in error messages.

    Learning rate: following VideoMAE, the rate is ``base_lr * effective_batch / 256`` with
    ``effective_batch = batch_size * devices * nodes * accumulate_grad_batches``. The batch size
    is read from the data module's ``batch_size`` (or the train loader's) when the optimizer is
    configured. ``optimizer`` is called with two parameter groups (see
    :func:`weight_decay_groups`), so ``lr`` in its arguments is ignored: the module then
    overwrites every group's ``lr`` with the scaled rate, before ``scheduler`` wraps the
    optimizer. The rate used is logged at INFO level.

    Validation reports ``val/loss`` with a mask that depends only on the batch index, so the
    number is comparable across epochs and runs.

    Args:
        backbone: the encoder, e.g. ``class_path: vidlit.backbones.create_backbone`` with
            ``init_args: {name: vit_base_patch16_16x224}``, or a
            :class:`~vidlit.backbones.VideoViT`. It must accept ``visible_idx``.
        mask_ratio: fraction of spatial positions hidden per clip (VideoMAE: 0.9).
        decoder_dim: decoder width (VideoMAE ViT-B: 384).
        decoder_depth: decoder blocks (VideoMAE: 4).
        decoder_heads: decoder attention heads (VideoMAE ViT-B: 6).
        norm_pix_loss: reconstruct per-tubelet normalized pixels (VideoMAE's default).
        pixel_mean: per-channel mean the data module subtracted (ImageNet's by default); targets
            are built on un-normalized pixels. ``null`` when the clips are not normalized.
        pixel_std: per-channel standard deviation the data module divided by.
        optimizer: builds the optimizer from parameter groups (default
            :func:`default_optimizer`: AdamW, betas (0.9, 0.95), weight decay 0.05).
        base_lr: learning rate per 256 clips of effective batch (VideoMAE's 1.5e-4; at an
            effective batch of 1024 the rate is ``1.5e-4 * 1024 / 256 = 6e-4``).
        scheduler: builds a scheduler from the optimizer (default :func:`default_scheduler`);
            a :class:`~vidlit.tasks.WarmupCosineLR` with ``total_steps: 0`` is sized to the
            trainer's estimated steps. ``null`` for a constant rate.
        scheduler_interval: step the scheduler every ``"step"`` or every ``"epoch"``.
        compile: ``torch.compile`` the backbone in place (``nn.Module.compile``, so state-dict
            keys do not change) in ``configure_model``.

    Attributes:
        backbone_prefix: where the backbone's weights sit in this module's state dict, recorded in
            its checkpoints for ``create_backbone(..., checkpoint_path=)``.
        use_compile: the ``compile`` argument (``compile`` itself would hide ``nn.Module.compile``);
            ``compile_backbone``, its former name, is a deprecated alias.
    """

    backbone_prefix: ClassVar[str] = "backbone."
    compile_backbone = renamed_attribute("compile_backbone", "use_compile")

    def __init__(
        self,
        backbone: nn.Module,
        mask_ratio: float = 0.9,
        decoder_dim: int = 384,
        decoder_depth: int = 4,
        decoder_heads: int = 6,
        norm_pix_loss: bool = True,
        pixel_mean: Sequence[float] | None = IMAGENET_DEFAULT_MEAN,
        pixel_std: Sequence[float] | None = IMAGENET_DEFAULT_STD,
        optimizer: OptimizerCallable = default_optimizer,
        base_lr: float = 1.5e-4,
        scheduler: LRSchedulerCallable | None = default_scheduler,
        scheduler_interval: str = "step",
        compile: bool = False,
    ):
        super().__init__()
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        check_interval(scheduler_interval)
        if base_lr <= 0:
            raise ValueError(f"base_lr must be positive, got {base_lr}")
        self.backbone = backbone
        # fails now, not at the first step, on a backbone that is not a VideoViT, or if the ratio
        # leaves nothing visible or masked
        self.decoder = decoder_for(backbone, decoder_dim, decoder_depth, decoder_heads, mask_ratio)
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.pixel_mean = tuple(pixel_mean) if pixel_mean is not None else None
        self.pixel_std = tuple(pixel_std) if pixel_std is not None else None
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.use_compile = compile
        self._compiled = False
        self.empty_batches = EmptyBatches()  # batches whose videos were all unreadable

    # -- model ----------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_backbone_prefix(self, checkpoint)

    def configure_model(self) -> None:
        if self.use_compile and not self._compiled:
            self.backbone.compile()
            self._compiled = True

    def forward(self, video: Tensor, generator: torch.Generator | None = None) -> MVMOutput:
        """Mask ``video`` with fresh tube masks and return the reconstruction loss.

        Args:
            video: ``[b, c, t, h, w]`` clips.
            generator: generator for the masks; the global one of ``video``'s device when ``None``
                (seeded by ``seed_everything`` and, per epoch, by ``ReproducibleEpochs``).
        """
        return masked_reconstruction(self, video, self.mask_ratio, generator)

    @staticmethod
    def _video(batch: dict[str, Any]) -> Tensor:
        if "video" not in batch:
            raise KeyError(
                f"MVMPretrain needs batch['video'] ([b, c, t, h, w]); the batch has {sorted(batch)}"
            )
        return batch["video"]

    # -- steps ----------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        video = self._video(batch)
        if self.empty_batches.skip(self, batch, "train"):
            return None  # every video unreadable: no loss (it would be NaN), no optimizer step
        loss = self(video).loss
        check_finite_loss(self, {"loss": loss}, batch, batch_idx)
        size = video.shape[0]
        self.log("train/loss", loss.detach(), batch_size=size)
        self.log("loss", loss.detach(), prog_bar=True, logger=False, batch_size=size)
        return loss

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        video = self._video(batch)
        if self.empty_batches.skip(self, batch, stage):
            return
        # the mask depends only on the batch index: comparable numbers, global RNG untouched
        generator = torch.Generator().manual_seed(batch_idx)
        loss = self(video, generator=generator).loss
        self.log(f"{stage}/loss", loss, batch_size=video.shape[0], sync_dist=True, prog_bar=stage == "val")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_train_epoch_end(self) -> None:
        self.empty_batches.end_epoch(self, "train")

    def on_validation_epoch_end(self) -> None:
        self.empty_batches.end_epoch(self, "val")

    def on_test_epoch_end(self) -> None:
        self.empty_batches.end_epoch(self, "test")

    # -- optimization ---------------------------------------------------------------------------

    def effective_batch_size(self) -> int:
        """``batch_size * devices * nodes * accumulate_grad_batches`` of the attached trainer.

        Works from the ``setup`` hook on: the train loader is loaded here when the trainer has not
        loaded it yet.

        Raises:
            ValueError: if neither the data module nor the train loader states a batch size.
        """
        trainer = self.trainer
        batch_size = getattr(trainer.datamodule, "batch_size", None) if trainer.datamodule else None
        if batch_size is None:
            # the trainer loads the train loader lazily, when the fit loop starts (after
            # configure_optimizers); setup_data is what estimated_stepping_batches calls for it, and a
            # no-op once loaded. Not estimated_stepping_batches itself: with max_steps and no
            # max_epochs it returns max_steps without loading anything.
            trainer.fit_loop.setup_data()
            batch_size = getattr(trainer.train_dataloader, "batch_size", None)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                "MVMPretrain scales the learning rate by the effective batch size, but neither the data "
                "module's batch_size nor the train DataLoader's batch_size is set"
            )
        return batch_size * trainer.world_size * trainer.accumulate_grad_batches

    def configure_optimizers(self) -> Any:
        effective = self.effective_batch_size()
        lr = self.base_lr * effective / LR_REFERENCE_BATCH
        log.info(
            "MVMPretrain: lr %.3g = base_lr %.3g x effective batch %d / 256", lr, self.base_lr, effective
        )
        groups = weight_decay_groups(self)
        return configure_optimizers(
            self, groups, self.optimizer, self.scheduler, self.scheduler_interval, lr=lr
        )

    # -- export ---------------------------------------------------------------------------------

    def save_backbone(self, path: str | Path) -> Path:
        """Write the backbone's weights to ``path`` atomically (see :func:`save_backbone`)."""
        return save_backbone(self.backbone, path)


class ExportBackbone(L.Callback):
    """Write the module's ``backbone`` as a plain state dict when training ends.

    The file loads with ``create_backbone(name, checkpoint_path=path)`` or
    ``VideoViT.from_pretrained(path, ...)``, e.g. into a fine-tuning recipe::

        backbone:
          class_path: vidlit.backbones.create_backbone
          init_args: {name: vit_test, checkpoint_path: runs/pretrain_mvm/backbone.pt}

    Only global rank 0 writes. A run that stops with an exception exports nothing; its Lightning
    checkpoints load the same way (``create_backbone(name, checkpoint_path="last.ckpt")``).
    Works for any module with a ``backbone`` attribute (``MVMPretrain``, ``TaskModule``).

    Args:
        path: output file; defaults to ``backbone.pt`` in ``trainer.default_root_dir``.
    """

    def __init__(self, path: str | None = None):
        self.path = path

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        backbone = getattr(pl_module, "backbone", None)
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"ExportBackbone: {type(pl_module).__name__} has no backbone module to export")
        if not trainer.is_global_zero:
            return
        path = Path(self.path) if self.path else Path(trainer.default_root_dir) / "backbone.pt"
        if smoke_run(trainer):  # its weights would overwrite a trained run's export
            print(f"fast_dev_run: backbone not exported to {path}")
            return
        save_backbone(backbone, path)
        log.info("exported the backbone to %s", path)
        print(f"Backbone written to {path}")
