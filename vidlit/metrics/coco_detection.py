"""COCO box AP (AP, AP50, AP75) through pycocotools, as Ego4D State Change Object Detection scores it."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import rank_zero_warn

from vidlit.core.ids import stable_ids
from vidlit.metrics._inputs import check_lengths, check_pair
from vidlit.metrics._state import cat_state, first_occurrence, occurrence_tags, rows_tags


class COCODetectionAP(Metric):
    """COCO bounding-box AP, AP50 and AP75, computed by ``pycocotools.cocoeval.COCOeval``.

    The Ego4D Hands & Objects State Change Object Detection benchmark (Grauman et al., "Ego4D:
    Around the World in 3,000 Hours of Egocentric Video", CVPR 2022, appendix on the FHO
    benchmark; repository ``EGO4D/hands-and-objects``, ``state-change-object-detection-baselines``)
    scores detections of the object of change on the PNR frame with the standard COCO box
    protocol: its baselines build a COCO ground-truth file (one category, ``category_id`` 1) and
    run ``COCO.loadRes`` + ``COCOeval(gt, dt, "bbox")`` (detectron2's ``COCOEvaluator`` /
    ``COCOeval_opt``). This metric builds the same two COCO objects from the collected tensors
    and runs pycocotools itself, so every rule is the official one:

    - AP is the 101-point interpolated precision averaged over IoU thresholds 0.50:0.05:0.95
      (``AP``), at IoU 0.50 (``AP50``) and 0.75 (``AP75``); area range "all", at most 100
      detections per image (the highest scoring), averaged over categories with ground truth.
    - Detections are matched greedily in score order to the unmatched ground truth of their image
      and category with the highest IoU ``>=`` the threshold; the rest are false positives, also
      on images without any ground truth. Ground truth without a detection lowers recall.
    - Boxes are COCO ``[x, y, width, height]`` in pixels; ground-truth ``area`` is ``w * h``, as
      in the Ego4D COCO files, and ``iscrowd`` is 0.

    Where pycocotools alone would fail or print -1, this metric decides:

    - no detections at all (``loadRes`` of an empty list raises): every value is 0;
    - no ground truth at all (COCOeval reports -1): every value is 0, with a warning.

    Images are keyed by ``image_id`` strings (e.g. the official frame path
    ``<video_uid>/<frame_number>.jpg``), hashed to 64 bits so the state is tensors that sync
    across processes with ``cat``. An image seen more than once (the copy ``DistributedSampler``
    pads onto another rank, or one image in two metrics joined by ``merge_state``) is scored once,
    from its first occurrence (lowest rank, then earliest ``update``).

    Args:
        num_classes: categories; labels in ``[0, num_classes)`` become COCO ``category_id``
            ``label + 1`` (Ego4D SCOD: one category, "object of change").
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = COCODetectionAP()
        >>> box = torch.tensor([[10.0, 10.0, 20.0, 20.0]])
        >>> metric.update(
        ...     [{"image_id": "v/3.jpg", "boxes": box, "scores": torch.tensor([0.9])}],
        ...     [{"image_id": "v/3.jpg", "boxes": box, "labels": torch.tensor([0])}],
        ... )
        >>> metric.compute()["AP50"].item()
        1.0
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        # one row per image occurrence: the image_id hash and a tag the boxes point to
        self.add_state("image_key", default=[], dist_reduce_fx="cat")
        self.add_state("image_tag", default=[], dist_reduce_fx="cat")
        self.add_state("pred_tag", default=[], dist_reduce_fx="cat")
        self.add_state("pred_boxes", default=[], dist_reduce_fx="cat")
        self.add_state("pred_scores", default=[], dist_reduce_fx="cat")
        self.add_state("pred_labels", default=[], dist_reduce_fx="cat")
        self.add_state("gt_tag", default=[], dist_reduce_fx="cat")
        self.add_state("gt_boxes", default=[], dist_reduce_fx="cat")
        self.add_state("gt_labels", default=[], dist_reduce_fx="cat")

    def _check(
        self, item: dict[str, Any], i: int, kind: str, with_scores: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        where = f"{kind}[{i}] (image_id {item['image_id']!r})"
        boxes = torch.as_tensor(item["boxes"]).detach()
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(
                f"{where}['boxes'] must be COCO [x, y, w, h] of shape [N, 4], got {list(boxes.shape)}"
            )
        n = boxes.shape[0]
        if not torch.isfinite(boxes).all() or (boxes[:, 2:] < 0).any():
            raise ValueError(f"{where}['boxes'] must be finite with non-negative width and height")
        labels = item.get("labels")
        labels = torch.zeros(n, dtype=torch.long) if labels is None else torch.as_tensor(labels).detach()
        if labels.shape != (n,) or labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(
                f"{where}['labels'] must be {n} integers like boxes, got {labels.dtype} {list(labels.shape)}"
            )
        if n and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"{where}['labels'] must lie in [0, {self.num_classes}), got {labels.tolist()}")
        scores = torch.zeros(n)
        if with_scores:
            scores = torch.as_tensor(item["scores"]).detach()
            if scores.shape != (n,) or not torch.isfinite(scores).all():
                raise ValueError(
                    f"{where}['scores'] must be {n} finite values like boxes, got {list(scores.shape)}"
                )
        return boxes, labels, scores

    def update(self, preds: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        """Collect one batch.

        Args:
            preds: one dict per image: ``image_id`` (str), ``boxes`` float ``[K, 4]`` COCO
                ``[x, y, w, h]`` pixels, ``scores`` ``[K]``, optional ``labels`` int ``[K]``
                (default 0).
            targets: one dict per image, in the same order: ``image_id``, ``boxes`` ``[N, 4]``
                COCO pixels, optional ``labels`` ``[N]``. ``N`` may be 0 (an image without the
                object: its detections are false positives).

        Raises:
            ValueError: naming the sample and key, for a malformed entry or mismatched ids.
        """
        check_lengths(preds, targets)
        if not preds:
            return
        ids, p_boxes, p_labels, p_scores, t_boxes, t_labels = [], [], [], [], [], []
        for i, (pred, target) in enumerate(zip(preds, targets)):
            image_id = check_pair(i, pred, target, ("boxes", "scores"), ("boxes",), "image", "image_id", True)
            ids.append(image_id)
            boxes, labels, scores = self._check(pred, i, "preds", with_scores=True)
            p_boxes.append(boxes)
            p_labels.append(labels)
            p_scores.append(scores)
            boxes, labels, _ = self._check(target, i, "targets", with_scores=False)
            t_boxes.append(boxes)
            t_labels.append(labels)
        device = self.device
        tags = occurrence_tags(len(ids), device=device)
        self.image_key.append(stable_ids(ids, device=device))
        self.image_tag.append(tags)
        self.pred_tag.append(rows_tags(tags, p_boxes))
        self.pred_boxes.append(torch.cat(p_boxes).to(device, torch.float64))
        self.pred_scores.append(torch.cat(p_scores).to(device, torch.float64))
        self.pred_labels.append(torch.cat(p_labels).to(device, torch.long))
        self.gt_tag.append(rows_tags(tags, t_boxes))
        self.gt_boxes.append(torch.cat(t_boxes).to(device, torch.float64))
        self.gt_labels.append(torch.cat(t_labels).to(device, torch.long))

    def _state(self, name: str, tail: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        return cat_state(getattr(self, name), tail, dtype).cpu()

    def coco_objects(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The collected data as a COCO ground-truth dataset and a COCO result list.

        Returns:
            ``(dataset, results)``: ``dataset`` has ``images`` (``id`` 1, 2, ... in first-seen
            order), ``annotations`` and ``categories`` (``id`` ``label + 1``); ``results`` is
            the ``[{"image_id", "category_id", "bbox", "score"}]`` list ``COCO.loadRes`` takes.
        """
        keys = self._state("image_key", (), torch.long)
        tags = self._state("image_tag", (), torch.long)
        # one occurrence per image: the smallest tag (lowest rank, then earliest update)
        kept = tags[first_occurrence(keys, order=tags)].tolist()
        image_of_tag = {tag: number for number, tag in enumerate(kept, 1)}
        images = [{"id": number} for number in sorted(image_of_tag.values())]
        categories = [{"id": c + 1, "name": str(c)} for c in range(self.num_classes)]
        annotations = []
        for tag, box, label in zip(
            self._state("gt_tag", (), torch.long).tolist(),
            self._state("gt_boxes", (4,), torch.float64).tolist(),
            self._state("gt_labels", (), torch.long).tolist(),
        ):
            if tag in image_of_tag:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_of_tag[tag],
                        "category_id": label + 1,
                        "bbox": box,
                        "area": box[2] * box[3],
                        "iscrowd": 0,
                    }
                )
        results = [
            {"image_id": image_of_tag[tag], "category_id": label + 1, "bbox": box, "score": score}
            for tag, box, score, label in zip(
                self._state("pred_tag", (), torch.long).tolist(),
                self._state("pred_boxes", (4,), torch.float64).tolist(),
                self._state("pred_scores", (), torch.float64).tolist(),
                self._state("pred_labels", (), torch.long).tolist(),
            )
            if tag in image_of_tag
        ]
        return {"images": images, "annotations": annotations, "categories": categories}, results

    def compute(self) -> dict[str, Tensor]:
        """``{"AP": ..., "AP50": ..., "AP75": ...}`` from pycocotools' ``COCOeval.summarize``."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        zeros = {name: torch.tensor(0.0) for name in ("AP", "AP50", "AP75")}
        dataset, results = self.coco_objects()
        if not dataset["annotations"]:
            rank_zero_warn(f"{type(self).__name__}: no ground truth to score against; every value is 0.")
            return zeros
        if not results:
            return zeros
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
            gt = COCO()
            gt.dataset = dataset
            gt.createIndex()
            dt = gt.loadRes(results)
            evaluator = COCOeval(gt, dt, iouType="bbox")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        ap, ap50, ap75 = (max(float(v), 0.0) for v in evaluator.stats[:3])
        return {"AP": torch.tensor(ap), "AP50": torch.tensor(ap50), "AP75": torch.tensor(ap75)}
