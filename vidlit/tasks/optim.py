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
    "layer_decay_groups",
    "layer_id",
    "no_weight_decay",
    "weight_decay_groups",
]

OptimizerCallable = Callable[[Iterable], Optimizer]
LRSchedulerCallable = Callable[[Optimizer], LRScheduler]


def default_scheduler(optimizer: Optimizer) -> LRScheduler:
    """Linear warmup over the first 5% of steps, then cosine decay to zero.

    The pretraining schedule of VideoMAE (40 warmup epochs of 800), CLIP and ViCLIP.
    """
    return WarmupCosineLR(optimizer, warmup_steps=0.05)


def no_weight_decay(module: nn.Module, skip: Iterable[str] = ()) -> Callable[[str, nn.Parameter], bool]:
    """The test of VideoMAE's no-weight-decay rule for ``module``'s parameters.

    After BEiT/timm: no weight decay on 1-D parameters (norm scales, biases, VideoMAE's
    ``q_bias``/``v_bias``), on ``*.bias`` and on the names a submodule's ``no_weight_decay()``
    lists (learned position tables, the mask token).

    Args:
        module: the model.
        skip: further parameter names (as ``module.named_parameters()`` spells them) to exclude.

    Returns:
        ``excluded(name, param)``: True when the parameter takes no weight decay.
    """
    skip = set(skip)
    for prefix, sub in module.named_modules():
        names = getattr(sub, "no_weight_decay", None)
        if callable(names):
            skip.update(f"{prefix}.{n}" if prefix else n for n in names())

    def excluded(name: str, param: nn.Parameter) -> bool:
        plain = name.replace("._orig_mod", "")  # torch.compile wrappers
        return param.ndim <= 1 or name.endswith(".bias") or plain in skip

    return excluded


def weight_decay_groups(module: nn.Module, skip: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed group and a ``weight_decay = 0`` group.

    The split is :func:`no_weight_decay`'s rule (VideoMAE's, after BEiT/timm).

    Args:
        module: the model.
        skip: further parameter names (as ``module.named_parameters()`` spells them) to exclude.

    Returns:
        ``[{"params": decayed}, {"params": not_decayed, "weight_decay": 0.0}]``; the first group
        takes the optimizer's own weight decay. Empty groups are left out.
    """
    excluded = no_weight_decay(module, skip)
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            (no_decay if excluded(name, param) else decay).append(param)
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _find_vit(module: nn.Module) -> tuple[str, int]:
    """Prefix (``"backbone."``, or ``""``) and depth of the first VideoViT-like submodule.

    VideoViT-like: a ``patch_embed`` and a ``blocks`` ``ModuleList`` (VideoViT, VideoMAE's and
    timm's ViT layout).

    Raises:
        ValueError: if ``module`` holds none.
    """
    for prefix, sub in module.named_modules():
        if hasattr(sub, "patch_embed") and isinstance(getattr(sub, "blocks", None), nn.ModuleList):
            return (f"{prefix}." if prefix else ""), len(sub.blocks)
    raise ValueError(
        f"layer_decay needs a VideoViT-like backbone (a module with patch_embed and a blocks "
        f"ModuleList); {type(module).__name__} holds none"
    )


def layer_id(name: str, vit_prefix: str, depth: int) -> int:
    """VideoMAE's layer index of a parameter (``optim_factory.get_num_layer_for_vit``).

    Patch embedding, position tables, ``norm_pre``, class and mask tokens are layer 0, block ``i`` is layer
    ``i + 1``, everything else (final norms, the task head) is layer ``depth + 1``.

    Args:
        name: the parameter's name in the whole model.
        vit_prefix: where the VideoViT sits in the model (``"backbone."``; ``""`` for the ViT itself).
        depth: the VideoViT's number of blocks.
    """
    name = name.replace("._orig_mod", "").replace("_orig_mod.", "")
    if not name.startswith(vit_prefix):
        return depth + 1
    rest = name[len(vit_prefix) :]
    # a CLIP-style tower's temporal table and ln_pre sit below the blocks too (timm's 'stem' group)
    if rest in ("pos_embed", "cls_token", "mask_token", "temporal_embed") or rest.startswith(
        ("patch_embed.", "norm_pre.")
    ):
        return 0
    if rest.startswith("blocks."):
        return int(rest.split(".")[1]) + 1
    return depth + 1


def layer_decay_groups(
    module: nn.Module, layer_decay: float, skip: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Parameter groups for layer-wise learning-rate decay (BEiT; VideoMAE fine-tuning).

    The learning rate of layer ``l`` (see :func:`layer_id`) is the base rate times
    ``layer_decay ** (depth + 1 - l)``: the head trains at the full rate and each block below
    it at ``layer_decay`` times the rate of the block above. Each layer is split by
    :func:`no_weight_decay`'s rule. timm's ``param_groups_layer_decay`` is not used: it needs a
    model ``group_matcher`` (VideoViT inside a :class:`~vidlit.tasks.TaskModule` has none) and its
    fallback numbers layers by module order, not by depth.

    Args:
        module: a model holding a VideoViT-like backbone (a ``TaskModule``, or the ViT itself).
        layer_decay: decay per layer, in ``(0, 1]``; VideoMAE uses 0.75 for ViT-B, 0.8 below.
        skip: further parameter names to exclude from weight decay.

    Returns:
        one group per (layer, decay / no decay) that holds parameters, ordered by layer:
        ``{"params", "lr_scale", "layer_id"}``, plus ``"weight_decay": 0.0`` for the no-decay
        groups. :func:`configure_optimizers` multiplies each group's rate by ``lr_scale``.

    Raises:
        ValueError: if ``layer_decay`` is outside ``(0, 1]`` or there is no VideoViT-like backbone.
    """
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must lie in (0, 1], got {layer_decay}")
    prefix, depth = _find_vit(module)
    excluded = no_weight_decay(module, skip)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        layer, decayed = layer_id(name, prefix, depth), not excluded(name, param)
        if (layer, decayed) not in groups:
            group = {"params": [], "lr_scale": layer_decay ** (depth + 1 - layer), "layer_id": layer}
            if not decayed:
                group["weight_decay"] = 0.0
            groups[layer, decayed] = group
        groups[layer, decayed]["params"].append(param)
    return [groups[key] for key in sorted(groups, key=lambda k: (k[0], not k[1]))]


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
            A group with an ``"lr_scale"`` (:func:`layer_decay_groups`) gets that multiple of
            the rate, also before the scheduler wraps the optimizer.

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
    for group in built.param_groups:
        group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
    if scheduler is None:
        return built
    schedule = scheduler(built)
    if isinstance(schedule, WarmupCosineLR) and schedule.total_steps == 0:
        schedule.set_total_steps(int(module.trainer.estimated_stepping_batches))
    return {"optimizer": built, "lr_scheduler": {"scheduler": schedule, "interval": interval}}
