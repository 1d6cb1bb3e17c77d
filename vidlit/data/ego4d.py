"""What the Ego4D episodic-memory data modules on pre-extracted features share.

Moment Queries (:mod:`vidlit.data.ego4d_mq`) and Natural Language Queries
(:mod:`vidlit.data.ego4d_nlq`) read an official annotation file per split, validated when first
read (in ``setup()``, or when the class list is first asked for), and a folder of feature files
named by ids from those files. The dataset folder may be an fsspec URL (``s3://bucket/ego4d``,
``memory://x``): annotations and features are then read through :func:`fsspec.open`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidlit.core.io import as_folder, join_path
from vidlit.data.base import VidlitDataModule, split_files

log = logging.getLogger(__name__)


class Ego4DFeatureDataModule(VidlitDataModule):
    """What the Ego4D episodic-memory data modules on pre-extracted features share.

    The dataset folder (filled with the synthetic sample dataset on first use when asked), the
    official annotation file each split reads (``test`` and ``predict`` default to ``val``),
    parsed once, and the feature folder. Subclasses: :class:`vidlit.data.ego4d_mq.Ego4DMQ`,
    :class:`vidlit.data.ego4d_nlq.Ego4DNLQ`.

    Args:
        root: dataset folder, or an fsspec URL of one (``s3://bucket/ego4d_mq``, ``memory://x``,
            ``file:///data/ego4d_mq``); relative file arguments resolve against it.
        train_annotations: train annotation file.
        val_annotations: val annotation file.
        test_annotations: the ``test`` split's file; None uses ``val_annotations``.
        predict_annotations: the ``predict`` split's file; None uses ``val_annotations``.
        feature_dir: feature folder, relative to ``root`` (or a path or URL of its own).
        feature_dim: C of the features.
        write_synthetic: called with ``root`` when ``root`` is a local folder that does not exist,
            to write the SYNTHETIC sample dataset there (with a warning); None leaves a missing
            root alone (as for a URL root).
        strict: missing feature files raise; when False, their items are skipped with a warning.
        batch_size: items per batch.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        root: str,
        train_annotations: str,
        val_annotations: str,
        test_annotations: str | None,
        predict_annotations: str | None,
        feature_dir: str,
        feature_dim: int,
        write_synthetic: Callable[[Path], Any] | None,
        strict: bool,
        batch_size: int,
        num_workers: int,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.root: Path | str = as_folder(root)
        if write_synthetic is not None:
            from vidlit.data.synth import write_sample_if_missing

            write_sample_if_missing(
                self.root, write_synthetic, f"{type(self).__name__} sample dataset", log=log
            )
        self.feature_dir = join_path(self.root, feature_dir)
        self.feature_dim = feature_dim
        self.strict = strict
        self.files = split_files(
            self.root, train_annotations, val_annotations, test_annotations, predict_annotations
        )
        self._annotations: dict[str, list] = {}

    def read_split(self, split: str, reader: Callable[[Path | str], list]) -> list:
        """``reader(file of split)``, read once per split."""
        if split not in self._annotations:
            self._annotations[split] = reader(self.files[split])
        return self._annotations[split]
