import torch
from lightning import Trainer
from lightning.pytorch.demos.boring_classes import BoringModel

from vidlit.callbacks import ResumableCheckpoint


class _GetsWorse(BoringModel):
    def on_validation_epoch_end(self):
        self.log("score", float(-self.current_epoch))  # best at epoch 0, never improves


def test_last_checkpoint_is_latest_even_when_best_is_older(tmp_path):
    callback = ResumableCheckpoint(
        dirpath=tmp_path, monitor="score", mode="max", save_top_k=1, save_last=True
    )
    trainer = Trainer(
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_GetsWorse())
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    best = torch.load(callback.best_model_path, weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == 6
    assert best["epoch"] == 0
