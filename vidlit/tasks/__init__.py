"""Lightning modules: :class:`TaskModule` trains a head (on a backbone or on stored features)."""

from vidlit.tasks.finetune import TaskModule
from vidlit.tasks.schedulers import WarmupCosineLR

__all__ = ["TaskModule", "WarmupCosineLR"]
