"""Ego4D Hands & Objects: State Change Object Detection (SCOD) annotations, clips and submissions.

The official annotation files (``fho_scod_train.json``, ``fho_scod_val.json``,
``fho_scod_test_unannotated.json``) hold a ``clips`` list; each clip names its ``clip_uid`` and
``video_uid`` and three keyframes, ``pre_frame``, ``pnr_frame`` (the point of no return) and
``post_frame``, each with ``frame_number`` (in the parent video), ``clip_frame_number`` (in the
clip), ``width``, ``height`` and a ``bbox`` list of ``{"object_type", "structured_noun",
"instance_number", "bbox": {"x", "y", "width", "height"}}`` in pixels. ``object_type`` is
``object_of_change``, ``left_hand``, ``right_hand`` or ``tool``; the task detects the object of
change on the PNR frame (one category). The official baselines turn the files into COCO files
(``coco_annotations/{train,val}.json`` over frame images ``<video_uid>/<frame_number>.jpg``,
category 1), which :func:`vidlit.formats.ego4d_scod.scod_to_coco` reproduces (schema and rules:
:mod:`vidlit.formats.ego4d_scod`).

vidlit models the task on video: a clip of ``num_frames`` frames centred on the PNR frame is
decoded from ``clips/<clip_uid>.mp4`` (or from the parent video ``<video_uid>.mp4`` with
``frame_field: frame_number``), so the head sees the state change happen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from vidlit.core.boxes import normalize_boxes, xywh_to_xyxy, xyxy_to_cxcywh
from vidlit.core.io import read_json, require, write_json_atomic
from vidlit.data.base import EpochSeeded, InferenceInput, global_seed
from vidlit.data.raw_video import RawVideoFolderDataModule
from vidlit.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vidlit.data.video import open_video, stored_size
from vidlit.formats._ego4d import confine
from vidlit.formats._schema import validate
from vidlit.formats.ego4d_scod import (
    CATEGORY,
    FRAME_FIELDS,
    KEYFRAMES,
    OBJECT_OF_CHANGE,
    SCODBatch,
    SCODFile,
    SCODFrame,
    SCODPrediction,
)


@dataclass
class ScodFrame:
    """One keyframe of a clip.

    Attributes:
        frame_number: frame index in the parent video.
        clip_frame_number: frame index in the clip.
        width: frame width the boxes refer to, in pixels.
        height: frame height.
        boxes: ``[N, 4]`` COCO ``[x, y, w, h]`` pixel boxes of the object of change.
        annotated: False when the file gives no ``bbox`` list (the unannotated test split).
    """

    frame_number: int
    clip_frame_number: int
    width: int
    height: int
    boxes: Tensor
    annotated: bool = True


@dataclass
class ScodClip:
    """One annotated clip: its keyframes by name (``pre_frame``, ``pnr_frame``, ``post_frame``).

    ``where`` is the clip's place in its file (``fho_scod_val.json: clips[3]``), for messages.
    """

    clip_uid: str
    video_uid: str
    frames: dict[str, ScodFrame] = field(default_factory=dict)
    where: str = ""

    @property
    def pnr(self) -> ScodFrame:
        """The PNR keyframe, where the object of change is detected."""
        return self.frames["pnr_frame"]

    def image_id(self, keyframe: str = "pnr_frame") -> str:
        """The official frame image path ``<video_uid>/<frame_number>.jpg`` of a keyframe."""
        return f"{self.video_uid}/{self.frames[keyframe].frame_number}.jpg"


def read_scod_annotations(path: str | Path, object_type: str = OBJECT_OF_CHANGE) -> list[ScodClip]:
    """Parse and validate an official ``fho_scod_*.json`` (:class:`~vidlit.formats.ego4d_scod.SCODFile`).

    Args:
        path: ``fho_scod_{train,val,test_unannotated}.json``.
        object_type: the boxes kept (``object_of_change`` for the benchmark).

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid JSON (line and column), or one line naming the record and key that
            breaks a rule of the schema (``clips[i].pnr_frame.bbox[j].bbox: key 'width': ...``).
    """
    path = Path(path)
    document = validate(SCODFile, read_json(path), path)
    clips = []
    for c, raw in enumerate(document.clips):
        clip = ScodClip(raw.clip_uid, raw.video_uid, where=f"{path}: clips[{c}]")
        for name in KEYFRAMES:
            frame: SCODFrame = getattr(raw, name)
            clip.frames[name] = ScodFrame(
                frame_number=frame.frame_number,
                clip_frame_number=frame.clip_frame_number,
                width=frame.width,
                height=frame.height,
                boxes=torch.tensor(frame.boxes(object_type), dtype=torch.float32).reshape(-1, 4),
                annotated=frame.bbox is not None,
            )
        clips.append(clip)
    return clips


def read_coco_image_ids(path: str | Path) -> dict[str, int]:
    """``file_name -> id`` of the images of a COCO annotation file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid JSON or an image without ``id`` / ``file_name``.
    """
    path = Path(path)
    data = read_json(path, "COCO annotation file")
    return {
        require(image, "file_name", f"images[{i}]", path): int(require(image, "id", f"images[{i}]", path))
        for i, image in enumerate(require(data, "images", "top level", path))
    }


def write_scod_submission(
    predictions: list[SCODPrediction], path: str | Path, image_ids: dict[str, int] | None = None
) -> Path:
    """Write PNR-frame detections as a COCO result file, the format the SCOD evaluation loads.

    The layout is the list ``COCO.loadRes`` takes, as the official baselines write it
    (detectron2's ``coco_instances_results.json``): ``[{"image_id": int, "category_id": 1,
    "bbox": [x, y, w, h], "score": float}, ...]``, boxes in pixels of the annotated frame size.

    Args:
        predictions: one dict per clip from the head's ``predict``: ``image_id``
            (``<video_uid>/<frame_number>.jpg``), ``boxes`` ``[K, 4]`` COCO pixels, ``scores``.
        path: output file (written to a temporary name and renamed).
        image_ids: ``file_name -> id`` of the official COCO file (:func:`read_coco_image_ids`);
            None numbers the images 1, 2, ... in prediction order, as
            :func:`~vidlit.formats.ego4d_scod.scod_to_coco` does.

    Raises:
        ValueError: a predicted frame that the COCO file does not list.
    """
    results = []
    numbering: dict[str, int] = {}
    for pred in predictions:
        name = pred["image_id"]
        if image_ids is None:
            number = numbering.setdefault(name, len(numbering) + 1)
        elif name in image_ids:
            number = image_ids[name]
        else:
            raise ValueError(
                f"frame {name!r} is not an image of the COCO annotation file (predict_coco must be the "
                "COCO file of the predicted split, or null to number the frames 1, 2, ...)"
            )
        for box, score in zip(
            torch.as_tensor(pred["boxes"]).tolist(), torch.as_tensor(pred["scores"]).tolist()
        ):
            results.append(
                {
                    "image_id": number,
                    "category_id": CATEGORY["id"],
                    "bbox": [float(v) for v in box],
                    "score": float(score),
                }
            )
    return write_json_atomic(results, path)


def clip_window(center: int, num_frames: int, stride: int, length: int) -> np.ndarray:
    """``num_frames`` indices ``stride`` apart around ``center`` (it is frame ``num_frames // 2``),
    clamped to ``[0, length)``."""
    offsets = (np.arange(num_frames) - num_frames // 2) * stride
    return np.clip(center + offsets, 0, length - 1)


class StateChangeDataset(EpochSeeded, Dataset):
    """Clips around the PNR frame with the object-of-change boxes of that frame.

    Each item decodes ``num_frames`` frames ``frame_stride`` apart, the PNR frame at position
    ``num_frames // 2``, resized to ``size x size`` while decoding. Boxes are normalized by the
    annotated frame size, so resizing (which may change the aspect ratio) leaves them valid.
    Training flips a clip and its boxes horizontally with probability ``hflip``; the randomness
    is a function of ``(seed, epoch, index)``.

    Args:
        clips: parsed annotations.
        video_dir: folder of ``<clip_uid>.mp4`` (``frame_field="clip_frame_number"``) or
            ``<video_uid>.mp4`` (``frame_field="frame_number"``).
        num_frames: frames per clip.
        frame_stride: frames between consecutive sampled frames.
        size: decoded frame side.
        frame_field: which frame number indexes the video files.
        train: random flips.
        hflip: flip probability in training.
        backend: video backend for :func:`~vidlit.data.video.open_video`.
        seed: base seed of the training randomness.

    Items are ``{"video": uint8 [t, size, size, 3], "boxes": [N, 4] normalized cxcywh,
    "labels": int64 [N] (zeros), "frame_size": (height, width), "image_id", "video_id",
    "target": {"image_id", "boxes": [N, 4] COCO pixels, "labels"}}``.
    """

    def __init__(
        self,
        clips: list[ScodClip],
        video_dir: Path,
        num_frames: int = 8,
        frame_stride: int = 2,
        size: int = 64,
        frame_field: str = "clip_frame_number",
        train: bool = False,
        hflip: float = 0.5,
        backend: str = "auto",
        seed: int = 0,
    ):
        if frame_field not in FRAME_FIELDS:
            raise ValueError(f"frame_field must be one of {FRAME_FIELDS}, got {frame_field!r}")
        super().__init__(seed)
        self.clips = clips
        self.video_dir = video_dir
        self.num_frames = num_frames
        self.frame_stride = frame_stride
        self.size = size
        self.frame_field = frame_field
        self.train = train
        self.hflip = hflip
        self.backend = backend

    def video_path(self, clip: ScodClip) -> Path:
        """The video file a clip's frames are decoded from."""
        stem = clip.clip_uid if self.frame_field == "clip_frame_number" else clip.video_uid
        return self.video_dir / f"{stem}.mp4"

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self.clips[index]
        pnr = clip.pnr
        center = getattr(pnr, self.frame_field)
        with open_video(self.video_path(clip), self.backend, resize=(self.size, self.size)) as reader:
            if not 0 <= center < len(reader):
                raise ValueError(
                    f"{reader.path}: clip {clip.clip_uid}: PNR {self.frame_field} {center} is outside "
                    f"the video's {len(reader)} frames"
                )
            frames = reader.get_frames(clip_window(center, self.num_frames, self.frame_stride, len(reader)))
        size = (pnr.height, pnr.width)
        xyxy = xywh_to_xyxy(pnr.boxes)
        boxes = xyxy_to_cxcywh(normalize_boxes(xyxy, size)).clamp(0, 1)
        if self.train and self.hflip > 0:
            rng = self.rng(index)
            if rng.random() < self.hflip:
                frames = frames.flip(2)
                boxes = boxes.clone()
                boxes[:, 0] = 1 - boxes[:, 0]
        labels = torch.zeros(len(boxes), dtype=torch.long)
        image_id = clip.image_id()
        return {
            "video": frames,
            "boxes": boxes,
            "labels": labels,
            "frame_size": size,
            "image_id": image_id,
            "video_id": clip.clip_uid,
            "target": {"image_id": image_id, "boxes": pnr.boxes.clone(), "labels": labels},
        }


def collate_state_change(samples: list[dict[str, Any]]) -> SCODBatch:
    """Batch :class:`StateChangeDataset` items.

    Returns:
        ``{"video": uint8 [b, t, h, w, 3], "boxes": [b tensors [N, 4]], "labels": [b tensors [N]],
        "frame_size": int64 [b, 2] (height, width), "image_ids": [str], "video_ids": [str],
        "targets": [b dicts in COCODetectionAP's format]}``.
    """
    return SCODBatch(
        video=torch.stack([s["video"] for s in samples]),
        boxes=[s["boxes"] for s in samples],
        labels=[s["labels"] for s in samples],
        frame_size=torch.tensor([s["frame_size"] for s in samples], dtype=torch.long),
        image_ids=[s["image_id"] for s in samples],
        video_ids=[s["video_id"] for s in samples],
        targets=[s["target"] for s in samples],
    )


class Ego4DSCOD(RawVideoFolderDataModule):
    """Ego4D State Change Object Detection on raw clips around the PNR frame.

    Annotation files are validated against :mod:`vidlit.formats.ego4d_scod` in ``setup()``: one
    line names the file, the record and the key at fault.

    Batches (after :meth:`on_after_batch_transfer`, on the training device) are those of
    :func:`collate_state_change` with ``video`` as normalized float ``[b, 3, t, size, size]``. The
    shared setup (root, synthetic sample, split files read once, video folder, missing videos,
    normalization) is :class:`~vidlit.data.raw_video.RawVideoFolderDataModule`'s.

    Args:
        root: dataset folder; relative paths below resolve against it.
        train_annotations: official train file.
        val_annotations: official val file (also the default test set).
        test_annotations: file ``vidlit test`` evaluates; defaults to ``val_annotations``.
        predict_annotations: file ``vidlit predict`` runs on (e.g.
            ``fho_scod_test_unannotated.json``); defaults to ``val_annotations``.
        predict_coco: the official COCO file of the predict split
            (``coco_annotations/val.json``), whose image ids the submission uses; None (or a
            missing file) numbers the PNR frames 1, 2, ... in clip order, as
            :func:`~vidlit.formats.ego4d_scod.scod_to_coco`.
        video_dir: folder of the videos.
        frame_field: ``clip_frame_number`` for ``<clip_uid>.mp4`` clips (the Ego4D ``clips``
            download) or ``frame_number`` for ``<video_uid>.mp4`` full videos.
        num_frames: frames per clip (the backbone's ``num_frames``, or a multiple of its tubelet).
        frame_stride: frames between sampled frames (Ego4D at 30 fps: 4-8).
        size: decoded frame side (the backbone's ``img_size``, e.g. 224).
        hflip: training horizontal-flip probability.
        mean: normalization mean of ``x / 255``.
        std: normalization standard deviation.
        backend: video backend.
        synthetic: when ``root`` does not exist, write the synthetic sample dataset there
            (``vidlit data synth ego4d_scod``) and say so. Leave False for real data.
        strict: a missing video raises before training; when False such clips are skipped with
            a warning.
        batch_size: clips per batch.
        num_workers: DataLoader worker processes.
    """

    num_classes = 1  # the object of change (linked into the head's num_classes)
    synthetic_name = "Ego4D SCOD"

    def __init__(
        self,
        root: str = "data/ego4d_scod",
        train_annotations: str = "fho_scod_train.json",
        val_annotations: str = "fho_scod_val.json",
        test_annotations: str | None = None,
        predict_annotations: str | None = None,
        predict_coco: str | None = "coco_annotations/val.json",
        video_dir: str = "clips",
        frame_field: str = "clip_frame_number",
        num_frames: int = 8,
        frame_stride: int = 2,
        size: int = 64,
        hflip: float = 0.5,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        backend: str = "auto",
        synthetic: bool = False,
        strict: bool = True,
        batch_size: int = 8,
        num_workers: int = 0,
    ):
        if frame_field not in FRAME_FIELDS:
            raise ValueError(f"frame_field must be one of {FRAME_FIELDS}, got {frame_field!r}")
        if num_frames < 1 or frame_stride < 1 or size < 1:
            raise ValueError(
                f"num_frames, frame_stride and size must be positive, got {num_frames}, {frame_stride}, "
                f"{size}"
            )
        super().__init__(
            root, train_annotations, val_annotations, test_annotations, predict_annotations, video_dir,
            size=size, mean=mean, std=std, backend=backend, synthetic=synthetic, strict=strict,
            batch_size=batch_size, num_workers=num_workers,
        )  # fmt: skip
        self.predict_coco = None if predict_coco is None else self.root / predict_coco
        self.frame_field = frame_field
        self.num_frames = num_frames
        self.frame_stride = frame_stride
        self.hflip = hflip

    def write_synthetic(self, root: Path) -> None:
        """Write the synthetic SCOD sample (:func:`vidlit.data.synth.ego4d_scod.write_ego4d_scod`)."""
        from vidlit.data.synth.ego4d_scod import write_ego4d_scod

        write_ego4d_scod(root)

    def read_annotations(self, split: str) -> list[ScodClip]:
        """Read and validate the annotation file of ``split`` (read once, :meth:`annotations`).

        Raises:
            ValueError: no clips, or a video id that would leave ``video_dir``.
        """
        clips = read_scod_annotations(self.files[split])
        if not clips:
            raise ValueError(f"{self.files[split]}: no clips")
        key = "clip_uid" if self.frame_field == "clip_frame_number" else "video_uid"
        for clip in clips:
            confine(self.video_dir, f"{getattr(clip, key)}.mp4", f"{clip.where}: key {key!r}")
        return clips

    def dataset(self, split: str) -> StateChangeDataset:
        """The dataset of one split, with missing videos reported before training starts.

        Raises:
            ValueError: a train/val/test clip whose PNR frame has no ``bbox`` list.
            FileNotFoundError: missing videos (``strict``).
        """
        clips = self.annotations(split)
        if split != "predict":
            unannotated = [c.clip_uid for c in clips if not c.pnr.annotated]
            if unannotated:
                raise ValueError(
                    f"{self.files[split]}: clip {unannotated[0]} (and {len(unannotated) - 1} more) has no "
                    f"pnr_frame.bbox list; {split} clips need boxes"
                )
        dataset = StateChangeDataset(
            clips,
            self.video_dir,
            num_frames=self.num_frames,
            frame_stride=self.frame_stride,
            size=self.size,
            frame_field=self.frame_field,
            train=split == "train",
            hflip=self.hflip,
            backend=self.backend,
            seed=global_seed(),
        )
        dataset.clips = self.drop_missing(
            clips, dataset.video_path, split, "clips", lambda c: f"clip {c.clip_uid}"
        )
        return dataset

    def _collate(self) -> Callable:
        return collate_state_change

    def inference_inputs(self, path: Path, video_id: str, frame: int | None = None) -> InferenceInput:
        """``vidlit infer``: the object of change around frame ``frame`` (``--frame``) of one video.

        ``frame`` is the PNR frame, the centre of the decoded clip (default: the video's middle
        frame); boxes come back in pixels of the video's stored frame size, and the submission
        numbers the one frame 1 (image ``<file stem>/<frame>.jpg``).
        """
        height, width = stored_size(path)
        if frame is None:
            with open_video(path, self.backend) as reader:
                frame = len(reader) // 2
        pnr = ScodFrame(frame, frame, width, height, torch.zeros(0, 4), annotated=False)
        clip = ScodClip(path.stem, path.stem, {"pnr_frame": pnr}, where=video_id)
        dataset = StateChangeDataset(
            [clip], path.parent, self.num_frames, self.frame_stride, self.size, self.frame_field,
            train=False, backend=self.backend,
        )  # fmt: skip
        dataset.video_path = lambda _: path  # the file given, whatever its name
        return InferenceInput(collate_state_change([dataset[0]]), clip.clip_uid, write_scod_submission)

    def write_submission(self, predictions: list[dict[str, Any]], path: str | Path) -> Path:
        """Write ``vidlit predict`` output as a COCO result file (:func:`write_scod_submission`)."""
        image_ids = None
        if self.predict_coco is not None and self.predict_coco.is_file():
            image_ids = read_coco_image_ids(self.predict_coco)
        return write_scod_submission(predictions, path, image_ids)
