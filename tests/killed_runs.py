"""Callbacks for tests of runs killed mid-training: SIGKILL after a given step, and a per-step record.

``tests/`` is on ``sys.path`` under pytest (its ``conftest.py`` puts it there); a ``vidlit fit``
subprocess that names these callbacks by ``class_path: killed_runs.KeysToFile`` needs it on
``PYTHONPATH`` (:data:`TESTS`).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L

TESTS = Path(__file__).resolve().parent


class KillAfterStep(L.Callback):
    """SIGKILL this process once ``step`` optimizer steps are done (no clean-up, like a preemption)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class KeysToFile(L.Callback):
    """Append ``epoch<TAB>step<TAB>key,key,...`` of every training batch to ``path``; with
    ``kill_after``, SIGKILL the process once that many steps are done (for ``vidlit fit``)."""

    def __init__(self, path: str, kill_after: int | None = None):
        self.path = path
        self.kill_after = kill_after

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with open(self.path, "a") as f:
            f.write(f"{trainer.current_epoch}\t{trainer.global_step}\t{','.join(batch['video_ids'])}\n")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
