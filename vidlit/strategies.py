"""Scaling presets: FSDP that knows vidlit's transformer blocks, plus notes on DDP and memory savers.

Lightning's ``FSDPStrategy`` takes its wrap and activation-checkpointing policies as sets of
module classes, which a YAML file cannot name. :class:`VideoFSDPStrategy` takes them as import
paths instead and defaults to vidlit's own transformer blocks (:data:`DEFAULT_BLOCK_CLASSES`),
so a recipe shards a backbone one block per FSDP unit and recomputes each block's activations in
the backward pass with a few lines::

    trainer:
      accelerator: gpu
      devices: 8
      precision: bf16-mixed            # FSDP's MixedPrecision is derived from this
      strategy:
        class_path: vidlit.strategies.VideoFSDPStrategy
        init_args:
          sharding_strategy: FULL_SHARD    # or SHARD_GRAD_OP, NO_SHARD, HYBRID_SHARD
          activation_checkpointing: true   # recompute block activations: less memory, one more forward
          state_dict_type: full            # one checkpoint file; "sharded" writes a folder per save
          cpu_offload: false               # keep parameters on the CPU between uses (slow)
          # block_classes: [vidlit.backbones.vit.Block]   # default: vidlit's blocks, see below

or, from the command line, ``--trainer.strategy vidlit.strategies.VideoFSDPStrategy``.

FSDP needs GPUs (torch's ``FullyShardedDataParallel`` refuses CPU-only execution);
:class:`VideoFSDPStrategy` says so when a run starts on the CPU. Launch several nodes with
``torchrun`` or SLURM as for any Lightning strategy.

**DDP** needs no preset: ``trainer.strategy: ddp`` runs on GPUs with NCCL and on CPUs with gloo
(``trainer.accelerator: cpu``, ``trainer.devices: 2``), and vidlit's tests train the Ego4D MQ
recipe that way. Lightning's default ``find_unused_parameters=False`` suits models that use every
trainable parameter at every step; one that skips some needs
``trainer.strategy: ddp_find_unused_parameters_true``. Under DDP, turn on activation
checkpointing in the backbone itself (``grad_checkpointing: true`` for
:class:`~vidlit.backbones.VideoViT`). Evaluation is exact across ranks: the padding copies that
``DistributedSampler`` adds to even out the ranks are scored once by the metrics (e.g.
:class:`~vidlit.metrics.TemporalActionMAP`) and written once by
:class:`~vidlit.callbacks.SubmissionWriter`.

**8-bit optimizers** (bitsandbytes) are ordinary optimizer classes for
:class:`~vidlit.tasks.TaskModule`; they keep Adam's two moments in 8 bits (blockwise quantized), a
quarter of the optimizer memory of ``torch.optim.AdamW``::

    model:
      init_args:
        optimizer:
          class_path: bitsandbytes.optim.AdamW8bit
          init_args: {lr: 0.001, weight_decay: 0.05}

Recent bitsandbytes releases (0.50 is tested) run them on the CPU as well as on CUDA GPUs, and
vidlit's tests train with one on the CPU; older releases need a CUDA GPU. Tensors smaller than
4096 elements keep 32-bit moments (bitsandbytes' ``min_8bit_size``), so the savings come from
the large matrices of a backbone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import lightning as L
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn

from vidlit.core.imports import import_path

__all__ = ["DEFAULT_BLOCK_CLASSES", "VideoFSDPStrategy", "resolve_block_classes"]

#: vidlit's transformer blocks: the units FSDP wraps and checkpoints unless told otherwise.
DEFAULT_BLOCK_CLASSES: tuple[str, ...] = (
    "vidlit.backbones.vit.Block",  # VideoViT (and the MVM decoder built from it)
    "vidlit.layers.temporal_pyramid.LocalTransformerBlock",  # ActionFormer's temporal pyramid
)

_FSDP_POLICY_KWARGS = ("auto_wrap_policy", "activation_checkpointing_policy")


def resolve_block_classes(names: Iterable[str | type[nn.Module]]) -> tuple[type[nn.Module], ...]:
    """Import module classes named by ``"package.module.Class"`` paths (classes pass through).

    Args:
        names: import paths or classes.

    Returns:
        the classes, without duplicates, in the order given.

    Raises:
        ValueError: a path that is not ``module.Class``, cannot be imported, or does not name a
            ``torch.nn.Module`` subclass; the message names it.
    """
    classes: list[type[nn.Module]] = []
    for name in names:
        cls = name if isinstance(name, type) else _import_class(name)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ValueError(f"block_classes: {name!r} is not a torch.nn.Module subclass")
        if cls not in classes:
            classes.append(cls)
    return tuple(classes)


def _import_class(path: str) -> Any:
    return import_path(path, "block_classes")


class VideoFSDPStrategy(FSDPStrategy):
    """Lightning's ``FSDPStrategy`` with wrap and checkpoint policies set from block classes.

    Every instance of a block class becomes its own FSDP unit (``ModuleWrapPolicy``), so only the
    block being computed (and the one prefetched) holds its full parameters, and, with
    ``activation_checkpointing``, is wrapped to recompute its activations during the backward
    pass. Mixed precision follows the trainer's ``precision``: with ``bf16-mixed``, Lightning's
    ``FSDPPrecision`` has FSDP compute with bf16 copies of the parameters and reduce gradients
    in bf16, while the sharded parameters and the optimizer state stay float32.

    With ``block_classes`` left unset, the blocks are vidlit's (:data:`DEFAULT_BLOCK_CLASSES`)
    plus the ``block_class`` that any module of the model declares (as
    :class:`~vidlit.backbones.VideoViT` does), so a downstream backbone opts in by that attribute.
    A backbone's own activation checkpointing (``grad_checkpointing``) is switched off when the
    strategy checkpoints, so blocks are not recomputed twice.

    Args:
        sharding_strategy: what to shard: ``"FULL_SHARD"`` (parameters, gradients and optimizer
            state; ZeRO-3), ``"SHARD_GRAD_OP"`` (gradients and optimizer state; ZeRO-2),
            ``"NO_SHARD"`` (like DDP) or ``"HYBRID_SHARD"`` (full sharding within a node,
            replication across nodes).
        activation_checkpointing: recompute each block's activations in the backward pass.
        block_classes: import paths of the module classes to wrap (and checkpoint), replacing
            the defaults; from Python, classes are accepted too.
        cpu_offload: keep parameters (and gradients) on the CPU while unused.
        state_dict_type: ``"full"`` gathers one checkpoint file on rank 0; ``"sharded"`` writes a
            folder with one shard per rank (faster and lighter for large models).
        **kwargs: passed to Lightning's ``FSDPStrategy`` and from there to torch's
            ``FullyShardedDataParallel`` (e.g. ``limit_all_gathers``, ``forward_prefetch``,
            ``device_mesh`` for ``HYBRID_SHARD``).

    Raises:
        ValueError: an unknown ``sharding_strategy`` or ``state_dict_type``, a block class that
            cannot be imported, or ``auto_wrap_policy`` / ``activation_checkpointing_policy``
            in ``kwargs`` (this class sets them; use ``FSDPStrategy`` for custom policies).
    """

    def __init__(
        self,
        sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"] = "FULL_SHARD",
        activation_checkpointing: bool = True,
        block_classes: list[str] | None = None,
        cpu_offload: bool = False,
        state_dict_type: Literal["full", "sharded"] = "full",
        **kwargs: Any,
    ):
        if isinstance(sharding_strategy, str) and sharding_strategy.upper() not in (
            "FULL_SHARD",
            "SHARD_GRAD_OP",
            "NO_SHARD",
            "HYBRID_SHARD",
        ):
            raise ValueError(
                "sharding_strategy must be 'FULL_SHARD', 'SHARD_GRAD_OP', 'NO_SHARD' or 'HYBRID_SHARD', "
                f"got {sharding_strategy!r}"
            )
        if state_dict_type not in ("full", "sharded"):
            raise ValueError(f"state_dict_type must be 'full' or 'sharded', got {state_dict_type!r}")
        if given := [k for k in _FSDP_POLICY_KWARGS if k in kwargs]:
            raise ValueError(
                f"VideoFSDPStrategy sets {' and '.join(given)} from block_classes; pass block_classes, "
                "or use lightning.pytorch.strategies.FSDPStrategy for a custom policy"
            )
        self.activation_checkpointing = activation_checkpointing
        self.discover_blocks = block_classes is None
        names = DEFAULT_BLOCK_CLASSES if block_classes is None else block_classes
        self.block_classes = resolve_block_classes(names)
        super().__init__(
            sharding_strategy=sharding_strategy,
            cpu_offload=cpu_offload,
            state_dict_type=state_dict_type,
            auto_wrap_policy=set(self.block_classes),
            activation_checkpointing_policy=set(self.block_classes) if activation_checkpointing else None,
            **kwargs,
        )

    @property
    def auto_wrap_policy(self) -> Any:
        """The ``ModuleWrapPolicy`` that makes each block an FSDP unit."""
        return self.kwargs["auto_wrap_policy"]

    @property
    def activation_checkpointing_policy(self) -> Any:
        """The ``ModuleWrapPolicy`` choosing the modules to checkpoint, or None when off."""
        return self._activation_checkpointing_kwargs.get("auto_wrap_policy")

    def _set_block_classes(self, classes: tuple[type[nn.Module], ...]) -> None:
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        self.block_classes = classes
        self.kwargs["auto_wrap_policy"] = ModuleWrapPolicy(set(classes))
        if self.activation_checkpointing:
            self._activation_checkpointing_kwargs = {"auto_wrap_policy": ModuleWrapPolicy(set(classes))}

    def setup_environment(self) -> None:
        # Lightning's accelerator check only catches FSDPStrategy itself, not subclasses; without
        # this, torch fails later with a message that does not say which setting is at fault.
        if self.root_device.type == "cpu":
            raise ValueError(
                "VideoFSDPStrategy needs GPUs (torch's FSDP cannot run on the CPU), but "
                "trainer.accelerator is 'cpu'; set trainer.accelerator: gpu, or use trainer.strategy: ddp "
                "on the CPU"
            )
        super().setup_environment()

    def prepare_blocks(self, model: nn.Module) -> None:
        """Get a model ready for wrapping; :meth:`setup` calls this before FSDP wraps it.

        Adds the ``block_class`` that modules of ``model`` declare (when ``block_classes`` was
        left unset) and, with ``activation_checkpointing``, turns off modules' own
        ``grad_checkpointing`` so that blocks are not recomputed twice.
        """
        if self.discover_blocks:
            declared = [getattr(m, "block_class", None) for m in model.modules()]
            declared = [c for c in declared if isinstance(c, type) and issubclass(c, nn.Module)]
            if any(c not in self.block_classes for c in declared):
                self._set_block_classes(resolve_block_classes([*self.block_classes, *declared]))
        if self.activation_checkpointing:
            for module in model.modules():
                if getattr(module, "grad_checkpointing", False) and hasattr(module, "set_grad_checkpointing"):
                    rank_zero_info(
                        f"VideoFSDPStrategy checkpoints {type(module).__name__}'s blocks; turning off "
                        "its own grad_checkpointing so they are not recomputed twice"
                    )
                    module.set_grad_checkpointing(False)

    def setup(self, trainer: L.Trainer) -> None:
        if self.model is not None:
            self.prepare_blocks(self.model)
        names = ", ".join(c.__name__ for c in self.block_classes)
        rank_zero_info(
            f"VideoFSDPStrategy: wrapping {names}"
            + (" with activation checkpointing" if self.activation_checkpointing else "")
        )
        super().setup(trainer)
