"""Ego4D Short-Term Object Interaction Anticipation (STA): annotations, detections, clips, submissions.

The official files (``fho_sta_train.json``, ``fho_sta_val.json``, ``fho_sta_test_unannotated.json``
of the Ego4D forecasting benchmark, read by ``EGO4D/forecasting``'s
``Ego4dShortTermAnticipation``) hold::

    {"info": {..., "video_metadata": {video_uid: {"fps", "frame_width", "frame_height", ...}}},
     "noun_categories": [{"id", "name"}], "verb_categories": [{"id", "name"}],
     "annotations": [{"uid", "video_uid", "frame", "clip_uid", "clip_frame",
                      "objects": [{"box": [x1, y1, x2, y2], "noun_category_id", "verb_category_id",
                                   "time_to_contact"}]}]}

Boxes are in pixels of the full-resolution frame ``frame`` of ``<video_uid>.mp4``; the test file has
no ``objects``. The category lists may also sit inside ``info`` (some releases); both are read.
Object detections, when used, follow the baseline's ``produce_object_detections.py`` layout
``{uid: [{"box", "score", "noun_category_id"}]}``. Submissions are
``{"version": "1.0", "challenge": "ego4d_short_term_object_interaction_anticipation", "results":
{uid: [{"box", "noun_category_id", "verb_category_id", "time_to_contact", "score"}]}}`` with an
entry (possibly empty) for every uid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from vidlit.core.boxes import normalize_boxes
from vidlit.core.io import read_json, require, write_json_atomic
from vidlit.data.base import InferenceInput
from vidlit.data.raw_video import RawVideoFolderDataModule
from vidlit.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vidlit.data.video import open_video, stored_size
from vidlit.formats._ego4d import confine
from vidlit.formats._schema import validate
from vidlit.formats.ego4d_sta import (
    CHALLENGE,
    VERSION,
    STABatch,
    STAFile,
    STAPrediction,
    STASubmission,
    category_names,
)

STA_CHALLENGE = CHALLENGE  # the name this module has exported


@dataclass
class STAFrame:
    """One annotated frame.

    Attributes:
        uid: the annotation's ``uid`` (the key of predictions and submissions).
        video_uid: the video the frame belongs to.
        frame: frame index in the video.
        clip_uid: the clip (v2 annotations), or None.
        clip_frame: frame index in the clip, or None.
        boxes: ``[N, 4]`` ``x1 y1 x2 y2`` pixel boxes of the next-active objects (empty when unannotated).
        nouns: ``[N]`` noun category ids.
        verbs: ``[N]`` verb category ids.
        ttcs: ``[N]`` time to contact in seconds.
        where: the annotation's place in its file (``fho_sta_val.json: annotations[3]``).
    """

    uid: str
    video_uid: str
    frame: int
    clip_uid: str | None = None
    clip_frame: int | None = None
    boxes: Tensor = field(default_factory=lambda: torch.zeros(0, 4))
    nouns: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    verbs: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    ttcs: Tensor = field(default_factory=lambda: torch.zeros(0))
    where: str = ""


@dataclass
class STAAnnotations:
    """A parsed STA annotation file.

    Attributes:
        noun_names: name of each noun id (index = id).
        verb_names: name of each verb id.
        video_metadata: ``info.video_metadata`` (fps, frame_width, frame_height per video).
        frames: the annotated frames in file order.
    """

    noun_names: list[str]
    verb_names: list[str]
    video_metadata: dict[str, dict[str, Any]]
    frames: list[STAFrame]


def read_sta_annotations(
    path: str | Path,
    nouns: int | None = None,
    verbs: int | None = None,
    taxonomy_file: str | Path | None = None,
) -> STAAnnotations:
    """Parse and validate an official Ego4D STA annotation file (:class:`~vidlit.formats.ego4d_sta.STAFile`).

    Args:
        path: ``fho_sta_{train,val,test_unannotated}.json``.
        nouns: noun ids of the taxonomy (the train file's); None checks against this file's lists.
        verbs: verb ids of the taxonomy.
        taxonomy_file: where the taxonomy came from, for the message.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid JSON (line and column), or one line naming the record and key that
            breaks a rule of the schema (a malformed box, a negative time to contact, a noun or
            verb id outside the taxonomy, ...).
    """
    path = Path(path)
    context: dict[str, Any] = {"taxonomy_file": str(taxonomy_file or path)}
    if nouns is not None:
        context["nouns"] = nouns
    if verbs is not None:
        context["verbs"] = verbs
    document = validate(STAFile, read_json(path), path, context=context)
    frames = []
    for a, ann in enumerate(document.annotations):
        item = STAFrame(
            ann.uid, ann.video_uid, ann.frame, ann.clip_uid, ann.clip_frame, where=f"{path}: annotations[{a}]"
        )
        if ann.objects:
            item.boxes = torch.tensor([list(o.box) for o in ann.objects], dtype=torch.float32)
            item.nouns = torch.tensor([o.noun_category_id for o in ann.objects])
            item.verbs = torch.tensor([o.verb_category_id for o in ann.objects])
            item.ttcs = torch.tensor([o.time_to_contact for o in ann.objects], dtype=torch.float32)
        frames.append(item)
    return STAAnnotations(
        category_names(document.noun_categories),
        category_names(document.verb_categories),
        document.video_metadata,
        frames,
    )


def read_sta_detections(path: str | Path) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """Read object detections: ``{uid: [{"box", "score", "noun_category_id"}]}``.

    Returns:
        ``{uid: (boxes [N, 4] pixels, scores [N], nouns [N])}``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid JSON or a malformed detection, naming the uid.
    """
    path = Path(path)
    data = read_json(path, "detections file")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object {{uid: [detections]}}")
    return {uid: parse_sta_detections(dets, path, f"uid {uid} ") for uid, dets in data.items()}


def parse_sta_detections(
    detections: Any, source: str | Path, where: str = ""
) -> tuple[Tensor, Tensor, Tensor]:
    """One frame's detections, ``[{"box": [x1, y1, x2, y2] pixels, "score", "noun_category_id"?}]``.

    Args:
        detections: the list (a detections file's entry, or boxes given in memory, e.g. drawn on
            ``vidlit serve``'s page).
        source: what errors name first (the file, or the input).
        where: the entry's place in ``source`` (``"uid u "``), prefixed to ``detection i``.

    Returns:
        ``(boxes [N, 4] pixels, scores [N], nouns [N])`` (``-1`` where no noun is given).

    Raises:
        ValueError: not a list, a missing key, a box that is not four numbers or a noun that is no
            class index, naming the detection.
    """
    if not isinstance(detections, list):
        raise ValueError(
            f"{source}: {where.strip() or 'detections'}: expected a list of detections, got {detections!r}"
        )
    boxes, scores, nouns = [], [], []
    for d, det in enumerate(detections):
        at = f"{where}detection {d}"
        box = require(det, "box", at, source)
        if not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box):
            raise ValueError(f"{source}: {at}: box must be [x1, y1, x2, y2], got {box}")
        score = require(det, "score", at, source)
        if not isinstance(score, (int, float)):
            raise ValueError(f"{source}: {at}: score must be a number, got {score!r}")
        boxes.append([float(v) for v in box])
        scores.append(float(score))
        noun = det.get("noun_category_id")  # absent or null: the detector named no noun
        if noun is not None and (not isinstance(noun, int) or isinstance(noun, bool) or noun < 0):
            raise ValueError(f"{source}: {at}: noun_category_id must be a class index, got {noun!r}")
        nouns.append(-1 if noun is None else noun)
    return (
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(scores, dtype=torch.float32),
        torch.tensor(nouns, dtype=torch.long),
    )


def write_sta_submission(predictions: list[STAPrediction], path: str | Path) -> Path:
    """Write predictions as an Ego4D STA challenge submission JSON (atomically).

    Args:
        predictions: one dict per annotated frame: ``video_id`` (the uid), ``boxes [K, 4]`` pixels,
            ``nouns``, ``verbs``, ``ttcs``, ``scores`` (``[K]`` each).
        path: output file.
    """
    results = {}
    for pred in predictions:
        results[str(pred["video_id"])] = [
            {
                "box": [float(v) for v in box],
                "noun_category_id": int(noun),
                "verb_category_id": int(verb),
                "time_to_contact": float(ttc),
                "score": float(score),
            }
            for box, noun, verb, ttc, score in zip(
                pred["boxes"].tolist(),
                pred["nouns"].tolist(),
                pred["verbs"].tolist(),
                pred["ttcs"].tolist(),
                pred["scores"].tolist(),
                strict=True,
            )  # fmt: skip
        ]
    return write_json_atomic(STASubmission(version=VERSION, challenge=CHALLENGE, results=results), path)


def sta_frame_indices(frame: int, num_frames: int, stride: int) -> list[int]:
    """The official input frames: ``frame - arange(num_frames * stride, step=stride)[::-1]``, clamped at 0.

    The annotated frame is the last one observed.
    """
    return [max(0, frame - (num_frames - 1 - i) * stride) for i in range(num_frames)]


class ShortTermAnticipationDataset(Dataset):
    """Annotated frames with the clip before them and the boxes the head classifies.

    Items: ``{"video": uint8 [t, size, size, 3], "boxes": [N, 4] normalized to [0, 1],
    "orig_boxes": [N, 4] pixels, "box_scores": [N], "video_id": uid, "target": {...}}``.

    Args:
        annotations: the parsed split.
        video_dir: folder of ``<video_uid>.mp4`` (or ``<clip_uid>.mp4`` with ``use_clips``).
        num_frames: frames per clip.
        frame_stride: frames between consecutive clip frames.
        size: frames are resized to ``size x size`` by the decoder (boxes are normalized, so the
            aspect ratio only stretches them along with the frame).
        detections: per-uid detector output; None uses the ground-truth boxes (score 1).
        score_threshold: detections scoring below this are dropped (the baseline's
            ``DETECTION_SCORE_THRESH``).
        use_clips: read ``clip_uid`` videos at ``clip_frame`` instead of full videos at ``frame``.
        backend: video backend.
    """

    def __init__(
        self,
        annotations: STAAnnotations,
        video_dir: Path,
        num_frames: int,
        frame_stride: int,
        size: int,
        detections: dict[str, tuple[Tensor, Tensor, Tensor]] | None = None,
        score_threshold: float = 0.0,
        use_clips: bool = False,
        backend: str = "auto",
    ):
        self.annotations = annotations
        self.frames = annotations.frames
        self.video_dir = video_dir
        self.num_frames = num_frames
        self.frame_stride = frame_stride
        self.size = size
        self.detections = detections
        self.score_threshold = score_threshold
        self.use_clips = use_clips
        self.backend = backend

    def __len__(self) -> int:
        return len(self.frames)

    def source(self, item: STAFrame) -> tuple[Path, int]:
        """The video file of an annotated frame and the frame's index in it."""
        if self.use_clips:
            if item.clip_uid is None or item.clip_frame is None:
                raise ValueError(f"uid {item.uid}: use_clips needs clip_uid and clip_frame in the annotation")
            return self.video_dir / f"{item.clip_uid}.mp4", int(item.clip_frame)
        return self.video_dir / f"{item.video_uid}.mp4", item.frame

    def frame_size(self, item: STAFrame, path: Path) -> tuple[int, int]:
        """``(height, width)`` of the frames the annotation's pixel boxes refer to.

        From ``info.video_metadata`` when the file lists the video (the official files do), else
        read from the video's header once per file.
        """
        meta = self.annotations.video_metadata.get(item.video_uid, {})
        if "frame_height" in meta and "frame_width" in meta:
            return int(meta["frame_height"]), int(meta["frame_width"])
        return stored_size(path)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.frames[index]
        path, frame = self.source(item)
        indices = sta_frame_indices(frame, self.num_frames, self.frame_stride)
        # the decoder scales to size x size while converting to RGB: no full-resolution frames
        with open_video(path, self.backend, resize=(self.size, self.size), num_threads=1) as reader:
            if frame >= len(reader):
                raise ValueError(
                    f"uid {item.uid}: frame {frame} is past the end of {path} ({len(reader)} frames)"
                )
            clip = reader.get_frames(indices)  # t h w c, uint8 at size x size
        height, width = self.frame_size(item, path)
        if self.detections is None:
            boxes, scores = item.boxes, torch.ones(len(item.boxes))
        else:
            if item.uid not in self.detections:
                raise ValueError(f"uid {item.uid}: no entry in the detections file")
            boxes, scores, _ = self.detections[item.uid]
            keep = scores >= self.score_threshold
            boxes, scores = boxes[keep], scores[keep]
        normalized = normalize_boxes(boxes, (height, width)).clamp(0, 1)
        target = {"video_id": item.uid, "boxes": item.boxes, "nouns": item.nouns, "verbs": item.verbs,
                  "ttcs": item.ttcs}  # fmt: skip
        return {"video": clip, "boxes": normalized, "orig_boxes": boxes, "box_scores": scores,
                "video_id": item.uid, "target": target}  # fmt: skip


def collate_sta(samples: list[dict[str, Any]]) -> STABatch:
    """Batch STA items.

    Returns:
        ``{"video": uint8 [b, t, h, w, 3], "boxes": b x [n_i, 4] normalized xyxy,
        "orig_boxes": b x [n_i, 4] pixels, "box_scores": b x [n_i], "video_ids": [uid],
        "targets": b x {"video_id", "boxes", "nouns", "verbs", "ttcs"}}``; the data module
        normalizes ``video`` on the device (:meth:`Ego4DSTA.on_after_batch_transfer`).
    """
    return STABatch(
        video=torch.stack([s["video"] for s in samples]),
        boxes=[s["boxes"] for s in samples],
        orig_boxes=[s["orig_boxes"] for s in samples],
        box_scores=[s["box_scores"] for s in samples],
        video_ids=[s["video_id"] for s in samples],
        targets=[s["target"] for s in samples],
    )


class Ego4DSTA(RawVideoFolderDataModule):
    """Ego4D Short-Term Object Interaction Anticipation on raw videos.

    Annotation files are validated against :mod:`vidlit.formats.ego4d_sta` when first read (in
    ``setup()``, or when the class counts are first asked for): one line names the file, the
    record and the key at fault; val / test noun and verb ids must be ids of the train file's
    categories.

    Each sample is an annotated frame: ``num_frames`` frames ``frame_stride`` apart ending at it
    (the official sampling, :func:`sta_frame_indices`), and the boxes the head labels with a
    noun, a verb and a time to contact. Training always uses the ground-truth boxes. Evaluation
    uses the detector boxes of ``detections`` when given (the baseline's Faster R-CNN output, see
    ``tools/short_term_anticipation/produce_object_detections.py``), else the ground-truth boxes
    with score 1 (an oracle-box setting: fine for the synthetic sample data, not comparable
    to challenge numbers).

    Batches are those of :func:`collate_sta`; after :meth:`on_after_batch_transfer`, on the
    training device, ``video`` is normalized float ``[b, 3, t, size, size]``. The shared setup
    (root, synthetic sample, split files, video folder, missing videos, normalization) is
    :class:`~vidlit.data.raw_video.RawVideoFolderDataModule`'s.

    Args:
        root: dataset folder; relative paths below resolve against it.
        train_annotations: ``fho_sta_train.json``.
        val_annotations: ``fho_sta_val.json`` (also the default test set).
        test_annotations: file ``vidlit test`` evaluates; defaults to ``val_annotations``.
        predict_annotations: file ``vidlit predict`` runs on (e.g. ``fho_sta_test_unannotated.json``);
            defaults to the test file.
        video_dir: folder of ``<video_uid>.mp4`` files.
        detections: detections JSON for val / test / predict; None uses ground-truth boxes.
        detection_score_threshold: detections below this score are dropped.
        use_clips: read ``<clip_uid>.mp4`` at ``clip_frame`` (Ego4D v2 clips) instead of full videos.
        num_frames: frames per clip (official SlowFast baseline: 32 fast frames).
        frame_stride: frames between clip frames.
        size: frame side the model sees.
        mean: normalization mean.
        std: normalization standard deviation.
        backend: video backend (``auto``, ``decord``, ``pyav``, ``torchcodec``).
        synthetic: when ``root`` does not exist, write the synthetic sample dataset there
            (``vidlit data synth ego4d_sta``) and say so. Leave False for real data.
        strict: a missing video raises before training; when False its frames are skipped with
            a warning.
        batch_size: frames per batch.
        num_workers: DataLoader worker processes.
    """

    synthetic_name = "Ego4D STA"

    def __init__(
        self,
        root: str = "data/ego4d_sta",
        train_annotations: str = "fho_sta_train.json",
        val_annotations: str = "fho_sta_val.json",
        test_annotations: str | None = None,
        predict_annotations: str | None = None,
        video_dir: str = "videos",
        detections: str | None = None,
        detection_score_threshold: float = 0.0,
        use_clips: bool = False,
        num_frames: int = 8,
        frame_stride: int = 2,
        size: int = 32,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        backend: str = "auto",
        synthetic: bool = False,
        strict: bool = True,
        batch_size: int = 8,
        num_workers: int = 0,
    ):
        if num_frames < 1 or frame_stride < 1 or size < 1:
            raise ValueError(f"num_frames, frame_stride and size must be positive, got {num_frames}, "
                             f"{frame_stride}, {size}")  # fmt: skip
        test = test_annotations or val_annotations
        super().__init__(
            root, train_annotations, val_annotations, test, predict_annotations or test, video_dir,
            size=size, mean=mean, std=std, backend=backend, synthetic=synthetic, strict=strict,
            batch_size=batch_size, num_workers=num_workers,
        )  # fmt: skip
        self.detections_file = None if detections is None else self.root / detections
        self.detection_score_threshold = detection_score_threshold
        self.use_clips = use_clips
        self.num_frames = num_frames
        self.frame_stride = frame_stride

    def write_synthetic(self, root: Path) -> None:
        """Write the synthetic STA sample (:func:`vidlit.data.synth.ego4d_sta.write_ego4d_sta`)."""
        from vidlit.data.synth.ego4d_sta import write_ego4d_sta

        write_ego4d_sta(root)

    @property
    def noun_names(self) -> list[str]:
        """Noun category names of the train file (read and validated on first use)."""
        return self._taxonomy()[0]

    @property
    def verb_names(self) -> list[str]:
        """Verb category names of the train file."""
        return self._taxonomy()[1]

    def _taxonomy(self) -> tuple[list[str], list[str]]:
        train = self.annotations("train")
        if not train.noun_names or not train.verb_names:
            raise ValueError(f"{self.files['train']}: no noun_categories / verb_categories")
        return train.noun_names, train.verb_names

    @property
    def num_classes(self) -> int:
        """Noun categories (linked into the head's ``num_classes``)."""
        return len(self.noun_names)

    @property
    def num_verbs(self) -> int:
        """Verb categories (the head's ``num_verbs``)."""
        return len(self.verb_names)

    def read_annotations(self, split: str) -> STAAnnotations:
        """Read and validate the annotation file of ``split`` (once: :meth:`annotations` caches it); ids
        are checked against the train categories and video ids stay inside ``video_dir``."""
        if split == "train":
            parsed = read_sta_annotations(self.files[split])
        else:
            parsed = read_sta_annotations(
                self.files[split], self.num_classes, self.num_verbs, self.files["train"]
            )
        for item in parsed.frames:
            confine(self.video_dir, f"{item.video_uid}.mp4", f"{item.where}: key 'video_uid'")
            if item.clip_uid is not None:
                confine(self.video_dir, f"{item.clip_uid}.mp4", f"{item.where}: key 'clip_uid'")
        return parsed

    def dataset(self, split: str) -> ShortTermAnticipationDataset:
        """The dataset of ``split``; evaluation splits use the detections when configured."""
        detections = None
        if split != "train" and self.detections_file is not None:
            detections = read_sta_detections(self.detections_file)
        annotations = self.annotations(split)
        if split == "train":
            empty = [f.uid for f in annotations.frames if len(f.nouns) == 0]
            if empty:
                raise ValueError(f"{self.files['train']}: {len(empty)} training frames have no objects, "
                                 f"e.g. uid {empty[0]}")  # fmt: skip
        elif detections is None and split == "predict" and not any(len(f.nouns) for f in annotations.frames):
            raise ValueError(
                f"{self.files['predict']}: unannotated frames need detector boxes: set data.detections"
            )
        dataset = ShortTermAnticipationDataset(
            annotations, self.video_dir, self.num_frames, self.frame_stride, self.size,
            detections=detections, score_threshold=self.detection_score_threshold,
            use_clips=self.use_clips, backend=self.backend,
        )  # fmt: skip
        dataset.frames = self.drop_missing(
            dataset.frames,
            lambda item: dataset.source(item)[0],
            split,
            "frames",
            lambda item: f"uid {item.uid}",
        )
        return dataset

    def _collate(self) -> Any:
        return collate_sta

    def inference_inputs(
        self,
        path: Path,
        video_id: str,
        detections: str | Path | list[dict[str, Any]] | None = None,
        frame: int | None = None,
    ) -> InferenceInput:
        """``vidlit infer``: a noun, a verb and a time to contact for each detected box of one frame.

        The frame is ``frame`` of the video (``--frame``, default its last frame), the last one
        of the clip observed.

        The head labels given boxes, so ``detections`` (``--detections``) is required: a file in
        the baseline's ``{uid: [{"box": [x1, y1, x2, y2], "score"}]}`` layout (pixels of the
        video's stored frames), whose entry for ``<file stem>`` (or its only entry) is used, or
        that entry's list itself, given in memory (``vidlit serve``: a box drawn on the page);
        boxes below ``detection_score_threshold`` are dropped as in evaluation.
        """
        if detections is None:
            raise ValueError(
                f"{video_id}: an STA model labels detected boxes: pass --detections "
                '(a JSON {uid: [{"box": [x1, y1, x2, y2], "score": s}]})'
            )
        uid = path.stem
        if isinstance(detections, list):
            boxes = parse_sta_detections(detections, video_id, "detections: ")
        else:
            found = read_sta_detections(detections)
            if uid not in found and len(found) != 1:
                raise ValueError(
                    f"{detections}: no entry for {uid!r} (and more than one entry to choose from)"
                )
            boxes = found.get(uid, next(iter(found.values()), None))
        if frame is None:
            with open_video(path, self.backend) as reader:
                frame = len(reader) - 1
        item = STAFrame(uid, uid, frame, where=video_id)
        dataset = ShortTermAnticipationDataset(
            STAAnnotations([], [], {}, [item]), path.parent, self.num_frames, self.frame_stride, self.size,
            detections={uid: boxes}, score_threshold=self.detection_score_threshold, backend=self.backend,
        )  # fmt: skip
        dataset.source = lambda it: (path, it.frame)  # the file given, whatever its name
        return InferenceInput(collate_sta([dataset[0]]), uid)

    def write_submission(self, predictions: list[dict[str, Any]], path: str | Path) -> Path:
        """Write ``vidlit predict`` output as an Ego4D STA challenge submission JSON."""
        return write_sta_submission(predictions, path)
