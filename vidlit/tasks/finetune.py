"""TaskModule: a backbone (optional) and a task head, trained with Lightning."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from vidlit.backbones._builder import BACKBONE_PREFIX_KEY, register_backbone_prefix
from vidlit.data.augment import VideoAugment
from vidlit.heads.base import TaskHead
from vidlit.tasks.empty_batches import EmptyBatches, is_empty_batch
from vidlit.tasks.optim import (
    LRSchedulerCallable,
    OptimizerCallable,
    check_interval,
    configure_optimizers,
    layer_decay_groups,
)

log = logging.getLogger(__name__)


def default_optimizer(params: Iterable) -> Optimizer:
    """AdamW, lr 1e-4, weight decay 0.05: ActionFormer's and VideoMAE fine-tuning's choice."""
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)


def renamed_attribute(old: str, new: str) -> property:
    """A property ``old`` that reads and writes ``new`` with a FutureWarning (a deprecated alias)."""

    def get(self: Any) -> Any:
        warnings.warn(f"{type(self).__name__}.{old} is deprecated; use .{new}", FutureWarning, stacklevel=2)
        return getattr(self, new)

    def set(self: Any, value: Any) -> None:
        warnings.warn(f"{type(self).__name__}.{old} is deprecated; use .{new}", FutureWarning, stacklevel=2)
        setattr(self, new, value)

    return property(get, set, doc=f"Deprecated alias of ``{new}``.")


def record_backbone_prefix(module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
    """Record in a checkpoint where ``module`` keeps its video backbone (``module.backbone_prefix``).

    :func:`vidlit.backbones._builder.lightning_backbone_weights` reads it, so that
    ``create_backbone(name, checkpoint_path="last.ckpt")`` finds the backbone without knowing the
    module that wrote the file.
    """
    checkpoint[BACKBONE_PREFIX_KEY] = module.backbone_prefix


def check_finite_loss(
    module: L.LightningModule, losses: dict[str, Tensor], batch: dict, batch_idx: int
) -> None:
    """Stop the run on a NaN / Inf ``losses["loss"]``, naming the step and the batch's samples.

    Raises:
        FloatingPointError: with the epoch, step, batch index, every loss part and
            ``batch["video_ids"]``.
    """
    if torch.isfinite(losses["loss"]):
        return
    if is_empty_batch(batch):  # not a numerical problem: a module that did not skip the batch
        raise FloatingPointError(
            f"batch {batch_idx} at step {module.global_step} holds no readable video (skipped: "
            f"{batch.get('skipped')}); its loss is the mean of nothing: skip such batches (EmptyBatches)"
        )
    parts = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
    raise FloatingPointError(
        f"non-finite training loss at epoch {module.current_epoch}, step {module.global_step}, "
        f"batch {batch_idx} ({parts}); samples in the batch: {batch.get('video_ids')}"
    )


@register_backbone_prefix
class TaskModule(L.LightningModule):
    """Train one task head, on pre-extracted features or on a backbone's features.

    The module owns everything that is not the head's business: running the backbone (or
    reading ``batch[head.input]`` when there is none), freezing, the optimizer and scheduler
    (injected as callables by the CLI), stopping on a non-finite loss, logging losses and the
    head's official metrics under ``train/``, ``val/`` and ``test/``. It passes the epoch to the
    head's optional hooks (``head.on_train_epoch_start(epoch)`` before an epoch's first step,
    ``head.on_train_epoch_end(epoch)`` after its last step and before its validation; see
    :class:`~vidlit.heads.base.TaskHead`).

    Args:
        head: the task head.
        backbone: a module mapping ``batch["video"]`` to features in the layout the head
            declares; None when the data already holds features.
        optimizer: builds the optimizer from the trainable parameters.
        scheduler: builds a learning-rate scheduler from the optimizer, or None.
        scheduler_interval: step the scheduler every ``"step"`` or every ``"epoch"``.
        freeze_backbone: keep the backbone's weights fixed (and in eval mode).
        compile: ``torch.compile`` the backbone, or the head when there is no backbone, when the
            trainer sets the model up (``configure_model``). The module is compiled in place
            (``nn.Module.compile``), so checkpoints keep their parameter names. The first steps
            of training and of evaluation wait for the compiler: about half a minute for
            ``vit_test`` on a CPU, minutes for an ActionFormer head (8 pyramid levels), so it pays
            off on long GPU runs.
        layer_decay: layer-wise learning-rate decay for a VideoViT backbone (VideoMAE fine-tuning:
            0.75 for ViT-B, 0.8 for smaller): block ``i`` trains at ``layer_decay ** (depth - i)``
            times the optimizer's rate, the head at the full rate, and norms, biases and position
            tables take no weight decay (:func:`~vidlit.tasks.optim.layer_decay_groups`). None:
            one group, every trainable parameter decayed.
        augment: training-batch augmentations on the device, after the data module's transform
            (:class:`~vidlit.data.augment.VideoAugment`: RandAugment, random erasing, mixup /
            cutmix with soft targets); needs a head with ``num_classes``. Validation and test
            batches are not augmented.

    Attributes:
        backbone_prefix: where the backbone's weights sit in this module's state dict, for
            loading a checkpoint's backbone alone (``create_backbone(..., checkpoint_path=)``).
        use_compile: the ``compile`` argument (``compile`` itself would hide ``nn.Module.compile``).
    """

    backbone_prefix: ClassVar[str] = "backbone."

    def __init__(
        self,
        head: TaskHead,
        backbone: nn.Module | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: str = "step",
        freeze_backbone: bool = False,
        compile: bool = False,
        layer_decay: float | None = None,
        augment: VideoAugment | None = None,
    ):
        super().__init__()
        check_interval(scheduler_interval)
        if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
            raise ValueError(f"layer_decay must lie in (0, 1], got {layer_decay}")
        self.head = head
        self.backbone = backbone
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.freeze_backbone = freeze_backbone
        self.use_compile = compile
        self.layer_decay = layer_decay
        if augment is not None and getattr(head, "num_classes", None) is None:
            raise ValueError(f"augment mixes class targets: {type(head).__name__} has no num_classes")
        self.augment = augment
        self._compiled = False
        if backbone is not None and freeze_backbone:
            backbone.requires_grad_(False)
        self.empty_batches = EmptyBatches()  # batches whose videos were all unreadable
        self.val_metrics = head.metrics().clone(prefix="val/")
        self.test_metrics = head.metrics().clone(prefix="test/")

    def configure_model(self) -> None:
        """Compile the backbone (or the head, on stored features) once, when ``compile`` is set."""
        if not self.use_compile or self._compiled:
            return
        # in place: a compiled wrapper module would prefix every state-dict key with `_orig_mod.`
        (self.backbone if self.backbone is not None else self.head).compile()
        self._compiled = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.backbone is not None:
            record_backbone_prefix(self, checkpoint)

    def forward(self, batch: dict[str, Any]) -> Any:
        """Head outputs for a batch."""
        if self.backbone is None:
            features = batch[self.head.input]
        else:
            features = self.backbone(batch["video"], output=self.head.feature_layout)
        return self.head(features, batch)

    def on_fit_start(self) -> None:
        # augment undoes the data module's normalization for RandAugment: take it from there
        transform = getattr(getattr(self.trainer, "datamodule", None), "train_transform", None)
        if self.augment is not None and not self.augment.given and hasattr(transform, "mean"):
            self.augment.match_normalization(transform.mean, transform.std)

    def on_train_epoch_start(self) -> None:
        if self.backbone is not None and self.freeze_backbone:
            self.backbone.eval()
        self.head.on_train_epoch_start(self.current_epoch)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # the head's epoch end comes before the validation that closes the epoch, which Lightning
        # runs before its own on_train_epoch_end hooks (is_last_batch: also for iterable loaders)
        trainer = self.trainer
        if trainer.is_last_batch or batch_idx + 1 == trainer.num_training_batches:
            self.head.on_train_epoch_end(self.current_epoch)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        if self.empty_batches.skip(self, batch, "train"):
            return None  # every video unreadable: no loss (it would be NaN), no optimizer step
        if self.augment is not None:
            batch = self.augment(batch, self.head.num_classes)
        losses = self.head.loss(self(batch), batch)
        loss = losses["loss"]
        check_finite_loss(self, losses, batch, batch_idx)
        size = len(batch["targets"]) if "targets" in batch else None
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, prog_bar=False, batch_size=size)
        self.log("loss", loss.detach(), prog_bar=True, logger=False, batch_size=size)
        return loss

    def on_train_epoch_end(self) -> None:
        self.empty_batches.end_epoch(self, "train")

    def _evaluate(self, batch: dict[str, Any], metrics: Any, stage: str) -> None:
        if self.empty_batches.skip(self, batch, stage):
            return
        outputs = self(batch)
        losses = self.head.loss(outputs, batch)
        size = len(batch["targets"])
        self.log(f"{stage}/loss", losses["loss"], batch_size=size, sync_dist=True)
        metrics.update(self.head.predict(outputs, batch), batch["targets"])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def on_validation_epoch_end(self) -> None:
        self.empty_batches.end_epoch(self, "val")
        values = self.val_metrics.compute()
        # a metric's first value is its headline number (e.g. mAP): the one on the progress bar
        for i, (name, value) in enumerate(values.items()):
            self.log(name, value, prog_bar=i == 0)
        self.val_metrics.reset()

    def on_test_epoch_end(self) -> None:
        self.empty_batches.end_epoch(self, "test")
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        if is_empty_batch(batch):
            return []
        return self.head.predict(self(batch), batch)

    def configure_optimizers(self) -> Any:
        if self.layer_decay is not None:
            params = layer_decay_groups(self, self.layer_decay)
        else:
            params = [p for p in self.parameters() if p.requires_grad]
        return configure_optimizers(self, params, self.optimizer, self.scheduler, self.scheduler_interval)
