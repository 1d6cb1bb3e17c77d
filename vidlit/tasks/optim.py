"""Optimizer and learning-rate schedule setup shared by the task modules.

:class:`~vidlit.tasks.TaskModule`, :class:`~vidlit.tasks.MVMPretrain` and
:class:`~vidlit.tasks.video_text.VideoTextPretrain` take the optimizer and the scheduler as
callables (``class_path`` + ``init_args`` in a recipe, e.g. ``torch.optim.AdamW`` or
``bitsandbytes.optim.AdamW8bit``) and hand them to :func:`configure_optimizers`, which builds
both and sizes a :class:`~vidlit.tasks.WarmupCosineLR` given ``total_steps: 0`` to the trainer's
run. What differs between the modules is what they pass: plain trainable parameters
(fine-tuning) or :func:`weight_decay_groups` (pretraining, after VideoMAE and CLIP), and an
optional learning rate that overrides the optimizer's (VideoMAE's batch-size scaling).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from vidlit.tasks.schedulers import WarmupCosineLR

__all__ = [
    "LRSchedulerCallable",
    "OptimizerCallable",
    "check_interval",
    "configure_optimizers",
    "default_scheduler",
    "weight_decay_groups",
]

OptimizerCallable = Callable[[Iterable], Optimizer]
LRSchedulerCallable = Callable[[Optimizer], LRScheduler]


def default_scheduler(optimizer: Optimizer) -> LRScheduler:
    """Linear warmup over the first 5% of steps, then cosine decay to zero.

    The pretraining schedule of VideoMAE (40 warmup epochs of 800), CLIP and ViCLIP.
    """
    return WarmupCosineLR(optimizer, warmup_steps=0.05)


def weight_decay_groups(module: nn.Module, skip: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed group and a ``weight_decay = 0`` group.

    VideoMAE's rule (after BEiT/timm): no weight decay on 1-D parameters (norm scales, biases,
    VideoMAE's ``q_bias``/``v_bias``), on ``*.bias`` and on the names a submodule's
    ``no_weight_decay()`` lists (learned position tables, the mask token).

    Args:
        module: the model.
        skip: further parameter names (as ``module.named_parameters()`` spells them) to exclude.

    Returns:
        ``[{"params": decayed}, {"params": not_decayed, "weight_decay": 0.0}]``; the first group
        takes the optimizer's own weight decay. Empty groups are left out.
    """
    skip = set(skip)
    for prefix, sub in module.named_modules():
        names = getattr(sub, "no_weight_decay", None)
        if callable(names):
            skip.update(f"{prefix}.{n}" if prefix else n for n in names())
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        plain = name.replace("._orig_mod", "")  # torch.compile wrappers
        if param.ndim <= 1 or name.endswith(".bias") or plain in skip:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def check_interval(interval: str) -> str:
    """``interval`` if it is ``"step"`` or ``"epoch"``, the values Lightning's scheduler config takes.

    Raises:
        ValueError: otherwise.
    """
    if interval not in ("step", "epoch"):
        raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {interval!r}")
    return interval


def configure_optimizers(
    module: L.LightningModule,
    params: list[Any],
    optimizer: OptimizerCallable,
    scheduler: LRSchedulerCallable | None,
    interval: str,
    lr: float | None = None,
) -> Any:
    """What ``LightningModule.configure_optimizers`` returns, built from the module's callables.

    Args:
        module: the module; its trainer sizes a ``WarmupCosineLR`` with ``total_steps == 0`` to
            ``trainer.estimated_stepping_batches``.
        params: trainable parameters, or parameter groups (dicts with ``"params"``).
        optimizer: builds the optimizer from ``params``.
        scheduler: builds the scheduler from the optimizer; None for a constant rate.
        interval: step the scheduler every ``"step"`` or every ``"epoch"``.
        lr: when given, every group's learning rate, set before the scheduler wraps the
            optimizer (so the scheduler's base rate is this one).

    Returns:
        the optimizer, or Lightning's ``{"optimizer", "lr_scheduler"}`` dict.

    Raises:
        ValueError: if there is nothing to train.
    """
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    built = optimizer(params)
    if lr is not None:
        for group in built.param_groups:
            group["lr"] = lr
    if scheduler is None:
        return built
    schedule = scheduler(built)
    if isinstance(schedule, WarmupCosineLR) and schedule.total_steps == 0:
        schedule.set_total_steps(int(module.trainer.estimated_stepping_batches))
    return {"optimizer": built, "lr_scheduler": {"scheduler": schedule, "interval": interval}}
