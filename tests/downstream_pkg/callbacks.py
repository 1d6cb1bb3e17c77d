"""Test-only callbacks (loaded by class_path, as a downstream repo would)."""

import os
import signal

import lightning as L


class KillAtBatch(L.Callback):
    """SIGKILL the training process when it reaches ``batch`` of ``epoch``: no cleanup runs."""

    def __init__(self, epoch: int, batch: int):
        self.epoch = epoch
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)
