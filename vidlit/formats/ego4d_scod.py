"""The Ego4D State Change Object Detection contract: annotation schema, batch types, COCO layout.

The official files (``fho_scod_train.json``, ``fho_scod_val.json``,
``fho_scod_test_unannotated.json``) hold a ``clips`` list; each clip names its ``clip_uid`` and
``video_uid`` and three key frames (:data:`KEYFRAMES`), each with ``frame_number`` (in the
parent video), ``clip_frame_number`` (in the clip), ``width``, ``height`` and a ``bbox`` list of
``{"object_type", "structured_noun", "instance_number", "bbox": {"x", "y", "width",
"height"}}`` in pixels (no ``bbox`` list in the test file). The task detects the object of change
on the PNR frame, one category (:data:`CATEGORY`). Rules checked when a reader first reads a file:

- frame numbers are non-negative JSON integers, frame sizes positive integers;
- a box is four finite JSON numbers with positive width and height;
- a ``clip_uid`` appears once per file; ``clip_uid`` / ``video_uid`` name video files, so they
  stay inside the video folder.

The official baselines turn the files into COCO files (``coco_annotations/{train,val}.json``
over frame images ``<video_uid>/<frame_number>.jpg``), which :func:`scod_to_coco` reproduces;
submissions are COCO result lists (:class:`SCODResult`).
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from pydantic import Field, ValidationInfo, field_validator
from torch import Tensor

from vidlit.formats._ego4d import check_unique
from vidlit.formats._schema import FiniteFloat, NonEmptyStr, NonNegativeInt, Record

__all__ = [
    "CATEGORY",
    "FRAME_FIELDS",
    "KEYFRAMES",
    "OBJECT_OF_CHANGE",
    "SCODBatch",
    "SCODBox",
    "SCODClip",
    "SCODFile",
    "SCODFrame",
    "SCODObject",
    "SCODPrediction",
    "SCODResult",
    "SCODTarget",
    "scod_to_coco",
]

KEYFRAMES = ("pre_frame", "pnr_frame", "post_frame")
OBJECT_OF_CHANGE = "object_of_change"
CATEGORY = {"id": 1, "name": OBJECT_OF_CHANGE}
FRAME_FIELDS = ("clip_frame_number", "frame_number")

PositiveFloat = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)]
PositiveInt = Annotated[int, Field(strict=True, gt=0)]


class SCODBox(Record):
    """A COCO ``{x, y, width, height}`` pixel box."""

    x: FiniteFloat
    y: FiniteFloat
    width: PositiveFloat
    height: PositiveFloat

    def xywh(self) -> list[float]:
        """``[x, y, w, h]``."""
        return [self.x, self.y, self.width, self.height]


class SCODObject(Record):
    """One boxed object of a key frame (``object_of_change``, ``left_hand``, ``right_hand``, ``tool``)."""

    object_type: NonEmptyStr
    bbox: SCODBox


class SCODFrame(Record):
    """A key frame; ``bbox`` is absent in the unannotated test file."""

    frame_number: NonNegativeInt
    clip_frame_number: NonNegativeInt
    width: PositiveInt
    height: PositiveInt
    bbox: list[SCODObject] | None = None

    def boxes(self, object_type: str = OBJECT_OF_CHANGE) -> list[list[float]]:
        """``[x, y, w, h]`` pixel boxes of one object type."""
        return [o.bbox.xywh() for o in self.bbox or [] if o.object_type == object_type]


class SCODClip(Record):
    """One clip and its three key frames."""

    clip_uid: NonEmptyStr
    video_uid: NonEmptyStr
    pre_frame: SCODFrame
    pnr_frame: SCODFrame
    post_frame: SCODFrame

    @field_validator("clip_uid")
    @classmethod
    def _unique(cls, value: str, info: ValidationInfo) -> str:
        return check_unique(value, info, "clip_uid")

    def image_id(self, keyframe: str = "pnr_frame") -> str:
        """The official frame image path ``<video_uid>/<frame_number>.jpg`` of a key frame."""
        return f"{self.video_uid}/{getattr(self, keyframe).frame_number}.jpg"


class SCODFile(Record):
    """A whole ``fho_scod_*.json`` file."""

    clips: list[SCODClip]


def scod_to_coco(clips: list[SCODClip], keyframes: tuple[str, ...] = ("pnr_frame",)) -> dict[str, Any]:
    """The COCO detection file of some clips' key frames, as the official baselines build it.

    Images are ``{"id", "file_name": "<video_uid>/<frame_number>.jpg", "width", "height"}``
    (``id`` 1, 2, ... in clip order), annotations the object-of-change boxes with ``category_id``
    1, ``area = w * h`` and ``iscrowd`` 0.
    """
    images, annotations = [], []
    for clip in clips:
        for name in keyframes:
            frame: SCODFrame = getattr(clip, name)
            image_id = len(images) + 1
            images.append(
                {
                    "id": image_id,
                    "file_name": clip.image_id(name),
                    "width": frame.width,
                    "height": frame.height,
                }
            )
            for x, y, w, h in frame.boxes():
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": CATEGORY["id"],
                        "bbox": [x, y, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
    return {"images": images, "annotations": annotations, "categories": [CATEGORY]}


class SCODTarget(TypedDict):
    """Ground truth of one PNR frame (:class:`~vidlit.metrics.coco_detection.COCODetectionAP` format)."""

    image_id: str
    boxes: Tensor  # [N, 4] COCO xywh pixels
    labels: Tensor  # [N] int64 (zeros)


class SCODBatch(TypedDict):
    """A batch of clips around the PNR frame. Shape legend: ``b`` clips, ``t`` frames, ``h w`` pixels.

    Attributes:
        video: ``[b, t, h, w, 3]`` uint8 (normalized to float ``[b, 3, t, h, w]`` on the device).
        boxes: ``b`` tensors ``[N, 4]`` normalized cxcywh.
        labels: ``b`` tensors ``[N]`` int64.
        frame_size: ``[b, 2]`` int64 (height, width) of the annotated frame.
        image_ids: ``b`` official frame image paths.
        video_ids: ``b`` clip uids.
        targets: ``b`` ground truths.
    """

    video: Tensor
    boxes: list[Tensor]
    labels: list[Tensor]
    frame_size: Tensor
    image_ids: list[str]
    video_ids: list[str]
    targets: list[SCODTarget]


class SCODPrediction(TypedDict):
    """A head's detections on one PNR frame: COCO xywh pixel boxes, best first."""

    image_id: str
    video_id: str
    boxes: Tensor  # [K, 4]
    scores: Tensor  # [K]
    labels: Tensor  # [K]


class SCODResult(TypedDict):
    """One detection of a submission (a COCO result list entry, what ``COCO.loadRes`` takes)."""

    image_id: int
    category_id: int
    bbox: list[float]
    score: float
