"""Callbacks the vidlit CLI adds to every run."""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from vidlit.data.epochs import gather_ranks

log = logging.getLogger(__name__)


class ReproducibleEpochs(L.Callback):
    """Reseed Python, NumPy and torch at every epoch start from ``(seed, epoch, rank)``, and carry the
    random state through a checkpoint written inside an epoch.

    Together with :class:`vidlit.data.base.EpochShuffleSampler`, an epoch's randomness (data
    order, dropout, augmentation) depends only on the seed and the epoch number, so a run
    resumed from an end-of-epoch checkpoint trains exactly as the uninterrupted run would.
    The seed is ``seed_everything``'s (``PL_GLOBAL_SEED``); without one nothing is reseeded. The
    reseed is repeated as the epoch's first step starts: a resumed run's training loader draws its
    seed from torch's generator before the epoch starts, an uninterrupted run's after. The model's
    own generators are not reseeded: an end-of-epoch checkpoint carries them over too.

    Inside an epoch (``ModelCheckpoint(every_n_train_steps=...)``, SLURM's requeue signal) the
    checkpoint holds each rank's random state as the next unseen training step starts from it:
    Python's ``random``, NumPy's global generator, torch's CPU generator, the CUDA generator of the
    rank's device, and every ``torch.Generator`` the LightningModule or a submodule holds as an
    attribute. A run resumed there restores them as that step starts (and does not reseed: Lightning
    calls no ``on_train_epoch_start`` when it resumes inside an epoch), so dropout, drop path, token
    dropping, tube masks and batch augmentations draw what the uninterrupted run drew, on every
    rank. A checkpoint written during a step (the signal) holds the state at that step's start,
    since the resumed run trains that step again; one written after a step, the state after it.
    Validation during ``fit`` hands training back the random state it found, so validating inside
    an epoch neither changes the training draws nor breaks a resume's exactness.

    Not carried: a DataLoader worker's global random state (vidlit's datasets draw from generators
    keyed by sample, :class:`~vidlit.data.base.EpochSeeded`, and its data modules save their crop
    generators themselves), and draws made between two steps by hooks that run before
    ``on_train_batch_start`` (``on_after_batch_transfer``, a LightningModule's
    ``on_train_batch_end``, a dataset read in the main process drawing from the global generators):
    the resumed run does not make them again.
    """

    def __init__(self) -> None:
        # where the next unseen step starts: {"epoch", "batch" (index in the epoch), "state"}
        self._next: dict[str, Any] | None = None
        self._resume: dict[str, Any] | None = None  # a loaded checkpoint's, restored as its step starts
        self._owned: dict[str, torch.Generator] | None = None  # the model's generators (found once)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a ViT-B's modules take a millisecond to search, twice a step otherwise
        self._owned = dict(_module_generators(pl_module))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reseed(trainer)

    @staticmethod
    def _reseed(trainer: L.Trainer) -> None:
        if "PL_GLOBAL_SEED" not in os.environ:
            return
        seed = (
            int(os.environ["PL_GLOBAL_SEED"]) * 1_000_003 + trainer.current_epoch * 1009 + trainer.global_rank
        )
        seed %= 2**32
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        restored = False
        if self._resume is not None:
            resume, self._resume = self._resume, None
            restored = self._restore(trainer, pl_module, resume, batch_idx)
        if batch_idx == 0 and not restored:
            # again as the epoch's first step starts: the training loader's iterator, made after the
            # epoch start in an uninterrupted run but before it in a resumed one, draws a seed from torch
            self._reseed(trainer)
        # a checkpoint written during this step resumes with this step, from here
        state = random_state(pl_module, self._owned)
        self._next = {"epoch": trainer.current_epoch, "batch": batch_idx, "state": state, "last": False}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        epoch = trainer.current_epoch
        state = random_state(pl_module, self._owned)
        # after an epoch's last step, the next one is the next epoch's first
        self._next = {"epoch": epoch, "batch": batch_idx + 1, "state": state, "last": trainer.is_last_batch}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a checkpoint callback saving now (they run last) and the next step both see the state
        # training left; the validation loader alone draws a seed from torch's generator
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self._next is not None:
            set_random_state(pl_module, self._next["state"], generators=self._owned)

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "batch", "epoch_end", "ranks": [state of rank 0, ...]}``: the step a resumed run
        restores it at (epoch, batch index; ``epoch_end``: that step ends the epoch, so the next is the
        next epoch's first) and each rank's random state (:func:`random_state`); empty before the first
        step. Every rank calls it when Lightning writes a checkpoint."""
        if self._next is None:
            return {}
        return {
            "epoch": self._next["epoch"],
            "batch": self._next["batch"],
            "epoch_end": bool(self._next["last"]),
            "ranks": gather_ranks(self._next["state"]),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state`` as the step it was written for starts (if this run trains that step)."""
        self._resume = state or None

    def _restore(
        self, trainer: L.Trainer, pl_module: L.LightningModule, saved: dict[str, Any], batch_idx: int
    ) -> bool:
        """Restore ``saved`` if this is the step it was written for; True if the global generators were."""
        here = (trainer.current_epoch, batch_idx)
        if here == (int(saved["epoch"]), int(saved["batch"])):
            inside = True  # the global generators go on from the checkpoint too
        elif saved.get("epoch_end") and here == (int(saved["epoch"]) + 1, 0):
            inside = False  # the epoch starts from its seed, the model's own generators where they were
        else:
            return False  # the checkpoint is not where this run goes on
        ranks = saved["ranks"]
        if len(ranks) != trainer.world_size:
            rank_zero_warn(
                f"the checkpoint holds the random state of {len(ranks)} rank(s), this run has "
                f"{trainer.world_size}: the rest of epoch {trainer.current_epoch} draws dropout, masks and "
                "augmentations other than the interrupted run would have"
            )
            return False
        set_random_state(
            pl_module, ranks[trainer.global_rank], global_generators=inside, generators=self._owned
        )
        return inside


def _module_generators(module: torch.nn.Module) -> Iterator[tuple[str, torch.Generator]]:
    """``(dotted name, generator)`` of each ``torch.Generator`` that ``module`` or a submodule holds."""
    for prefix, sub in module.named_modules():
        for attr, value in vars(sub).items():
            if isinstance(value, torch.Generator):
                yield (f"{prefix}.{attr}" if prefix else attr), value


def random_state(
    module: torch.nn.Module, generators: dict[str, torch.Generator] | None = None
) -> dict[str, Any]:
    """The random state of this process as a training step of ``module`` sees it.

    ``{"python", "numpy", "torch", "cuda" (training on a GPU: its generator), "generators"
    (:func:`_module_generators`)}``, as tensors and numbers only, so a checkpoint holding it loads
    with ``torch.load(weights_only=True)``.

    Args:
        module: the model (its device, and its own generators).
        generators: its generators by dotted name, if already found.
    """
    if generators is None:
        generators = dict(_module_generators(module))
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "generators": {name: generator.get_state() for name, generator in generators.items()},
    }
    device = next(iter(module.parameters()), torch.empty(0)).device
    if device.type == "cuda":
        state["cuda"] = {"device": device.index, "state": torch.cuda.get_rng_state(device)}
    return state


def set_random_state(
    module: torch.nn.Module,
    state: dict[str, Any],
    global_generators: bool = True,
    generators: dict[str, torch.Generator] | None = None,
) -> None:
    """Restore what :func:`random_state` returned (a generator ``module`` no longer holds is skipped,
    with a warning).

    Args:
        module: the module whose generators ``state`` holds.
        state: from :func:`random_state`.
        global_generators: restore Python's, NumPy's and torch's global generators too, not only
            ``module``'s own.
        generators: ``module``'s generators by dotted name, if already found.
    """
    if generators is None:
        generators = dict(_module_generators(module))
    for name, generator_state in state.get("generators", {}).items():
        if name in generators:
            generators[name].set_state(generator_state)
        else:
            log.warning("the checkpoint holds the state of generator %r, which the model does not have", name)
    if not global_generators:
        return
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))
    saved = state["numpy"]
    keys = saved["keys"].numpy().astype(np.uint32)
    np.random.set_state((saved["name"], keys, saved["pos"], saved["has_gauss"], saved["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        device = next(iter(module.parameters()), torch.empty(0)).device
        if device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"]["state"], device)


class EpochLines(L.Callback):
    """One plain line per training epoch and per validation when stdout is not a terminal.

    Under ``nohup``, SLURM or ``> log.txt`` a progress bar draws nothing until the run ends;
    these lines make a log file show how far training is and what it reaches, e.g.::

        epoch 3/10 done in 12.4 s: train/loss 0.8123
        validation after epoch 3: val/loss 0.9012, val/mAP 0.4210

    On a terminal (the progress bar's job) it prints nothing, unless ``always=True``.

    Args:
        always: print even when stdout is a terminal.
    """

    def __init__(self, always: bool = False):
        self.always = always
        self._start = 0.0

    def _enabled(self) -> bool:
        return self.always or not sys.stdout.isatty()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled():
            return
        metrics = _scalars(trainer.callback_metrics, exclude=("val/",))
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        print(
            f"epoch {trainer.current_epoch}{total} done in {time.monotonic() - self._start:.1f} s"
            + (f": {metrics}" if metrics else ""),
            flush=True,
        )

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled() or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = _scalars(trainer.callback_metrics, include="val/")
        print(f"validation after epoch {trainer.current_epoch}: {metrics or 'no metrics logged'}", flush=True)


def _scalars(metrics: dict[str, Any], include: str = "", exclude: tuple[str, ...] = ()) -> str:
    """``name value`` pairs of the scalar metrics whose names start with ``include``, sorted."""
    items = []
    for name, value in sorted(metrics.items()):
        if not name.startswith(include) or name.startswith(exclude) or name.endswith("_step"):
            continue
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            continue
        items.append(f"{name} {float(value):.4f}")
    return ", ".join(items)


class VersionTextRichProgressBar(RichProgressBar):
    """``RichProgressBar`` that shows the run version as ``v_num: 0``, not ``v_num: 0.000``.

    Lightning's rich metrics column formats every number with the theme's ``.3f``, the integer
    log version included. The vidlit CLI gives a configured ``RichProgressBar`` this behaviour.
    """

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        if "v_num" in items:
            items["v_num"] = str(items["v_num"])
        return items


class ResumableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is refreshed at every save point.

    Since Lightning 2.6, ``save_last=True`` rewrites ``last.ckpt`` only when a top-k checkpoint
    was saved in the same step, so with ``monitor`` and ``save_top_k: 1`` it keeps the best
    epoch's weights, and ``--ckpt_path last`` would resume from (or test) the wrong epoch.
    Here ``last.ckpt`` always holds the latest state. Arguments are ``ModelCheckpoint``'s.
    """

    def _refresh_last(self, trainer: L.Trainer) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer) and not self._should_save_on_train_epoch_end(
            trainer
        ):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer) and self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning 2.6 writes last.ckpt at the end even of a smoke run, which otherwise saves
        # nothing: each left <default_root_dir>/checkpoints/last-vN.ckpt behind (see smoke_run)
        if smoke_run(trainer):
            return
        super().on_train_end(trainer, pl_module)


class SubmissionWriter(BasePredictionWriter):
    """Write ``vidlit predict`` output in the dataset's official submission format.

    The data module decides the format through its ``write_submission(predictions, path)``
    method (e.g. the Ego4D MQ challenge JSON). Across processes, rank 0 gathers every rank's
    predictions and writes them once, in dataset order. ``DistributedSampler`` pads the ranks to
    equal length with copies of the first samples; a sample predicted twice (the same dataset
    index, or the same ``video_id`` where Lightning cannot track indices) is written once.

    Multi-view prediction (``num_clips > 1``) gives one prediction per view, consecutive and
    sharing the item's ``video_id``, so a batch holds more predictions than dataset indices.
    Each view is then keyed by ``(dataset index, view)`` (``(video_id, view)`` when the runs
    of ids do not line up with the indices, e.g. after a skipped video): every view reaches
    ``write_submission``, which aggregates them per video as the task's metric does (the video
    classification submission averages the views' scores), while a padding copy of a whole
    item is still dropped.

    Args:
        path: output file; defaults to ``submission.json`` in the run's log directory.
    """

    def __init__(self, path: str | None = None):
        super().__init__(write_interval="epoch")
        self.path = path

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "write_submission"):
            raise TypeError(f"{type(datamodule).__name__} has no write_submission(predictions, path) method")
        several_loaders = (
            predictions
            and isinstance(predictions[0], list)
            and predictions[0]
            and isinstance(predictions[0][0], list)
        )
        loaders = predictions if several_loaders else [predictions]
        keyed = []  # (key, sample); key None: never a repeat
        for loader, batches in enumerate(loaders):
            indices = batch_indices[loader] if batch_indices and loader < len(batch_indices) else []
            for i, batch in enumerate(batches):
                keyed.extend(
                    zip(_sample_keys(batch, indices[i] if i < len(indices) else None, loader), batch)
                )
        if trainer.world_size > 1:
            gathered = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, keyed)
            keyed = [pair for part in gathered for pair in part]
        if trainer.is_global_zero:
            flat = _first_of_each(keyed)
            path = Path(self.path or Path(trainer.log_dir or trainer.default_root_dir) / "submission.json")
            written = datamodule.write_submission(flat, path)
            log.info("wrote %d predictions to %s", len(flat), written)
            # predictions, not entries: a multi-view submission averages several into one video's
            print(f"Submission written to {written} ({len(flat)} predictions)")


def _sample_keys(batch: list[Any], batch_index: list[int] | None, loader: int) -> list[Any]:
    """The repeat key of each prediction of one batch (see :class:`SubmissionWriter`).

    ``(0, loader, index, view)`` when the predictions map onto the batch's dataset indices: one
    each, or consecutive runs of one ``video_id`` (the views of a multi-view item), one run per
    index. Else ``(1, loader, video_id, view)``, or None for a prediction without a ``video_id``.
    """
    if batch_index is not None and len(batch_index) == len(batch):
        return [(0, loader, batch_index[j], 0) for j in range(len(batch))]
    video_ids = [s.get("video_id") if isinstance(s, dict) else None for s in batch]
    runs: list[int] = []  # run number of each prediction
    views: list[int] = []  # its position in the run
    for j, video_id in enumerate(video_ids):
        same = j > 0 and video_id is not None and video_id == video_ids[j - 1]
        runs.append(runs[-1] + (not same) if runs else 0)
        views.append(views[-1] + 1 if same else 0)
    if batch_index is not None and batch and runs[-1] + 1 == len(batch_index):
        return [(0, loader, batch_index[run], view) for run, view in zip(runs, views)]
    return [
        None if video_id is None else (1, loader, str(video_id), view)
        for video_id, view in zip(video_ids, views)
    ]


def _first_of_each(keyed: list[tuple[Any, Any]]) -> list[Any]:
    """The first sample of each key: by dataset index in index order, then by video id, then unkeyed."""
    seen: dict[Any, Any] = {}
    rest = []
    for key, sample in keyed:
        if key is None:
            rest.append(sample)
        elif key not in seen:
            seen[key] = sample
    by_index = sorted(key for key in seen if key[0] == 0)
    return [seen[key] for key in by_index] + [seen[key] for key in seen if key[0] == 1] + rest


def smoke_run(trainer: L.Trainer) -> bool:
    """Whether ``trainer`` runs Lightning's ``fast_dev_run`` smoke run, which vidlit keeps from writing.

    A smoke run (a batch or a few of each loop, to check that a config runs) has no logger and so
    no run folder (:func:`run_dir`): its files would land in ``default_root_dir`` itself, beside or
    over a trained run's. So a smoke run writes no checkpoint (:class:`ResumableCheckpoint`:
    Lightning 2.6 still saves ``last.ckpt`` at its end), no ``config.yaml``
    (:class:`~vidlit.config.RunConfig`) and no ``backbone.pt`` (:class:`~vidlit.tasks.ExportBackbone`),
    and ``vidlit fit`` says so instead of naming them.
    """
    return bool(trainer.fast_dev_run)


def run_dir(trainer: L.Trainer) -> Path:
    """The run's folder: where ``ModelCheckpoint`` puts ``checkpoints/`` and vidlit its ``config.yaml``.

    ``<default_root_dir>/version_N`` with the default CSV logger; ``<save_dir>/<name>/<version>``
    for other loggers (W&B: ``<save_dir>/<project>/<run id>``), as Lightning's ``ModelCheckpoint``
    resolves it; ``default_root_dir`` without a logger.
    """
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    if isinstance(logger, (CSVLogger, TensorBoardLogger)):
        return Path(logger.log_dir)
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(logger.save_dir or trainer.default_root_dir) / str(logger.name) / version
