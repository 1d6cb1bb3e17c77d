"""Checkpoint files: written atomically, read without running pickled code, found by ``--ckpt_path last``."""

from __future__ import annotations

import fcntl
import os
import pickle
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.plugins.io import TorchCheckpointIO

from vidlit.core.io import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save checkpoints through a temporary file in the same folder and an atomic rename.

    Written by :func:`vidlit.core.io.atomic_open` (flushed and fsynced before the rename, with a
    plain file's permissions): a run killed while saving leaves the previous checkpoint intact,
    never half a file. Loading
    always uses ``torch.load(weights_only=True)``: a checkpoint is data and never executes code.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: checkpoint not found")
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
            if _torch_archive(path) or _legacy_torch_save(path):
                raise  # a checkpoint, unsafe or damaged: torch's own explanation
            # no checkpoint at all (a video passed by mistake, an .npz): torch.save writes a zip archive
            # with a data.pkl
            raise ValueError(f"{path}: not a checkpoint (not the zip archive torch.save writes)") from e


def _torch_archive(path: Path) -> bool:
    """Whether ``path`` is a zip archive as ``torch.save`` writes them (``<name>/data.pkl`` in it)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("data.pkl") for name in archive.namelist())


def _legacy_torch_save(path: Path) -> bool:
    """Whether ``path`` starts as ``torch.save(..., _use_new_zipfile_serialization=False)`` writes:
    a protocol-2 pickle of torch's magic number (``0x1950a86a20f9469cfc6c``, a 10-byte long)."""
    with path.open("rb") as f:
        return f.read(4) == b"\x80\x02\x8a\x0a"


# ``atomic_open``'s temporaries: ``.<name>.<8 random characters>.tmp`` beside ``<name>``
_TEMPORARY = re.compile(r"^\.(?P<name>.+\.(?:ckpt|pt))\.[A-Za-z0-9_]{8}\.tmp$")

# Config keys that say where a run logs, what it reports or how much of it to evaluate, not what
# it trains: two runs that differ only in these are the same configuration for ``--ckpt_path
# last``. Callbacks count as such (progress bars, monitors, checkpointing, a test's kill switch).
RUN_CONTROL_KEYS = (
    "ckpt_path",
    "config",
    "submission",
    "return_predictions",
    "verbose",
    "trainer.logger",
    "trainer.callbacks",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.limit_val_batches",
    "trainer.limit_test_batches",
    "trainer.limit_predict_batches",
)


def remove_stale_temporaries(root: str | os.PathLike) -> list[Path]:
    """Remove the temporaries a killed writer left under ``root``; returns the removed paths.

    Only files of :func:`vidlit.core.io.atomic_open`'s naming for checkpoints and feature files
    (``.last.ckpt.XXXXXXXX.tmp``, ``.clip.pt.XXXXXXXX.tmp``) are touched, and only when no live
    process holds them: ``atomic_open`` keeps an exclusive ``flock`` on its temporary while
    writing, which the kernel drops when the writer dies, so a concurrent run's write in
    progress is never removed.
    """
    removed = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for path in root.rglob(".*.tmp"):
        if _TEMPORARY.match(path.name) and path.is_file() and not _in_use(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _in_use(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True  # unreadable: not ours to judge
    return False


def is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file (a zip archive with its central directory)."""
    try:
        return Path(path).is_file() and zipfile.is_zipfile(path)
    except OSError:
        return False


def config_differences(
    saved: dict[str, Any], current: dict[str, Any], ignore: tuple[str, ...] = ()
) -> dict[str, tuple[Any, Any]]:
    """The dotted keys whose values differ between two resolved configs, run-control keys excluded.

    Args:
        saved: the ``config.yaml`` of the run a checkpoint belongs to, as a dict.
        current: this run's resolved config, as a dict.
        ignore: more keys (and the keys under them) to leave out, besides :data:`RUN_CONTROL_KEYS`.

    Returns:
        ``{key: (saved value, current value)}``, sorted by key; a missing key's value is None.
    """
    a, b = _flatten(saved), _flatten(current)
    return {
        key: (a.get(key), b.get(key))
        for key in sorted(a.keys() | b.keys())
        if a.get(key) != b.get(key)
        and not any(key == k or key.startswith(k + ".") for k in (*RUN_CONTROL_KEYS, *ignore))
    }


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tree}


@dataclass
class CheckpointChoice:
    """The checkpoint ``--ckpt_path last`` resolved to, and why (one line for the user)."""

    path: Path
    run_dir: Path
    reason: str


def run_folder(checkpoint: Path, root: Path) -> Path | None:
    """The run a checkpoint belongs to: its nearest ancestor (up to ``root``) with a ``config.yaml``."""
    root = root.resolve()
    for folder in checkpoint.parents:
        if (folder / "config.yaml").is_file():
            return folder
        resolved = folder.resolve()
        if resolved == root or root not in resolved.parents:
            return None
    return None


def find_last_checkpoint(
    root: str | os.PathLike,
    current: dict[str, Any],
    ignore: tuple[str, ...] = (),
    fallback: bool = False,
    near: tuple[str, ...] = (),
) -> CheckpointChoice:
    """Resolve ``--ckpt_path last``: the newest run under ``root`` trained with this configuration.

    Runs are the folders holding a ``config.yaml`` (the resolved config vidlit saves with every
    ``fit``); a run matches when its config equals ``current`` except for run-control keys
    (:data:`RUN_CONTROL_KEYS`: logger, evaluation limits, ...). Of the newest matching run, its
    ``last.ckpt``, or, when that is missing or incomplete (killed during its first write), its
    newest complete checkpoint; a matching run without any complete checkpoint is skipped (and
    named). A run's age is its newest checkpoint file's. Configs are compared first, newest run
    first, and only the chosen run's checkpoints are opened (:func:`is_complete`), so a root with
    many old runs costs one ``config.yaml`` read per run newer than the match and a few checks.

    Args:
        root: ``trainer.default_root_dir``.
        current: this run's resolved config, as a dict.
        ignore: more config keys that may differ (e.g. ``("data",)`` to evaluate a model on
            other data or another split).
        fallback: when no run matches, take the newest run with a config anyway and say, in the
            reason, how it differs (for evaluation, where the settings of the evaluation itself,
            such as a sampler's steps, may differ from training's). Never silent: the reason
            names every run skipped and the differences of the one taken.
        near: with ``fallback``, keys (and the keys under them) whose differences make a run the
            next choice when none matches exactly: the newest run that differs only in them is
            taken before any other (e.g. ``("trainer", "seed_everything")`` for an evaluation
            that does not repeat how its run was trained), and the reason names the differences.

    Raises:
        FileNotFoundError: no complete checkpoint under ``root`` belongs to a run of this
            configuration (and ``fallback`` is off or no run with a config has a complete
            checkpoint); the message names the newest other run and how it differs.
    """
    root = Path(root)
    runs = _checkpoints_by_run(root)
    if not runs:
        raise FileNotFoundError(f"--ckpt_path last: no checkpoint under {root} (trainer.default_root_dir)")
    newest_first = sorted(runs, key=lambda run: runs[run][0][0], reverse=True)
    skipped = []
    incomplete = False
    # the newest run differing only in `near` keys: (run, its checkpoint, how it differs)
    nearest: tuple[Path, Path, str] | None = None
    for run in newest_first:
        if run is None:
            skipped.append(f"{runs[run][0][1].parent} has no config.yaml")
            continue
        saved = yaml.safe_load((run / "config.yaml").read_text()) or {}
        if differences := config_differences(saved, current, ignore):
            shown = [
                f"{key} (run: {was!r}, now: {now!r})" for key, (was, now) in list(differences.items())[:3]
            ]
            more = f" and {len(differences) - 3} more" if len(differences) > 3 else ""
            skipped.append(f"{run} differs in {', '.join(shown)}{more}")
            if nearest is None and near and not config_differences(saved, current, (*ignore, *near)):
                if (found := _newest_complete(runs[run])) is not None:
                    nearest = (run, found[0], skipped[-1])
            continue
        if (found := _newest_complete(runs[run])) is None:
            incomplete = True
            skipped.append(f"{run} has this configuration but no complete checkpoint")
            continue
        path, is_last = found
        if is_last:
            reason = f"last.ckpt of the newest run with this configuration ({run})"
        else:
            reason = f"newest complete checkpoint of {run}: it has no complete last.ckpt"
        if skipped:
            reason += f"; skipped newer: {'; '.join(skipped)}"
        return CheckpointChoice(path, run, reason)
    if fallback and nearest is not None:
        run, path, differs = nearest
        others = "; ".join(line for line in skipped if line != differs) or "none"
        return CheckpointChoice(
            path,
            run,
            "NO run has exactly this configuration; taking the newest run that differs only in "
            f"{', '.join(near)}: {differs}; skipped: {others}",
        )
    if fallback:
        for run in newest_first:
            if run is not None and (found := _newest_complete(runs[run])) is not None:
                return CheckpointChoice(
                    found[0],
                    run,
                    f"NO run has this configuration; taking the newest run, {'; '.join(skipped)}",
                )
    has = "with this configuration has a complete checkpoint" if incomplete else "has this configuration"
    raise FileNotFoundError(
        f"--ckpt_path last: no run under {root} {has} ({'; '.join(skipped)}); "
        "pass a checkpoint's path to --ckpt_path to use it anyway"
    )


def _checkpoints_by_run(root: Path) -> dict[Path | None, list[tuple[float, Path]]]:
    """The ``.ckpt`` files under ``root`` by run (:func:`run_folder`), each ``(mtime, path)``, newest first.

    Reads only directory entries and file metadata: no checkpoint is opened here.
    """
    runs: dict[Path | None, list[tuple[float, Path]]] = {}
    folders: dict[Path, Path | None] = {}  # a checkpoint's run depends only on its folder
    for path in root.rglob("*.ckpt") if root.is_dir() else ():
        if path.name.startswith("."):  # atomic_open's temporaries
            continue
        try:
            status = path.stat()
        except OSError:  # removed meanwhile (a concurrent run's top-k rotation)
            continue
        if not stat.S_ISREG(status.st_mode):
            continue
        if path.parent not in folders:
            folders[path.parent] = run_folder(path, root)
        runs.setdefault(folders[path.parent], []).append((status.st_mtime, path))
    for checkpoints in runs.values():
        checkpoints.sort(key=lambda entry: entry[0], reverse=True)
    return runs


def _newest_complete(checkpoints: list[tuple[float, Path]]) -> tuple[Path, bool] | None:
    """A run's newest complete ``last.ckpt``, else its newest complete checkpoint, with whether it
    is a ``last.ckpt``; None when none is complete. Stops at the first complete file."""
    for want_last in (True, False):
        for _, path in checkpoints:
            if (path.name == "last.ckpt") == want_last and is_complete(path):
                return path, want_last
    return None
