"""TemporalActionMAP against hand-worked Ego4D MQ examples and a numpy re-implementation of the official code.

Every expected number below is worked out by hand in the comments. Notation: for one class, the
predictions are ranked by score; P_i and R_i are the precision and recall after the i-th one; the
AP is the sum, over the true positives, of (1 / npos) * max(P_j for j >= i) (the interpolated
precision "envelope" of ``interpolated_prec_rec``).
"""

from __future__ import annotations

import math
import os
import socket
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vidlit.metrics.temporal_map import TemporalActionMAP


def pred(video_id: str, segments, labels, scores) -> dict:
    return {
        "video_id": video_id,
        "segments": torch.tensor(segments, dtype=torch.float32).reshape(-1, 2),
        "labels": torch.tensor(labels, dtype=torch.long),
        "scores": torch.tensor(scores, dtype=torch.float32),
    }


def target(video_id: str, segments, labels) -> dict:
    return {
        "video_id": video_id,
        "segments": torch.tensor(segments, dtype=torch.float32).reshape(-1, 2),
        "labels": torch.tensor(labels, dtype=torch.long),
    }


def score(preds, targets, **kwargs) -> dict[str, float]:
    kwargs.setdefault("num_classes", 4)
    metric = TemporalActionMAP(**kwargs)
    metric.update(preds, targets)
    return metric.compute()


def assert_map(result: dict[str, float], expected: float) -> None:
    for key in ("mAP", "mAP@0.1", "mAP@0.2", "mAP@0.3", "mAP@0.4", "mAP@0.5"):
        assert result[key] == pytest.approx(expected, abs=1e-9), key


# ----------------------------------------------------------------------------- hand-worked


def test_perfect_predictions():
    # Every ground truth predicted exactly: each class ranks one TP first -> AP 1, tIoU 1 > 0.5.
    result = score(
        [pred("a", [[0, 10], [20, 30]], [0, 1], [0.9, 0.8]), pred("b", [[5, 6]], [0], [0.7])],
        [target("a", [[0, 10], [20, 30]], [0, 1]), target("b", [[5, 6]], [0])],
    )
    assert set(result) == {"mAP", "mAP@0.1", "mAP@0.2", "mAP@0.3", "mAP@0.4", "mAP@0.5", "R1x@0.5"}
    assert all(isinstance(v, float) for v in result.values())
    assert_map(result, 1.0)
    assert result["R1x@0.5"] == 1.0


def test_duplicate_detection_is_a_false_positive():
    # Class 0 has GT g1 = [0, 10], g2 = [20, 30] (npos 2). Ranked predictions:
    #   p1 [0, 10]  0.9 -> g1, tIoU 1: TP                      P = 1/1, R = 1/2
    #   p2 [1, 10]  0.8 -> g1 (tIoU 9/10) is taken, g2 tIoU 0: FP   P = 1/2, R = 1/2
    #   p3 [20, 30] 0.7 -> g2: TP                              P = 2/3, R = 2/2
    # envelope at the TPs: max(1, 1/2, 2/3) = 1 and 2/3 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    # Recall@1x: N_c = 2, top 2 = p1, p2; both only overlap g1 -> 1 of 2 GT retrieved.
    result = score(
        [pred("a", [[0, 10], [1, 10], [20, 30]], [0, 0, 0], [0.9, 0.8, 0.7])],
        [target("a", [[0, 10], [20, 30]], [0, 0])],
    )
    assert_map(result, 5 / 6)
    assert result["R1x@0.5"] == pytest.approx(1 / 2)


def test_class_without_predictions_has_ap_zero_and_class_without_gt_is_skipped():
    # Class 0: one GT, predicted exactly -> AP 1. Class 1: one GT, no prediction -> AP 0.
    # Class 2: no GT anywhere -> not averaged, and its (top-scoring) prediction changes nothing.
    # mAP = (1 + 0) / 2 = 0.5; Recall@1x = 1 of 2 GT.
    result = score(
        [pred("a", [[0, 10], [40, 50]], [0, 2], [0.9, 0.95])],
        [target("a", [[0, 10], [20, 30]], [0, 1])],
    )
    assert_map(result, 0.5)
    assert result["R1x@0.5"] == pytest.approx(0.5)


def test_predictions_in_a_clip_without_ground_truth_are_false_positives():
    # Clip "b" has no GT at all. Class 0 ranking over the dataset:
    #   b [0, 10] 0.9: no GT in its clip -> FP   P = 0,   R = 0
    #   a [0, 10] 0.5: TP                        P = 1/2, R = 1
    # AP = 1 * 1/2 = 0.5. Recall counts GT only: a's GT is hit by a's top-1 -> 1.
    result = score(
        [pred("a", [[0, 10]], [0], [0.5]), pred("b", [[0, 10]], [0], [0.9])],
        [target("a", [[0, 10]], [0]), target("b", [], [])],
    )
    assert_map(result, 0.5)
    assert result["R1x@0.5"] == 1.0


def test_interpolated_precision_envelope():
    # Class 0, GT [0,10], [20,30], [40,50] (npos 3). Ranked predictions:
    #   p1 [0, 10]  TP  P = 1      R = 1/3
    #   p2 [60, 70] FP  P = 1/2
    #   p3 [80, 90] FP  P = 1/3
    #   p4 [20, 30] TP  P = 2/4    R = 2/3
    #   p5 [40, 50] TP  P = 3/5    R = 3/3
    # envelope (max to the right): p1 -> 1, p4 -> max(1/2, 3/5) = 3/5, p5 -> 3/5.
    # AP = 1/3 * (1 + 3/5 + 3/5) = 11/15 (raw precision would give 1/3 * (1 + 1/2 + 3/5) = 0.7).
    # Recall@1x: top 3 = p1, p2, p3 -> only [0, 10] retrieved: 1/3.
    result = score(
        [
            pred(
                "a",
                [[40, 50], [0, 10], [80, 90], [60, 70], [20, 30]],  # input order does not matter
                [0, 0, 0, 0, 0],
                [0.5, 0.9, 0.7, 0.8, 0.6],
            )
        ],
        [target("a", [[0, 10], [20, 30], [40, 50]], [0, 0, 0])],
    )
    assert_map(result, 11 / 15)
    assert result["R1x@0.5"] == pytest.approx(1 / 3)


def test_recall_at_1x_ignores_hits_beyond_the_top_k_times_n_window():
    # Clip "a", class 0: one GT [0, 10] (N_c = 1). Class-0 predictions by score:
    #   [50, 60] 0.9 (miss), [0, 10] 0.8 (hit). Top 1*1 = the miss -> R1x = 0; top 2*1 -> R2x = 1.
    # A class-1 prediction with a higher score does not take a slot: the window is per class.
    # mAP: FP then TP -> AP = 1 * 1/2 = 0.5.
    preds = [pred("a", [[0, 10], [0, 10], [50, 60]], [0, 1, 0], [0.8, 0.95, 0.9])]
    targets = [target("a", [[0, 10]], [0])]
    result = score(preds, targets)
    assert result["R1x@0.5"] == 0.0
    assert_map(result, 0.5)
    assert score(preds, targets, recall_k=2)["R2x@0.5"] == 1.0


def test_recall_window_is_per_clip_and_pooled_over_instances():
    # Clip "a": class 0 GT [0,10], [20,30] (N_c = 2); clip "b": class 0 GT [0,10] (N_c = 1).
    # a's top 2 class-0 predictions: [0,10] 0.3, [20,30] 0.2 -> both hit (b's higher scores
    # do not compete for a's window). b's top 1: [50,60] 0.9 -> miss.
    # Pooled over the 3 instances: 2/3 (a per-clip mean would give (1 + 0) / 2 = 0.5).
    result = score(
        [
            pred("a", [[0, 10], [20, 30]], [0, 0], [0.3, 0.2]),
            pred("b", [[50, 60], [0, 10]], [0, 0], [0.9, 0.8]),
        ],
        [target("a", [[0, 10], [20, 30]], [0, 0]), target("b", [[0, 10]], [0])],
    )
    assert result["R1x@0.5"] == pytest.approx(2 / 3)


def test_tiou_exactly_at_the_threshold():
    # GT [0, 10], predictions [0, 5] and [2.5, 7.5]: tIoU = 5 / 10 = 0.5 exactly (in float32 too).
    # mAP: official miss test is `tiou < thr`, so 0.5 matches at thr 0.5 -> one TP first, AP 1.
    # Recall: official hit test is `overlap > t`, so 0.5 does not retrieve at 0.5 -> 0.
    for segment in ([0, 5], [2.5, 7.5]):
        result = score([pred("a", [segment], [0], [0.9])], [target("a", [[0, 10]], [0])])
        assert_map(result, 1.0)
        assert result["R1x@0.5"] == 0.0
    result = score(
        [pred("a", [[0, 5]], [0], [0.9])],
        [target("a", [[0, 10]], [0])],
        tiou_thresholds=(0.5, 0.6),
        recall_tiou=0.4,
    )
    # 0.5 >= 0.5 but 0.5 < 0.6; 0.5 > 0.4.
    assert result == {"mAP": 0.5, "mAP@0.5": 1.0, "mAP@0.6": 0.0, "R1x@0.4": 1.0}


def test_greedy_matching_takes_the_highest_tiou_ground_truth():
    # Class 0 GT A = [0, 10], B = [4, 14]; thr 0.5.
    #   p1 [3, 13] 0.9: tIoU A = 7/13 = 0.54, B = 9/11 = 0.82 -> takes B (highest tIoU): TP
    #   p2 [5, 14] 0.8: tIoU B = 9/10 (taken), A = 5/14 = 0.36 < 0.5 -> FP
    # (an optimal assignment would match both). AP = 1/2 * 1 = 0.5.
    result = score(
        [pred("a", [[3, 13], [5, 14]], [0, 0], [0.9, 0.8])],
        [target("a", [[0, 10], [4, 14]], [0, 0])],
        tiou_thresholds=(0.5,),
    )
    assert result["mAP@0.5"] == pytest.approx(0.5)


def test_ap_pools_all_clips_of_a_class():
    # Class 0 over two clips, npos 2. Ranking: a-TP 0.9, b-FP 0.8 ([30,40] vs GT [0,10]), b-TP 0.7.
    # P = 1, 1/2, 2/3; AP = 1/2 * 1 + 1/2 * 2/3 = 5/6 (not the mean of per-clip APs, (1 + 1/2) / 2).
    result = score(
        [pred("a", [[0, 10]], [0], [0.9]), pred("b", [[30, 40], [0, 10]], [0, 0], [0.8, 0.7])],
        [target("a", [[0, 10]], [0]), target("b", [[0, 10]], [0])],
    )
    assert_map(result, 5 / 6)


def test_key_names_follow_the_arguments():
    result = score(
        [pred("a", [[0, 10]], [0], [0.9])],
        [target("a", [[0, 10]], [0])],
        tiou_thresholds=(0.3, 0.7),
        recall_tiou=0.3,
        recall_k=5,
    )
    assert list(result) == ["mAP", "mAP@0.3", "mAP@0.7", "R5x@0.3"]


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_no_ground_truth_scores_zero_with_a_warning():
    metric = TemporalActionMAP(num_classes=2)
    with pytest.warns(UserWarning, match="no ground truth"):
        assert metric.compute()["mAP"] == 0.0
    metric.update([pred("a", [[0, 1]], [0], [0.5])], [target("a", [], [])])
    with pytest.warns(UserWarning, match="no ground truth"):
        assert set(metric.compute().values()) == {0.0}


# ------------------------------------------------------------------------ state handling


def test_split_updates_and_repeated_clips_score_like_one_update():
    preds = [
        pred("a", [[0, 10], [1, 10], [20, 30]], [0, 0, 0], [0.9, 0.8, 0.7]),
        pred("b", [[0, 4], [50, 60]], [1, 1], [0.6, 0.95]),
    ]
    targets = [target("a", [[0, 10], [20, 30]], [0, 0]), target("b", [[0, 5]], [1])]
    expected = score(preds, targets)

    split = TemporalActionMAP(num_classes=4)
    split.update(preds[:1], targets[:1])
    split.update(preds[1:], targets[1:])
    split.update(preds[:1], targets[:1])  # a clip seen again (DistributedSampler padding) counts once
    assert split.compute() == expected

    # Two metrics joined as DDP would join them; "b" on both, scored once.
    first, second = TemporalActionMAP(num_classes=4), TemporalActionMAP(num_classes=4)
    first.update(preds[:1], targets[:1])
    second.update(preds[1:], targets[1:])
    first.update(preds[1:], targets[1:])
    first.merge_state(second)
    assert first.compute() == expected

    split.reset()
    split(preds, targets)  # forward: batch value, then accumulate
    assert split.compute() == expected


def _ddp_worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        preds, targets = random_clips(7, num_clips=41, num_classes=6)
        order = [*range(41), 0]  # DistributedSampler pads 41 clips to 42 by repeating clip 0
        mine = order[rank::world]  # clip 0 lands on both ranks
        metric = TemporalActionMAP(6)
        for lo in range(0, len(mine), 4):
            metric.update([preds[i] for i in mine[lo : lo + 4]], [targets[i] for i in mine[lo : lo + 4]])
        queue.put((rank, metric.compute()))
    finally:
        dist.destroy_process_group()


@pytest.mark.exclusive  # two processes
@pytest.mark.slow  # two spawned processes, each importing torch: seconds, not milliseconds
@pytest.mark.skipif(not dist.is_available(), reason="needs torch.distributed")
def test_ddp_sync_matches_a_single_process():
    # Two gloo ranks, clip 0 on both (sampler padding): the synced result equals one process's.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(rank, 2, port, queue)) for rank in range(2)]
    for proc in procs:
        proc.start()
    try:
        results = dict(queue.get(timeout=120) for _ in procs)
    finally:
        for proc in procs:
            proc.join(timeout=30)
    preds, targets = random_clips(7, num_clips=41, num_classes=6)
    assert results[0] == results[1] == score(preds, targets, num_classes=6)


def test_update_rejects_malformed_input():
    metric = TemporalActionMAP(num_classes=3)
    good_p, good_t = pred("a", [[0, 1]], [0], [0.5]), target("a", [[0, 1]], [0])
    bad = [
        ([good_p], [], "1 predictions but 0 targets"),
        ([good_p], [target("b", [[0, 1]], [0])], "is for clip 'a' but targets"),
        ([{**good_p, "segments": torch.zeros(1, 3)}], [good_t], r"shape \[N, 2\]"),
        ([{**good_p, "labels": torch.zeros(2, dtype=torch.long)}], [good_t], r"\['labels'\] must have shape"),
        ([{**good_p, "scores": torch.zeros(2)}], [good_t], r"\['scores'\] must have shape"),
        ([{**good_p, "labels": torch.tensor([3])}], [good_t], r"\[0, 3\)"),
        ([{**good_p, "labels": torch.tensor([0.0])}], [good_t], "integer"),
        ([good_p], [{**good_t, "segments": torch.tensor([[2.0, 1.0]])}], "start <= end"),
        ([{k: v for k, v in good_p.items() if k != "scores"}], [good_t], "misses key"),
        ([{**good_p, "video_id": 3}], [good_t], "must be a str"),
    ]
    for preds, targets, message in bad:
        with pytest.raises(ValueError, match=message):
            metric.update(preds, targets)
    for kwargs in ({"tiou_thresholds": ()}, {"tiou_thresholds": (1.5,)}, {"recall_k": 0}, {"num_classes": 0}):
        with pytest.raises(ValueError):
            TemporalActionMAP(**{"num_classes": 3, **kwargs})


# ------------------------------------------------------- parity with the official numpy code
#
# A straightforward re-implementation of EGO4D/episodic-memory MQ/Evaluation: utils.py
# (segment_iou, interpolated_prec_rec), ego4d/eval_detection.py (ANETdetection,
# compute_average_precision_detection) and ego4d/get_retrieval_performance.py
# (Moment_Retrieval.evaluate, iou), without pandas.


def ref_segment_iou(target_segment, candidates):
    start = np.maximum(target_segment[0], candidates[:, 0])
    end = np.minimum(target_segment[1], candidates[:, 1])
    inter = (end - start).clip(0)
    union = (candidates[:, 1] - candidates[:, 0]) + (target_segment[1] - target_segment[0]) - inter
    return inter.astype(float) / union


def ref_interpolated_prec_rec(prec, rec):
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
    return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def ref_class_ap(gt, preds, thresholds):
    """gt: list of (video, start, end); preds: list of (video, start, end, score) of one class."""
    ap = np.zeros(len(thresholds))
    if not preds:
        return ap
    npos = float(len(gt))
    lock = -np.ones((len(thresholds), len(gt)))
    order = np.array([p[3] for p in preds]).argsort()[::-1]
    preds = [preds[i] for i in order]
    tp = np.zeros((len(thresholds), len(preds)))
    fp = np.zeros((len(thresholds), len(preds)))
    gt_by_video: dict[str, list[int]] = {}
    for j, g in enumerate(gt):
        gt_by_video.setdefault(g[0], []).append(j)
    for idx, (video, start, end, _) in enumerate(preds):
        if video not in gt_by_video:
            fp[:, idx] = 1
            continue
        gt_idx = gt_by_video[video]
        tiou = ref_segment_iou(np.array([start, end]), np.array([gt[j][1:] for j in gt_idx]))
        for t, thr in enumerate(thresholds):
            for j in tiou.argsort()[::-1]:
                if tiou[j] < thr:
                    fp[t, idx] = 1
                    break
                if lock[t, gt_idx[j]] >= 0:
                    continue
                tp[t, idx] = 1
                lock[t, gt_idx[j]] = idx
                break
            if fp[t, idx] == 0 and tp[t, idx] == 0:
                fp[t, idx] = 1
    tp_cum, fp_cum = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    rec, prec = tp_cum / npos, tp_cum / (tp_cum + fp_cum)
    return np.array([ref_interpolated_prec_rec(prec[t], rec[t]) for t in range(len(thresholds))])


def ref_retrieval_iou(pred, gt):
    pred, gt = np.array(pred), np.array(gt)
    inter = np.maximum(
        0.0, np.minimum(pred[:, 1, None], gt[None, :, 1]) - np.maximum(pred[:, 0, None], gt[None, :, 0])
    )
    union = np.maximum(
        0.0, np.maximum(pred[:, 1, None], gt[None, :, 1]) - np.minimum(pred[:, 0, None], gt[None, :, 0])
    )
    return 1.0 * inter / union


def reference(preds, targets, thresholds, ks, recall_tiou):
    """Official mAP@t and Rank kx @ tIoU from per-clip numpy data."""
    gt_rows = [
        (t["video_id"], *seg, int(lab))
        for t in targets
        for seg, lab in zip(t["segments"].tolist(), t["labels"], strict=True)
    ]
    pred_rows = [
        (p["video_id"], *seg, int(lab), float(s))
        for p in preds
        for seg, lab, s in zip(p["segments"].tolist(), p["labels"], p["scores"], strict=True)
    ]
    classes = list(dict.fromkeys(g[3] for g in gt_rows))  # activity_index: GT labels only
    ap = np.stack(
        [
            ref_class_ap(
                [g[:3] for g in gt_rows if g[3] == c],
                [(*p[:3], p[4]) for p in pred_rows if p[3] == c],
                thresholds,
            )
            for c in classes
        ],
        axis=1,
    )
    result = {f"mAP@{t:g}": v for t, v in zip(thresholds, ap.mean(axis=1), strict=True)}
    result["mAP"] = ap.mean(axis=1).mean()

    # Retrieval file: per clip, predictions sorted by score (generate_retrieval.py), grouped by label.
    by_clip = {}
    for p in preds:
        order = np.argsort(-p["scores"].numpy(), kind="stable")
        per_label: dict[int, list] = {}
        for i in order:
            per_label.setdefault(int(p["labels"][i]), []).append(p["segments"][i].tolist())
        by_clip[p["video_id"]] = per_label
    for k in ks:
        hits = []
        for t in targets:
            gt_v: dict[int, list] = {}
            for seg, lab in zip(t["segments"].tolist(), t["labels"].tolist(), strict=True):
                gt_v.setdefault(lab, []).append(seg)
            pred_v = by_clip[t["video_id"]]
            for label, gt_c in gt_v.items():
                if label in pred_v:
                    overlap = ref_retrieval_iou(pred_v[label], gt_c)
                    hits.extend((overlap > recall_tiou)[: k * len(gt_c)].any(axis=0))
                else:
                    hits.extend([False] * len(gt_c))
        result[f"R{k}x@{recall_tiou:g}"] = np.mean(hits)
    return result


def random_clips(seed: int, num_clips: int, num_classes: int):
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for i in range(num_clips):
        n_gt = rng.integers(0, 7)
        start = rng.uniform(0, 90, n_gt)
        gt = np.stack([start, start + rng.uniform(1, 20, n_gt)], 1)
        gt_labels = rng.integers(0, num_classes - 1, n_gt)  # the last class never has GT
        segs, labels = [], []
        for seg, lab in zip(gt, gt_labels, strict=True):
            for _ in range(rng.integers(0, 4)):  # near-duplicates of the GT: TPs and duplicate FPs
                s = seg[0] + rng.normal(0, 1.5)
                segs.append([s, s + (seg[1] - seg[0]) * max(0.1, 1 + rng.normal(0, 0.3))])
                labels.append(lab if rng.random() < 0.8 else rng.integers(0, num_classes))
        for _ in range(rng.integers(0, 10)):  # background and wrong-class predictions
            s = rng.uniform(0, 100)
            segs.append([s, s + rng.uniform(0.5, 25)])
            labels.append(rng.integers(0, num_classes))
        segs = np.array(segs, dtype=np.float32).reshape(-1, 2)
        preds.append(pred(f"clip{i}", segs, labels, rng.random(len(labels), dtype=np.float32)))
        targets.append(target(f"clip{i}", gt.astype(np.float32), gt_labels))
    return preds, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_the_official_evaluation(seed):
    thresholds, ks, recall_tiou = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7), (1, 3), 0.5
    preds, targets = random_clips(seed, num_clips=40, num_classes=6)
    expected = reference(preds, targets, thresholds, ks, recall_tiou)
    for k in ks:
        metric = TemporalActionMAP(6, tiou_thresholds=thresholds, recall_tiou=recall_tiou, recall_k=k)
        # Fed in uneven batches, as a validation loop would.
        for lo, hi in ((0, 7), (7, 8), (8, 40)):
            metric.update(preds[lo:hi], targets[lo:hi])
        result = metric.compute()
        for key, value in result.items():
            assert value == pytest.approx(expected[key], abs=1e-9), key
    assert 0.05 < expected["mAP"] < 0.95  # the data exercises both hits and misses


def _random_validation_set(num_clips: int, per_clip: int) -> tuple[list, list]:
    """Ego4D-MQ-like clips: 5 moments of 110 classes, ``per_clip`` predictions (10 near the moments)."""
    gen = torch.Generator().manual_seed(0)
    preds, targets = [], []
    for i in range(num_clips):
        gt_start = torch.rand(5, generator=gen) * 400
        gt = torch.stack([gt_start, gt_start + 5 + torch.rand(5, generator=gen) * 30], 1)
        gt_labels = torch.randint(0, 110, (5,), generator=gen)
        p_start = torch.rand(per_clip, generator=gen) * 400
        segs = torch.stack([p_start, p_start + 1 + torch.rand(per_clip, generator=gen) * 40], 1)
        segs[:10] = gt.repeat(2, 1) + torch.randn(10, 2, generator=gen)
        segs = segs.sort(1).values
        labels = torch.randint(0, 110, (per_clip,), generator=gen)
        labels[:10] = gt_labels.repeat(2)
        scores = torch.rand(per_clip, generator=gen)
        preds.append({"video_id": f"c{i}", "segments": segs, "labels": labels, "scores": scores})
        targets.append({"video_id": f"c{i}", "segments": gt, "labels": gt_labels})
    return preds, targets


def _compute_counting_python_lines(metric: TemporalActionMAP) -> tuple[dict, int]:
    """``metric.compute()`` and the number of Python lines it ran in vidlit/metrics/temporal_map.py."""
    import vidlit.metrics.temporal_map as module

    count = 0

    def local(frame, event, arg):
        nonlocal count
        count += event == "line"
        return local

    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: local if frame.f_code.co_filename == module.__file__ else None)
    try:
        result = metric.compute()
    finally:
        sys.settrace(previous)
    return result, count


def test_compute_is_vectorized_over_predictions():
    # Ego4D MQ val has ~5k clips x up to 2000 predictions: compute must not loop over predictions
    # in Python. Ten times the predictions per clip may not add Python work (a deterministic
    # stand-in for a wall-clock bound, which a loaded CI machine makes flaky).
    lines = {}
    for per_clip in (20, 200):
        preds, targets = _random_validation_set(200, per_clip)
        metric = TemporalActionMAP(110)
        for lo in range(0, 200, 16):
            metric.update(preds[lo : lo + 16], targets[lo : lo + 16])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result, lines[per_clip] = _compute_counting_python_lines(metric)
        assert all(math.isfinite(v) and 0 < v < 1 for v in result.values())
    assert lines[200] <= 1.1 * lines[20]
    assert lines[200] < 200 * 200 / 10  # far fewer Python steps than predictions


def test_compute_runs_on_one_thread_and_restores_the_setting():
    metric = TemporalActionMAP(num_classes=3)
    g = torch.Generator().manual_seed(0)
    preds, targets = [], []
    for i in range(20):
        s = torch.rand(30, generator=g) * 50
        preds.append(
            {
                "video_id": f"c{i}",
                "segments": torch.stack([s, s + 5], 1),
                "labels": torch.randint(0, 3, (30,), generator=g),
                "scores": torch.rand(30, generator=g),
            }
        )
        s = torch.rand(4, generator=g) * 50
        targets.append({"video_id": f"c{i}", "segments": torch.stack([s, s + 5], 1),
                        "labels": torch.randint(0, 3, (4,), generator=g)})  # fmt: skip
    metric.update(preds, targets)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = metric.compute()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    metric._computed = None
    assert metric.compute() == two


def test_a_bad_value_names_its_clip_after_the_batched_check():
    metric = TemporalActionMAP(num_classes=3)
    ok = {"video_id": "a", "segments": torch.tensor([[0.0, 1.0]]), "labels": torch.tensor([1])}
    bad = {"video_id": "b", "segments": torch.tensor([[2.0, 1.0]]), "labels": torch.tensor([1])}
    with pytest.raises(ValueError, match=r"targets\[1\] \(video_id 'b'\)\['segments'\] must be finite"):
        metric.update([{**ok, "scores": torch.ones(1)}, {**bad, "segments": torch.tensor([[0.0, 1.0]]),
                       "scores": torch.ones(1)}], [ok, bad])  # fmt: skip
    with pytest.raises(ValueError, match=r"preds\[0\] \(video_id 'a'\)\['scores'\] must be finite"):
        metric.update([{**ok, "scores": torch.tensor([float("nan")])}], [ok])
    with pytest.raises(ValueError, match=r"preds\[0\] \(video_id 'a'\)\['labels'\] must lie in \[0, 3\)"):
        metric.update([{**ok, "labels": torch.tensor([3]), "scores": torch.ones(1)}], [ok])
