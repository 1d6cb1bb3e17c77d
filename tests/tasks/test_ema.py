"""Model EMA for TaskModule through Lightning's EMAWeightAveraging: formula, evaluation, resume."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint

from vidlit.heads import LinearProbeHead
from vidlit.tasks import TaskModule

DECAY = 0.6


def _batch(i: int) -> dict:
    g = torch.Generator().manual_seed(i)
    labels = torch.tensor([i % 2, 1 - i % 2])
    targets = [{"video_id": f"v{i}{j}", "label": int(y)} for j, y in enumerate(labels)]
    features = torch.randn(2, 4, generator=g) + labels[:, None]
    return {
        "video": features,
        "labels": labels,
        "targets": targets,
        "video_ids": [t["video_id"] for t in targets],
    }


class Record(L.Callback):
    """Parameters after every optimizer step, and those validation runs with."""

    def __init__(self):
        self.steps, self.validated = [], []

    @staticmethod
    def _params(module):
        return {n: p.detach().clone() for n, p in module.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(self._params(pl_module))

    def on_validation_epoch_start(self, trainer, pl_module):
        self.validated.append(self._params(pl_module))


def _fit(tmp_path, max_epochs: int, ckpt_path=None, callbacks=()):
    torch.manual_seed(0)
    module = TaskModule(LinearProbeHead(4, 2), optimizer=lambda p: torch.optim.SGD(p, lr=0.5))
    ema, record = EMAWeightAveraging(decay=DECAY), Record()
    trainer = L.Trainer(
        max_epochs=max_epochs, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[ema, record, *callbacks],
        enable_checkpointing=bool(callbacks),
    )  # fmt: skip
    batches = [_batch(i) for i in range(3)]
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    trainer.fit(
        module, loader, torch.utils.data.DataLoader(batches[:1], batch_size=None), ckpt_path=ckpt_path
    )
    return module, record


def _ema(steps: list[dict]) -> dict:
    """AveragedModel's EMA: the first update copies, then ema = d * ema + (1 - d) * p."""
    ema = dict(steps[0])
    for params in steps[1:]:
        ema = {n: DECAY * ema[n] + (1 - DECAY) * params[n] for n in ema}
    return ema


def _close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)


def test_ema_weights_follow_the_formula_and_validation_uses_them(tmp_path):
    module, record = _fit(tmp_path, max_epochs=2)
    assert len(record.steps) == 6 and len(record.validated) == 2
    assert not _close(record.steps[2], _ema(record.steps[:3]))  # EMA differs from the raw weights
    assert _close(record.validated[0], _ema(record.steps[:3]))  # epoch 1 validates the EMA of 3 steps
    assert _close(record.validated[1], _ema(record.steps))
    assert _close(Record._params(module), _ema(record.steps))  # the trained module ends with the EMA


def test_ema_is_checkpointed_and_resumes_exactly(tmp_path):
    straight, _ = _fit(tmp_path / "a", max_epochs=2)
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1)
    _, first = _fit(tmp_path / "b", max_epochs=1, callbacks=[checkpoints])
    path = tmp_path / "ckpt" / "epoch=0-step=3.ckpt"
    saved = torch.load(path, weights_only=False)
    assert _close(saved["state_dict"], {**_ema(first.steps), **_buffers(saved["state_dict"])})
    assert _close({n: saved["current_model_state"][n] for n in first.steps[-1]}, first.steps[-1])
    resumed, _ = _fit(tmp_path / "c", max_epochs=2, ckpt_path=path, callbacks=[checkpoints])
    assert _close(Record._params(resumed), Record._params(straight))


def _buffers(state: dict) -> dict:
    return {n: v for n, v in state.items() if "running" in n or "num_batches" in n}
