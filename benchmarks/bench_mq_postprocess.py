"""MQ post-processing per clip: vidlit's Soft-NMS vs ActionFormer's compiled 1-D Soft-NMS.

The peer is ActionFormer's ``softnms_1d_cpu`` (happyharrycn/actionformer_release,
``libs/utils/csrc/nms_cpu.cpp``) ported statement by statement to numba (its scan for the
maximum, the swap, the in-place Gaussian decay of every remaining segment, the swap-with-last
removal under ``min_score``), driven by its Python ``batched_nms`` (``libs/utils/nms.py``): one
kernel call per class, each capped at ``max_seg_num``, then a global sort. Its complexity is the
C++ kernel's: per class, each selection scans all remaining segments.

Candidates are made as the ActionFormer head's ``predict`` makes them, with Ego4D MQ's sizes
(110 classes, 8 levels, ``pre_nms_topk`` 5000 per level, sigma 0.9, ``min_score`` 0.001,
``max_seg_num`` 2000): per level, the top (step, class) pairs of random sigmoid scores, decoded
into segments around the step with random distances inside the level's regression range.
Both sides get the same candidates; rounds alternate A/B and the ratio is taken per pass.

    python benchmarks/bench_mq_postprocess.py                  # T = 256, 1024, 2304, 4096
    python benchmarks/bench_mq_postprocess.py --lengths 2304 --rounds 7

Prints per length: the candidate count, each side's median ms per clip, the median and range of
the per-pass ratio (peer time / vidlit time: > 1 means vidlit is faster) and the load average
(``os.getloadavg``) before and after.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics

import numba
import numpy as np
import torch
from _rounds import alternate, ratio_range

from vidlit.heads.ego4d_mq import ego4d_regression_range
from vidlit.layers.nms import batched_nms


@numba.njit(cache=True)
def softnms_1d_cpu(x1, x2, sc, dets, iou_threshold, sigma, min_score, method):  # pragma: no cover
    """ActionFormer's ``softnms_1d_cpu``, statement by statement (float32 in, float32 arithmetic)."""
    nsegs = len(sc)
    areas = x2 - x1 + np.float32(1e-6)
    inds = np.arange(nsegs)
    for i in range(nsegs):
        if i >= nsegs:
            break
        max_score = sc[i]
        max_pos = i
        pos = i + 1
        while pos < nsegs:
            if max_score < sc[pos]:
                max_score = sc[pos]
                max_pos = pos
            pos += 1
        ix1 = dets[i, 0] = x1[max_pos]
        ix2 = dets[i, 1] = x2[max_pos]
        iscore = dets[i, 2] = sc[max_pos]
        iarea = areas[max_pos]
        iind = inds[max_pos]
        x1[max_pos], x2[max_pos], sc[max_pos] = x1[i], x2[i], sc[i]
        areas[max_pos], inds[max_pos] = areas[i], inds[i]
        x1[i], x2[i], sc[i], areas[i], inds[i] = ix1, ix2, iscore, iarea, iind
        pos = i + 1
        while pos < nsegs:
            xx1 = max(ix1, x1[pos])
            xx2 = min(ix2, x2[pos])
            inter = max(np.float32(0.0), xx2 - xx1)
            ovr = inter / (iarea + areas[pos] - inter)
            weight = np.float32(1.0)
            if method == 0:
                if ovr >= iou_threshold:
                    weight = np.float32(0.0)
            elif method == 1:
                if ovr >= iou_threshold:
                    weight = np.float32(1.0) - ovr
            else:
                weight = math.exp(-(ovr * ovr) / sigma)
            sc[pos] *= weight
            if sc[pos] < min_score:
                last = nsegs - 1
                x1[pos], x2[pos], sc[pos], areas[pos], inds[pos] = (
                    x1[last],
                    x2[last],
                    sc[last],
                    areas[last],
                    inds[last],
                )
                nsegs -= 1
                pos -= 1
            pos += 1
    return inds[:nsegs]


def actionformer_batched_nms(segs, scores, cls_idxs, iou_threshold, min_score, max_seg_num, sigma):
    """ActionFormer's multiclass ``batched_nms`` with ``SoftNMSop`` (Gaussian, method 2), as upstream."""
    new_segs, new_scores, new_cls = [], [], []
    for class_id in torch.unique(cls_idxs):
        curr = torch.where(cls_idxs == class_id)[0]
        s = segs[curr]
        dets = s.new_empty((s.size(0), 3))
        inds = softnms_1d_cpu(
            s[:, 0].contiguous().numpy().copy(), s[:, 1].contiguous().numpy().copy(),
            scores[curr].numpy().copy(), dets.numpy(),
            np.float32(iou_threshold), np.float32(sigma), np.float32(min_score), 2,
        )  # fmt: skip
        n = min(len(inds), max_seg_num)
        new_segs.append(dets[:n, :2].clone())
        new_scores.append(dets[:n, 2].clone())
        new_cls.append(cls_idxs[curr][torch.from_numpy(inds)][:n].clone())
    new_segs, new_scores, new_cls = torch.cat(new_segs), torch.cat(new_scores), torch.cat(new_cls)
    _, idxs = new_scores.sort(descending=True)
    n = min(max_seg_num, new_segs.shape[0])
    return new_segs[idxs[:n]], new_scores[idxs[:n]], new_cls[idxs[:n]]


def head_like_candidates(t: int, num_classes: int, levels: int, topk: int, seed: int):
    """Candidates as ``ActionFormerHead.predict`` decodes them, from random per-step class scores."""
    g = torch.Generator().manual_seed(seed)
    ranges = ego4d_regression_range(levels)
    segments, scores, labels = [], [], []
    for level in range(levels):
        stride, steps = 2**level, max(1, t // 2**level)
        # logits around the focal prior (p = 0.01) with a few confident points
        probs = torch.sigmoid(torch.randn(steps * num_classes, generator=g) * 1.5 - 4.6)
        keep = torch.nonzero(probs > 0.001).squeeze(1)
        top, order = probs[keep].sort(descending=True)
        top, cand = top[:topk], keep[order[:topk]]
        step = torch.div(cand, num_classes, rounding_mode="floor")
        lo, hi = ranges[level]
        hi = min(hi, t)
        distance = (lo + torch.rand(len(cand), 2, generator=g) * (hi - lo)) / 2
        centre = step.float() * stride
        seg = torch.stack((centre - distance[:, 0], centre + distance[:, 1]), dim=-1)
        long_enough = seg[:, 1] - seg[:, 0] > 0.05
        segments.append(seg[long_enough])
        scores.append(top[long_enough])
        labels.append((cand % num_classes)[long_enough])
    return torch.cat(segments), torch.cat(scores), torch.cat(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 2304, 4096])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--classes", type=int, default=110)
    parser.add_argument("--levels", type=int, default=8)
    parser.add_argument("--topk", type=int, default=5000)
    parser.add_argument("--max-segments", type=int, default=2000)
    parser.add_argument("--sigma", type=float, default=0.9)
    parser.add_argument("--min-score", type=float, default=0.001)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch threads 1, numba {numba.__version__}, load average at start {os.getloadavg()}")
    print("| T | candidates | vidlit ms | ActionFormer (numba port) ms | ratio (median, min-max) |")
    print("|---:|---:|---:|---:|---:|")
    for t in args.lengths:
        segs, scores, labels = head_like_candidates(t, args.classes, args.levels, args.topk, seed=t)

        ours = functools.partial(
            batched_nms, segs, scores, labels, sigma=args.sigma, min_score=args.min_score,
            max_segments=args.max_segments, multiclass=True,
        )  # fmt: skip
        peer = functools.partial(
            actionformer_batched_nms, segs, scores, labels, 0.1, args.min_score, args.max_segments, args.sigma
        )

        a, b = ours(), peer()  # compile and warm up; the same top segments, up to float rounding
        assert len(a[1]) == len(b[1]) and torch.allclose(a[1], b[1], atol=1e-5), "outputs differ"
        ours_s, peer_s = alternate(args.rounds, ours, peer)
        median, low, high = ratio_range(peer_s, ours_s)
        print(
            f"| {t} | {len(scores)} | {1e3 * statistics.median(ours_s):.1f} | "
            f"{1e3 * statistics.median(peer_s):.1f} | {median:.2f}x ({low:.2f}-{high:.2f}) |"
        )
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
