"""The head contract: the public API downstream repositories subclass."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection


class TaskHead(nn.Module):
    """Base class of every task head: plain PyTorch, no Lightning.

    A head has four responsibilities and nothing more. :class:`vidlit.tasks.TaskModule` calls
    them in this order and owns everything else (optimizer, scheduler, freezing, logging):

    1. ``forward(features, batch)``: raw outputs from backbone or pre-extracted features.
    2. ``loss(outputs, batch)``: a dict with a ``"loss"`` entry plus named parts to log.
    3. ``predict(outputs, batch)``: one post-processed prediction dict per sample, in the
       format the task's metric takes (and the dataset's submission writer exports).
    4. ``metrics()``: a fresh ``MetricCollection`` implementing the official protocol; its
       ``update(preds, targets)`` receives ``predict``'s output and ``batch["targets"]``.

    Two optional hooks give a head the training epoch, for schedules that move per epoch
    (a loss weight ramp, an EMA between sub-networks) without counting steps itself; both
    default to doing nothing:

    - ``on_train_epoch_start(epoch)``: before the first training step of ``epoch``
      (0-based). Also called when a run resumes from a checkpoint, with the epoch Lightning
      restored, so the epoch a head reads here is right after a resume without a counter of
      its own.
    - ``on_train_epoch_end(epoch)``: after the last training step of ``epoch``, BEFORE the
      validation that follows it (Lightning's own ``on_train_epoch_end`` runs after
      validation), so that validation sees what the epoch's end changed.

    State a hook changes must live in the head's ``state_dict`` (parameters or buffers) for a
    resumed run to continue exactly.

    Class attributes declare what the head consumes, so the task module knows whether to run
    a backbone and what shape to hand over:

    Attributes:
        input: batch key the head reads when no backbone is configured (``"features"`` for
            pre-extracted features, ``"video"`` for raw clips, ...).
        feature_layout: ``"temporal"`` (``[B, T, C]``), ``"tokens"`` (``[B, N, C]``) or
            ``"pooled"`` (``[B, C]``): what the head wants from a backbone.

    Example:
        A downstream repo trains its own head with ``class_path: mypkg.heads.MyHead``::

            class MyHead(TaskHead):
                def __init__(self, in_dim: int, num_classes: int):
                    super().__init__()
                    self.fc = nn.Linear(in_dim, num_classes)

                def forward(self, features, batch):
                    return self.fc(features)
                ...
    """

    input: ClassVar[str] = "features"
    feature_layout: ClassVar[Literal["temporal", "tokens", "pooled"]] = "temporal"

    def forward(self, features: Tensor, batch: dict[str, Any]) -> Any:
        """Raw predictions from features laid out as :attr:`feature_layout` declares."""
        raise NotImplementedError

    def loss(self, outputs: Any, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Training loss: ``{"loss": total, **named_parts}``."""
        raise NotImplementedError

    def predict(self, outputs: Any, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Post-processed predictions, one dict per sample, ready for the metric."""
        raise NotImplementedError

    def metrics(self) -> MetricCollection:
        """A new collection of the task's official metrics."""
        raise NotImplementedError

    def on_train_epoch_start(self, epoch: int) -> None:
        """Optional hook: training epoch ``epoch`` (0-based) is about to start (also on resume)."""

    def on_train_epoch_end(self, epoch: int) -> None:
        """Optional hook: the last training step of ``epoch`` is done; validation has not run yet."""

    def check_features(self, features: Tensor, layout: str = "[b, t, d]", in_dim: int | None = None) -> None:
        """Raise a ValueError naming the head unless ``features`` has ``layout``'s rank and width ``in_dim``.

        Args:
            features: what ``forward`` received.
            layout: the expected shape, e.g. ``"[b, t, d]"`` (its comma count gives the rank).
            in_dim: the expected last dimension; defaults to the head's ``in_dim`` attribute.
        """
        in_dim = getattr(self, "in_dim", None) if in_dim is None else in_dim
        rank = layout.count(",") + 1
        if features.ndim != rank or (in_dim is not None and features.shape[-1] != in_dim):
            raise ValueError(
                f"{type(self).__name__} expects features {layout} with d={in_dim} (a backbone called "
                f"with output={self.feature_layout!r}), got shape {tuple(features.shape)}"
            )

    @staticmethod
    def sequence_mask(features: Tensor, batch: dict[str, Any]) -> Tensor:
        """``batch["mask"]`` as bool ``[b, t]`` on the features' device; all steps valid when absent."""
        mask = batch.get("mask")
        if mask is None:
            return torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        return mask.to(features.device, torch.bool)
