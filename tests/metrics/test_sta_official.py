"""Parity of ShortTermAnticipationMAP with the official Ego4D STA evaluator.

``OfficialSTAMeanAveragePrecision`` below is a faithful port of ``EGO4D/forecasting``,
``ego4d/evaluation/sta_metrics.py`` (``compute_iou``, ``AbstractMeanAveragePrecision``,
``STAMeanAveragePrecision``; numpy, as upstream), driven as
``tools/short_term_anticipation/evaluate_short_term_anticipation_results.py`` drives it: one
``add(pred, gt)`` per annotated frame, ``pred = {}`` for a frame without predictions. Only the
``matched`` bookkeeping that ``add`` returns (unused by the evaluation) is left out.

Scores are drawn continuous, so no two are equal: the official ranking (numpy's unstable
``argsort()[::-1]``) is then unambiguous; ties are the one documented place where the two may
differ (see :class:`~vidlit.metrics.sta_map.ShortTermAnticipationMAP`).
"""

from abc import ABC, abstractmethod

import numpy as np
import pytest
import torch

from vidlit.metrics.sta_map import STA_MAP_NAMES, ShortTermAnticipationMAP

# ---- port of ego4d/evaluation/sta_metrics.py -------------------------------------------------


def compute_iou(preds, gts):
    preds = np.expand_dims(preds, 1)
    gts = np.expand_dims(gts, 0)

    def area(boxes):
        width = boxes[..., 2] - boxes[..., 0] + 1
        height = boxes[..., 3] - boxes[..., 1] + 1
        width[width < 0] = 0
        height[height < 0] = 0
        return width * height

    ixmin = np.maximum(gts[..., 0], preds[..., 0])
    iymin = np.maximum(gts[..., 1], preds[..., 1])
    ixmax = np.minimum(gts[..., 2], preds[..., 2])
    iymax = np.minimum(gts[..., 3], preds[..., 3])
    areas_preds = area(preds)
    areas_gts = area(gts)
    areas_intersections = area(np.stack([ixmin, iymin, ixmax, iymax], -1))
    return areas_intersections / (areas_preds + areas_gts - areas_intersections + 1e-11)


class AbstractMeanAveragePrecision(ABC):
    def __init__(self, num_aps, percentages=True, count_all_classes=True, top_k=None):
        self.true_positives = []
        self.confidence_scores = []
        self.predicted_classes = []
        self.gt_classes = []
        self.num_aps = num_aps
        self.percentages = percentages
        self.count_all_classes = count_all_classes
        self.K = top_k

    def add(self, preds, labels):
        if len(preds) > 0:
            predicted_boxes = preds["boxes"]
            predicted_scores = preds["scores"]
            predicted_classes = self._map_classes(preds)
            true_positives = np.zeros((len(predicted_boxes), self.num_aps))
            if len(labels) > 0:
                gt_boxes = labels["boxes"]
                ious = compute_iou(predicted_boxes, gt_boxes)
                gt_matched = np.zeros((len(gt_boxes), self.num_aps))
                for i in predicted_scores.argsort()[::-1]:
                    overlaps = ious[i].reshape(-1, 1)
                    matchings = self._match({k: p[i] for k, p in preds.items()}, labels, overlaps)
                    overlaps = np.tile(overlaps, [1, matchings.shape[1]])
                    matchings[gt_matched == 1] = 0
                    overlaps[matchings == 0] = -1
                    jj = overlaps.argmax(0)
                    i_matchings = matchings[jj, range(len(jj))]
                    true_positives[i, i_matchings] = 1
                    gt_matched[jj, range(len(jj))] += i_matchings
                if self.K is not None and self.K > 1:
                    K = (self.K - 1) * len(labels["boxes"])
                    order = predicted_scores.argsort()[::-1]
                    sorted_tp = (true_positives[order, :]).astype(float)
                    sorted_fp = 1 - sorted_tp
                    sorted_tp[(sorted_fp.cumsum(0) <= K) & (sorted_fp == 1)] = np.nan
                    true_positives = sorted_tp
                    predicted_scores = predicted_scores[order]
                    predicted_classes = predicted_classes[order]
                self.gt_classes.append(self._map_classes(labels))
            self.true_positives.append(true_positives)
            self.confidence_scores.append(predicted_scores)
            self.predicted_classes.append(predicted_classes)
        else:
            if len(preds) > 0:  # never true: upstream drops a frame without predictions entirely
                self.gt_classes.append(self._map_classes(labels))

    def _map_classes(self, preds):
        return np.vstack([preds["nouns"]] * self.num_aps).T

    def _compute_prec_rec(self, true_positives, confidence_scores, num_gt):
        tps = true_positives[confidence_scores.argsort()[::-1]]
        tp = tps.cumsum()
        fp = (1 - tps).cumsum()
        prec = self._safe_division(tp, tp + fp)
        rec = self._safe_division(tp, num_gt)
        return prec, rec

    def _safe_division(self, a, b):
        a_array = isinstance(a, np.ndarray)
        b_array = isinstance(b, np.ndarray)
        if (not a_array) and (not b_array):
            if b == 0:
                return 0
        if b_array and not a_array:
            a = np.array([a] * len(b))
        if not b_array and a_array:
            b = np.array([b] * len(a))
        zeroden = b == 0
        b[zeroden] = 1
        a[zeroden] = 0
        return a / b

    def _compute_ap(self, prec, rec):
        mrec = np.concatenate(([0], rec, [1]))
        mpre = np.concatenate(([0], prec, [0]))
        for i in range(len(mpre) - 2, 0, -1):
            mpre[i] = np.max((mpre[i], mpre[i + 1]))
        i = np.where(mrec[1:] != mrec[:-1])[0] + 1
        return np.sum((mrec[i] - mrec[i - 1]) * mpre[i])

    def evaluate(self):
        metrics = []
        gt_classes = np.concatenate(self.gt_classes)
        predicted_classes = np.concatenate(self.predicted_classes)
        true_positives = np.concatenate(self.true_positives)
        confidence_scores = np.concatenate(self.confidence_scores)
        for i in range(self.num_aps):
            measures = []
            _gt_classes = gt_classes[:, i]
            _predicted_classes = predicted_classes[:, i]
            _true_positives = true_positives[:, i]
            _confidence_scores = confidence_scores
            if self.count_all_classes:
                classes = np.unique(np.concatenate([_gt_classes, _predicted_classes]))
            else:
                classes = np.unique(_gt_classes)
            for c in classes:
                tp = _true_positives[_predicted_classes == c]
                cs = _confidence_scores[_predicted_classes == c]
                ngt = np.sum(_gt_classes == c)
                if len(tp) > 0:
                    valid = ~np.isnan(tp)
                    tp, cs = tp[valid], cs[valid]
                if len(tp) > 0 and ngt > 0:
                    prec, rec = self._compute_prec_rec(tp, cs, ngt)
                    this_measure = self._compute_ap(prec, rec)
                    if self.percentages:
                        this_measure = this_measure * 100
                    measures.append(this_measure)
                elif not (len(tp) == 0 and ngt == 0):
                    measures.append(0)
            metrics.append(np.mean(measures))
        return tuple(metrics)

    @abstractmethod
    def _match(self, pred, gt_predictions, ious): ...


class OfficialSTAMeanAveragePrecision(AbstractMeanAveragePrecision):
    short_names = ["map_box_noun", "map_box_noun_verb", "map_box_noun_ttc", "map_box_noun_verb_ttc"]

    def __init__(self, iou_threshold=0.5, ttc_threshold=0.25, top_k=5, count_all_classes=False):
        super().__init__(4, top_k=top_k, count_all_classes=count_all_classes)
        self.iou_threshold = iou_threshold
        self.tti_threshold = ttc_threshold

    def _match(self, pred, gt_predictions, ious):
        nouns = pred["nouns"] == gt_predictions["nouns"]
        boxes = ious.ravel() > self.iou_threshold
        verbs = pred["verbs"] == gt_predictions["verbs"]
        ttcs = np.abs(pred["ttcs"] - gt_predictions["ttcs"]) <= self.tti_threshold
        return np.vstack([boxes & nouns, boxes & verbs & nouns, boxes & nouns & ttcs,
                          boxes & verbs & nouns & ttcs]).T  # fmt: skip


# ---- random frames -----------------------------------------------------------------------------

NUM_NOUNS, NUM_VERBS, SIZE = 6, 4, 200.0


def random_frame(rng, uid, num_gt, num_pred):
    """Ground truth and predictions of one frame, as numpy arrays (the official script's types).

    Predictions are mostly jittered copies of ground-truth objects (so every criterion sees true
    and false positives, IoU near 0.5, TTC errors near 0.25), some boxes anywhere; nouns and
    verbs are right with probability 0.6, so nouns absent from the ground truth get predicted.
    """
    xy = rng.uniform(0, SIZE - 60, size=(num_gt, 2))
    wh = rng.uniform(20, 60, size=(num_gt, 2))
    gt = {"boxes": np.concatenate([xy, xy + wh], 1), "nouns": rng.integers(0, NUM_NOUNS, num_gt),
          "verbs": rng.integers(0, NUM_VERBS, num_gt), "ttcs": rng.uniform(0, 2, num_gt)}  # fmt: skip
    boxes, nouns, verbs, ttcs = [], [], [], []
    for _ in range(num_pred):
        if num_gt and rng.random() < 0.8:
            j = rng.integers(num_gt)
            box = gt["boxes"][j] + rng.normal(0, 6, 4)
            noun = gt["nouns"][j] if rng.random() < 0.6 else rng.integers(NUM_NOUNS)
            verb = gt["verbs"][j] if rng.random() < 0.6 else rng.integers(NUM_VERBS)
            ttc = max(0.0, gt["ttcs"][j] + rng.normal(0, 0.3))
        else:
            x, y = rng.uniform(0, SIZE - 60, 2)
            box = np.array([x, y, x + rng.uniform(20, 60), y + rng.uniform(20, 60)])
            noun, verb, ttc = rng.integers(NUM_NOUNS), rng.integers(NUM_VERBS), rng.uniform(0, 2)
        boxes.append(box)
        nouns.append(noun)
        verbs.append(verb)
        ttcs.append(ttc)
    pred = {"boxes": np.array(boxes).reshape(-1, 4), "nouns": np.array(nouns, dtype=np.int64),
            "verbs": np.array(verbs, dtype=np.int64), "ttcs": np.array(ttcs, dtype=np.float64),
            "scores": rng.uniform(0, 1, num_pred)}  # fmt: skip
    return uid, gt, pred


def as_torch(uid, arrays):
    return {"video_id": uid, **{k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}}


def official(frames, **kwargs):
    evaluator = OfficialSTAMeanAveragePrecision(**kwargs)
    for _, gt, pred in frames:
        # the evaluation script: `pred = {}` for an empty prediction list; `add` treats a frame
        # without objects (`{}`) as having no labels
        evaluator.add(pred if len(pred["scores"]) else {}, gt if len(gt["nouns"]) else {})
    return dict(zip(evaluator.short_names, (v / 100 for v in evaluator.evaluate())))


def ours(frames, batch=3, **kwargs):
    metric = ShortTermAnticipationMAP(**kwargs)
    for start in range(0, len(frames), batch):
        chunk = frames[start : start + batch]
        metric.update([as_torch(u, p) for u, _, p in chunk], [as_torch(u, g) for u, g, _ in chunk])
    return metric.compute()


def frames_for(seed, num_frames=40):
    """Random frames with every edge case: no ground truth, no prediction, more predictions than
    the top-k budget, one ground truth repeated (equal IoUs)."""
    rng = np.random.default_rng(seed)
    frames = []
    for f in range(num_frames):
        num_gt, num_pred = int(rng.integers(1, 4)), int(rng.integers(1, 13))
        if f % 10 == 3:
            num_gt = 0  # frame without ground truth: its predictions are false positives
        if f % 10 == 7:
            num_pred = 0  # frame without predictions: the official script drops it
        if f % 10 == 5:
            num_gt, num_pred = 1, 20  # 19 > (5 - 1) x 1 false positives
        frames.append(random_frame(rng, f"u{f}", num_gt, num_pred))
    # two identical ground-truth objects in one frame: argmax takes the first of equal IoUs
    _, gt, pred = frames[0]
    for key in gt:
        gt[key] = np.concatenate([gt[key][:1], gt[key][:1], gt[key][1:]])
    return frames


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"top_k": None},
        {"count_all_classes": True},
        {"iou_threshold": 0.3, "ttc_threshold": 0.5, "top_k": 3},
    ],
    ids=["top5", "plain_map", "count_all_classes", "other_thresholds"],
)
def test_matches_the_official_evaluator_on_random_frames(seed, kwargs):
    frames = frames_for(seed)
    expected, got = official(frames, **kwargs), ours(frames, **kwargs)
    assert list(got) == list(STA_MAP_NAMES)
    for name in STA_MAP_NAMES:
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name
    assert 0.05 < got["map_box_noun"] < 0.95  # the random frames are neither trivial nor hopeless


def test_edge_case_frames_alone_match_the_official_evaluator():
    rng = np.random.default_rng(123)
    cases = {
        "more_predictions_than_top_k": [random_frame(rng, "a", 1, 30), random_frame(rng, "b", 2, 15)],
        "frame_without_gt": [random_frame(rng, "a", 2, 4), random_frame(rng, "b", 0, 6)],
        "frame_without_predictions": [random_frame(rng, "a", 2, 4), random_frame(rng, "b", 3, 0)],
        "single_prediction": [random_frame(rng, "a", 1, 1)],
    }
    for name, frames in cases.items():
        expected, got = official(frames), ours(frames, batch=1)
        assert got == pytest.approx(expected, abs=1e-12), name


def test_classes_absent_from_gt_count_only_with_count_all_classes():
    # one frame, gt noun 0; a correct prediction and a higher-scored one of noun 5 on another box
    gt = {"boxes": np.array([[10.0, 10.0, 49.0, 49.0]]), "nouns": np.array([0]), "verbs": np.array([1]),
          "ttcs": np.array([0.5])}  # fmt: skip
    pred = {"boxes": np.array([[10.0, 10.0, 49.0, 49.0], [100.0, 100.0, 139.0, 139.0]]),
            "nouns": np.array([0, 5]), "verbs": np.array([1, 1]), "ttcs": np.array([0.5, 0.5]),
            "scores": np.array([0.4, 0.9])}  # fmt: skip
    frames = [("a", gt, pred)]
    for count_all in (False, True):
        for top_k in (None, 5):
            kwargs = {"count_all_classes": count_all, "top_k": top_k}
            expected, got = official(frames, **kwargs), ours(frames, **kwargs)
            assert got == pytest.approx(expected, abs=1e-12)
            # noun 5 has a prediction but no ground truth: AP 0, averaged in only with
            # count_all_classes, and only when the top-5 rule does not ignore that false positive
            assert got["map_box_noun"] == (0.5 if count_all and top_k is None else 1.0)


def test_without_any_ground_truth_the_official_error_becomes_zero():
    # upstream records no labels for these frames and `evaluate` fails on np.concatenate([])
    rng = np.random.default_rng(7)
    frames = [random_frame(rng, "a", 0, 3), random_frame(rng, "b", 0, 2)]
    with pytest.raises(ValueError, match="at least one array"):
        official(frames)
    with pytest.warns(UserWarning, match="no ground truth"):
        got = ours(frames)
    assert got == dict.fromkeys(STA_MAP_NAMES, 0.0)
