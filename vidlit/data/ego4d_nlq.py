"""Ego4D episodic memory: Natural Language Queries annotations, video features and submissions.

The official annotation files (``nlq_train.json``, ``nlq_val.json``, ``nlq_test_unannotated.json``)
nest ``videos -> clips -> annotations -> language_queries``. A clip is a window
``[video_start_sec, video_end_sec]`` of its video; each query has a ``query`` string and, except
in the test file, its answer window ``clip_start_sec`` / ``clip_end_sec`` in seconds from the clip
start (schema and rules: :mod:`vidlit.formats.ego4d_nlq`; a query without text is an error
naming it, where the official baseline skips it silently). A query keeps its index in
``language_queries`` (``query_idx``) for the submission.

Features are one ``<video_uid>.pt`` or ``.npy`` of shape ``[T, C]`` per *video*, one step every
``feature_stride`` frames at ``fps`` (the official SlowFast / Omnivore / EgoVLP features: stride
16 at 30 fps); each clip is cut out by seconds (:func:`vidlit.core.temporal.slice_by_seconds`)
and resampled to at most ``max_len`` steps, as the VSLNet baseline prepares its data.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from vidlit.core.io import ListedFiles, as_path, read_json, write_json_atomic
from vidlit.core.temporal import resample_features, seconds_to_span, slice_by_seconds
from vidlit.data.base import InferenceInput, missing_files
from vidlit.data.ego4d import Ego4DFeatureDataModule
from vidlit.data.features import (
    feature_steps,
    feature_timing,
    find_feature_files,
    load_feature_file,
    pad_sequences,
)
from vidlit.formats._ego4d import confine
from vidlit.formats._schema import validate
from vidlit.formats.ego4d_nlq import (
    CHALLENGE,
    FEATURE_STRIDE,
    FPS,
    VERSION,
    FeatureClock,
    NLQBatch,
    NLQFile,
    NLQPrediction,
    NLQSubmission,
)


@dataclass
class NLQQuery:
    """One language query on one clip.

    Attributes:
        clip_uid: the clip's id.
        video_uid: the id of the video the clip is cut from (names the feature file).
        annotation_uid: the id of the annotation the query belongs to.
        query_idx: the query's index in the annotation's ``language_queries``.
        query: the question.
        video_start_sec: clip start on the video clock.
        video_end_sec: clip end on the video clock.
        window: answer ``(start, end)`` in seconds from the clip start; None when unannotated.
        template: the query template (``"Objects: Where is object X?"``, ...), if given.
        where: the query's video in its file (``nlq_val.json: videos[2]``), for messages.
    """

    clip_uid: str
    video_uid: str
    annotation_uid: str
    query_idx: int
    query: str
    video_start_sec: float
    video_end_sec: float
    window: tuple[float, float] | None = None
    template: str | None = None
    where: str = ""

    @property
    def key(self) -> str:
        """A unique id of the query: ``clip_uid/annotation_uid/query_idx``."""
        return f"{self.clip_uid}/{self.annotation_uid}/{self.query_idx}"

    @property
    def duration(self) -> float:
        """Clip length in seconds."""
        return self.video_end_sec - self.video_start_sec


def read_nlq_annotations(path: str | Path) -> list[NLQQuery]:
    """Parse and validate an official Ego4D NLQ annotation JSON (:class:`~vidlit.formats.ego4d_nlq.NLQFile`).

    Args:
        path: ``nlq_{train,val,test_unannotated}.json``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid JSON (with line and column), or one line naming the record and key
            that breaks a rule of the schema (a missing, integer or blank ``query``, a window
            outside its clip, ...).
    """
    path = as_path(path)
    document = validate(NLQFile, read_json(path), path)
    queries = []
    for v, video in enumerate(document.videos):
        for clip in video.clips:
            for annotation in clip.annotations:
                for q, item in enumerate(annotation.language_queries):
                    queries.append(
                        NLQQuery(
                            clip_uid=clip.clip_uid,
                            video_uid=video.video_uid,
                            annotation_uid=annotation.annotation_uid,
                            query_idx=q,
                            query=item.query.strip(),
                            video_start_sec=clip.video_start_sec,
                            video_end_sec=clip.video_end_sec,
                            window=item.window,
                            template=item.template,
                            where=f"{path}: videos[{v}]",
                        )
                    )
    return queries


def write_nlq_submission(
    predictions: list[NLQPrediction], queries: dict[str, NLQQuery], path: str | Path
) -> Path:
    """Write predictions as an Ego4D NLQ challenge submission JSON.

    The layout is ``{"version": "1.0", "challenge": "ego4d_nlq_challenge", "results": [{"clip_uid",
    "annotation_uid", "query_idx", "predicted_times": [[start, end], ...]}, ...]}``, windows in
    seconds from the clip start, best first (the challenge scores the first 5), as the baseline's
    ``eval_test`` writes it. Written through a temporary file and a rename.

    Args:
        predictions: :meth:`VSLNetHead.predict` output; ``video_id`` is the query's :attr:`NLQQuery.key`.
        queries: the predicted queries by key.
        path: output file.
    """
    results = []
    for pred in predictions:
        query = queries.get(pred["video_id"])
        if query is None:
            raise ValueError(f"prediction for unknown query {pred['video_id']!r}")
        results.append(
            {
                "clip_uid": query.clip_uid,
                "annotation_uid": query.annotation_uid,
                "query_idx": query.query_idx,
                "predicted_times": [[float(s), float(e)] for s, e in pred["windows"].tolist()],
            }
        )
    return write_json_atomic(NLQSubmission(version=VERSION, challenge=CHALLENGE, results=results), path)


class NLQDataset(Dataset):
    """Queries of one split with their clip's feature sequence and answer span.

    Args:
        queries: parsed annotations.
        feature_dir: folder of ``<video_uid>.pt`` / ``.npy`` files.
        feature_dim: expected C.
        step_sec: seconds between feature steps.
        max_len: clip features longer than this are resampled to it.
        cache_size: clips kept in memory (per process); queries of one clip share its features.
        listed: the feature folder's listing to share (a data module's, for all its splits); None
            lists a URL folder afresh.
    """

    def __init__(
        self,
        queries: list[NLQQuery],
        feature_dir: Path | str,
        feature_dim: int,
        step_sec: float,
        max_len: int = 128,
        cache_size: int = 64,
        listed: ListedFiles | None = None,
    ):
        self.queries = queries
        self.feature_dir = feature_dir
        self.feature_dim = feature_dim
        self.step_sec = step_sec
        self.max_len = max_len
        self.cache_size = cache_size
        uids = list(dict.fromkeys(q.video_uid for q in queries))
        self.paths = dict(zip(uids, find_feature_files(feature_dir, uids, listed)))
        self._cache: OrderedDict[str, Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self.queries)

    def clip_features(self, query: NLQQuery) -> Tensor:
        """``[T', C]`` features of the query's clip, resampled to at most ``max_len`` steps."""
        if query.clip_uid in self._cache:
            self._cache.move_to_end(query.clip_uid)
            return self._cache[query.clip_uid]
        path = self.paths.get(query.video_uid)
        what = f"video {query.video_uid}, clip {query.clip_uid}"
        if path is None:
            raise FileNotFoundError(f"{self.feature_dir}/{query.video_uid}.pt|.npy ({what}): not found")
        video = load_feature_file(path, self.feature_dim, what=what)
        try:
            clip = slice_by_seconds(video, query.video_start_sec, query.video_end_sec, self.step_sec)
        except ValueError as e:
            raise ValueError(f"{path} ({what}): {e}") from None
        clip = resample_features(clip, self.max_len).clone()
        self._cache[query.clip_uid] = clip
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return clip

    def __getitem__(self, index: int) -> dict[str, Any]:
        query = self.queries[index]
        features = self.clip_features(query)
        duration = query.duration
        if query.window is None:
            window, span = (0.0, 0.0), (0, 0)
        else:
            window = (min(max(query.window[0], 0.0), duration), min(max(query.window[1], 0.0), duration))
            span = seconds_to_span(window[0], window[1], features.shape[0], duration)
        return {
            "features": features,
            "query": query.query,
            "video_id": query.key,
            "duration": duration,
            "start_index": span[0],
            "end_index": span[1],
            "window": torch.tensor(window, dtype=torch.float32),
        }


def collate_nlq(samples: list[dict[str, Any]]) -> NLQBatch:
    """Collate queries into an :class:`~vidlit.formats.ego4d_nlq.NLQBatch`.

    Shape legend: ``b`` queries, ``t`` steps (padded to the longest clip), ``c`` channels.

    Returns:
        ``features [b, t, c]``, ``mask [b, t]`` bool, ``queries`` (``b`` strings), ``video_ids``
        (query keys), ``duration [b]`` seconds, ``start_index`` / ``end_index [b]`` int64 answer
        span in steps, and ``targets``: ``{"video_id", "window": [2] seconds}`` per query.
    """
    features, mask = pad_sequences([s["features"] for s in samples])
    return NLQBatch(**{
        "features": features,
        "mask": mask,
        "queries": [s["query"] for s in samples],
        "video_ids": [s["video_id"] for s in samples],
        "duration": torch.tensor([s["duration"] for s in samples], dtype=torch.float32),
        "start_index": torch.tensor([s["start_index"] for s in samples], dtype=torch.long),
        "end_index": torch.tensor([s["end_index"] for s in samples], dtype=torch.long),
        "targets": [{"video_id": s["video_id"], "window": s["window"]} for s in samples],
    })  # fmt: skip


class Ego4DNLQ(Ego4DFeatureDataModule):
    """Ego4D Natural Language Queries on pre-extracted per-video features.

    Annotation files are validated against :mod:`vidlit.formats.ego4d_nlq` in ``setup()``: one
    line names the file, the record and the key at fault.

    Args:
        root: dataset folder; relative file arguments below resolve against it.
        train_annotations: official train annotation JSON.
        val_annotations: official val annotation JSON (also the default test set).
        test_annotations: annotations evaluated by ``vidlit test``; defaults to ``val_annotations``.
        predict_annotations: queries ``vidlit predict`` runs on (e.g. ``nlq_test_unannotated.json``);
            defaults to ``val_annotations``.
        feature_dir: folder of ``<video_uid>.pt`` / ``.npy`` features.
        feature_dim: C of the features (official SlowFast: 2304; Omnivore: 1536; EgoVLP: 256).
        fps: frame rate the features were extracted at; None reads it from the feature folder's
            ``extraction.json`` (written by ``vidlit extract``), else the official 30.
        feature_stride: frames between consecutive feature steps; step ``i`` starts at
            ``i * feature_stride / fps`` seconds. None: from ``extraction.json``, else 16.
        max_len: clips with more steps are resampled to this many (VSLNet's ``max_pos_len``).
        synthetic: when ``root`` does not exist, generate the synthetic sample dataset there
            (``vidlit data synth ego4d_nlq``) and say so. Leave False for real data.
        strict: a missing feature file raises; when False, its queries are skipped with a warning.
        batch_size: queries per batch.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        root: str = "data/ego4d_nlq",
        train_annotations: str = "nlq_train.json",
        val_annotations: str = "nlq_val.json",
        test_annotations: str | None = None,
        predict_annotations: str | None = None,
        feature_dir: str = "features",
        feature_dim: int = 2304,
        fps: float | None = None,
        feature_stride: int | None = None,
        max_len: int = 128,
        synthetic: bool = False,
        strict: bool = True,
        batch_size: int = 32,
        num_workers: int = 0,
    ):
        def write_synthetic(root: Path) -> None:
            from vidlit.data.synth.ego4d_nlq import write_ego4d_nlq

            write_ego4d_nlq(
                root, feature_dim=feature_dim, fps=fps or FPS, feature_stride=feature_stride or FEATURE_STRIDE
            )

        super().__init__(
            root, train_annotations, val_annotations, test_annotations, predict_annotations,
            feature_dir, feature_dim, write_synthetic if synthetic else None, strict, batch_size, num_workers,
        )  # fmt: skip
        if max_len < 1:
            raise ValueError(f"max_len must be positive, got {max_len}")
        # None: stated once, in the feature folder's extraction.json (else the official 30 fps / 16)
        fps, feature_stride, _ = feature_timing(
            self.feature_dir, fps, feature_stride, None, (FPS, FEATURE_STRIDE, 0)
        )
        self.step_sec = FeatureClock(fps, feature_stride).step_sec
        self.max_len = max_len
        self._listed = ListedFiles()  # a URL feature folder listed once, for all splits

    def queries(self, split: str) -> list[NLQQuery]:
        """Parsed queries of ``split`` (train, val, test or predict), read once."""
        return self.read_split(split, read_nlq_annotations)

    def dataset(self, split: str) -> NLQDataset:
        """The dataset of one split, with missing feature files reported before training starts."""
        queries = self.queries(split)
        for query in queries:
            confine(self.feature_dir, query.video_uid, f"{query.where}: key 'video_uid'")
        if not queries:
            raise ValueError(f"{self.files[split]}: no language queries with text found")
        if split != "predict" and any(q.window is None for q in queries):
            missing = next(q for q in queries if q.window is None)
            raise ValueError(
                f"{self.files[split]}: query {missing.key} has no clip_start_sec / clip_end_sec; "
                f"the {split} split needs annotated queries (unannotated files are for predict)"
            )
        dataset = NLQDataset(
            queries, self.feature_dir, self.feature_dim, self.step_sec, self.max_len, listed=self._listed
        )
        missing = sorted(uid for uid, path in dataset.paths.items() if path is None)
        if missing:
            missing_files(
                f"{self.feature_dir}: no feature file (.pt or .npy) for {len(missing)} of "
                f"{len(dataset.paths)} {split} videos, e.g. video {missing[0]}",
                self.strict,
                skipping="skipping their queries",
            )
            dataset.queries = [q for q in queries if dataset.paths[q.video_uid] is not None]
        return dataset

    def _collate(self) -> Callable:
        return collate_nlq

    def inference_inputs(
        self,
        path: Path,
        video_id: str,
        texts: list[str] | None = None,
        window: tuple[float, float] | None = None,
    ) -> InferenceInput:
        """``vidlit infer``: ``path`` is one video's ``[T, C]`` features; each text is a query on its clip.

        The clip is ``window`` (seconds on the file's clock, as an annotation's ``video_start_sec``
        / ``video_end_sec``), by default all the file covers. Queries are answered as ``vidlit
        predict`` answers an annotation's: clip ``<file stem>``, annotation ``"texts"``,
        ``query_idx`` the text's index. The features are read once (the default window from the
        file's header).
        """
        uid, what = path.stem, video_id
        if not texts or any(not t.strip() for t in texts):
            raise ValueError(f"{type(self).__name__}: an NLQ model needs non-empty queries (--texts)")
        if window is None:
            window = (0.0, feature_steps(path, what) * self.step_sec)
        start, end = window
        if not 0 <= start < end:
            raise ValueError(f"{what}: the clip window needs 0 <= start < end, got [{start}, {end}] s")
        queries = [
            NLQQuery(uid, uid, "texts", i, text.strip(), float(start), float(end), where=what)
            for i, text in enumerate(texts)
        ]
        dataset = NLQDataset(queries, path.parent, self.feature_dim, self.step_sec, self.max_len)
        dataset.paths = {uid: path}  # the file given, whatever folder it lies in
        by_key = {q.key: q for q in queries}
        return InferenceInput(
            collate_nlq([dataset[i] for i in range(len(queries))]),
            uid,
            lambda preds, out: write_nlq_submission(preds, by_key, out),
        )

    def write_submission(self, predictions: list[dict[str, Any]], path: str | Path) -> Path:
        """Write ``vidlit predict`` output as an Ego4D NLQ challenge submission JSON."""
        return write_nlq_submission(predictions, {q.key: q for q in self.queries("predict")}, path)
