"""Learning-rate schedules whose length the trainer supplies."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosineLR(LambdaLR):
    """Linear warmup from 0, then cosine decay to ``min_lr_ratio`` of the base rate, per step.

    Args:
        optimizer: wrapped optimizer.
        warmup_steps: warmup length in steps, or as a fraction of ``total_steps`` when below 1.
        total_steps: schedule length; 0 lets :class:`~vidlit.tasks.TaskModule` set it to the
            trainer's ``estimated_stepping_batches``, so recipes never state it twice.
        min_lr_ratio: final learning rate as a fraction of the base rate.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: float = 0.05,
        total_steps: int = 0,
        min_lr_ratio: float = 0.0,
    ):
        if warmup_steps < 0 or total_steps < 0 or not 0 <= min_lr_ratio <= 1:
            raise ValueError("warmup_steps and total_steps must be >= 0 and min_lr_ratio in [0, 1]")
        self.warmup = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        """Multiplier of the base learning rate at ``step``."""
        total = max(self.total_steps, 1)
        warmup = self.warmup * total if self.warmup < 1 else self.warmup
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def set_total_steps(self, total_steps: int) -> None:
        """Fix the schedule length before training starts (re-applies the step-0 rate)."""
        self.total_steps = total_steps
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base_lr * self.factor(self.last_epoch)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
