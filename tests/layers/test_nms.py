import math

import numpy as np
import pytest
import torch

from vidlit.core.segments import _iou_pairs, segment_iou_pairs
from vidlit.layers.nms import _soft_nms, batched_nms, seg_voting, soft_nms


def test_soft_nms_gaussian_decays_overlapping_lower_score():
    segments = torch.tensor([[0.0, 10.0], [2.0, 10.0], [20.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.5])
    out_segments, out_scores, out_labels = soft_nms(segments, scores, sigma=0.5, min_score=0.001)
    # [2, 10] overlaps [0, 10] with IoU 0.8: 0.8 * exp(-0.8**2 / 0.5); [20, 30] is untouched
    decayed = 0.8 * math.exp(-(0.8**2) / 0.5)
    assert torch.allclose(out_scores, torch.tensor([0.9, 0.5, decayed]))
    assert torch.equal(out_segments, torch.tensor([[0.0, 10.0], [20.0, 30.0], [2.0, 10.0]]))
    assert torch.equal(out_labels, torch.zeros(3, dtype=torch.long))


def test_soft_nms_decay_compounds_in_selection_order():
    # C overlaps both A (selected first) and B (selected second): decayed twice
    segments = torch.tensor([[0.0, 4.0], [4.0, 8.0], [2.0, 6.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, out_scores, _ = soft_nms(segments, scores, sigma=1.0)
    iou = 2 / 6
    assert torch.allclose(out_scores, torch.tensor([0.9, 0.8, 0.7 * math.exp(-(iou**2)) ** 2]))


def test_soft_nms_is_per_class():
    segments = torch.tensor([[0.0, 10.0], [2.0, 10.0], [2.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([3, 3, 5])
    out_segments, out_scores, out_labels = soft_nms(segments, scores, labels, sigma=0.5)
    # the class-5 segment is not suppressed by the class-3 one
    assert torch.allclose(out_scores, torch.tensor([0.9, 0.7, 0.8 * math.exp(-(0.8**2) / 0.5)]))
    assert out_labels.tolist() == [3, 5, 3]
    assert out_labels.dtype == torch.long


def test_soft_nms_min_score_and_max_segments():
    segments = torch.tensor([[0.0, 10.0], [0.0, 10.0], [20.0, 30.0], [40.0, 50.0]])
    scores = torch.tensor([0.9, 0.8, 0.0005, 0.3])
    # identical segment decays to 0.8 * exp(-1/0.5) = 0.108 < 0.2: dropped; 0.0005 never enters
    _, out_scores, _ = soft_nms(segments, scores, sigma=0.5, min_score=0.2)
    assert torch.allclose(out_scores, torch.tensor([0.9, 0.3]))
    _, out_scores, _ = soft_nms(segments, scores, sigma=0.5, min_score=0.001, max_segments=2)
    assert torch.allclose(out_scores, torch.tensor([0.9, 0.3]))


def test_soft_nms_hard_is_classic_nms():
    segments = torch.tensor([[0.0, 10.0], [1.0, 10.0], [9.0, 20.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    out_segments, out_scores, _ = soft_nms(segments, scores, method="hard", iou_threshold=0.5)
    assert torch.equal(out_segments, torch.tensor([[0.0, 10.0], [9.0, 20.0]]))
    assert torch.allclose(out_scores, torch.tensor([0.9, 0.7]))
    # linear: only pairs with IoU >= 0.5 decay, by 1 - IoU ([9, 20] overlaps [0, 10] by 1/20 only)
    _, out_scores, _ = soft_nms(segments, scores, method="linear", iou_threshold=0.5)
    assert torch.allclose(out_scores, torch.tensor([0.9, 0.7, 0.8 * (1 - 0.9)]))


def test_soft_nms_empty_and_bad_input():
    segments, scores, labels = soft_nms(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert segments.shape == (0, 2) and scores.shape == (0,) and labels.shape == (0,)
    with pytest.raises(ValueError, match="method"):
        soft_nms(torch.zeros(1, 2), torch.ones(1), method="box")
    with pytest.raises(ValueError, match="segments"):
        soft_nms(torch.zeros(3), torch.ones(3))


def _actionformer_soft_nms(segments, scores, labels, sigma, min_score, max_segments):
    """Sequential per-class Gaussian Soft-NMS, step by step as ActionFormer's ``nms_1d_cpu.softnms``."""
    out = []
    for c in labels.unique().tolist():
        segs = segments[labels == c].tolist()
        sc = scores[labels == c].tolist()
        kept = []
        while segs and len(kept) < max_segments:
            i = max(range(len(sc)), key=lambda k: sc[k])
            (s, e), score = segs.pop(i), sc.pop(i)
            kept.append((s, e, score, c))
            for k, (s2, e2) in enumerate(segs):
                inter = max(0.0, min(e, e2) - max(s, s2))
                sc[k] *= math.exp(-((inter / ((e - s) + (e2 - s2) - inter)) ** 2) / sigma)
            alive = [k for k in range(len(sc)) if sc[k] >= min_score]
            segs, sc = [segs[k] for k in alive], [sc[k] for k in alive]
        out.extend(kept)
    out.sort(key=lambda x: -x[2])
    return out[:max_segments]


@pytest.mark.parametrize("seed", range(3))
def test_soft_nms_matches_sequential_reference(seed):
    g = torch.Generator().manual_seed(seed)
    n = 60
    starts = torch.rand(n, generator=g) * 50
    segments = torch.stack([starts, starts + 0.5 + torch.rand(n, generator=g) * 20], dim=1)
    scores = 0.01 + torch.rand(n, generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)
    segs, sc, lab = soft_nms(segments, scores, labels, sigma=0.9, min_score=0.05, max_segments=25)
    ref = _actionformer_soft_nms(segments, scores, labels, sigma=0.9, min_score=0.05, max_segments=25)
    assert len(ref) == len(sc)
    assert torch.allclose(sc, torch.tensor([r[2] for r in ref]), atol=1e-5)
    assert torch.allclose(segs, torch.tensor([r[:2] for r in ref]))
    assert lab.tolist() == [r[3] for r in ref]


def _official_seg_voting(nms_segs, all_segs, all_scores, iou_threshold, score_offset=1.5):
    """ActionFormer's ``seg_voting`` (happyharrycn/actionformer_release, libs/utils/nms.py), ported."""
    offset_scores = all_scores + score_offset  # noqa: F841 - computed and unused upstream too
    num_nms_segs, num_all_segs = nms_segs.shape[0], all_segs.shape[0]
    ex_nms_segs = nms_segs[:, None].expand(num_nms_segs, num_all_segs, 2)
    ex_all_segs = all_segs[None, :].expand(num_nms_segs, num_all_segs, 2)
    left = torch.maximum(ex_nms_segs[:, :, 0], ex_all_segs[:, :, 0])
    right = torch.minimum(ex_nms_segs[:, :, 1], ex_all_segs[:, :, 1])
    inter = (right - left).clamp(min=0)
    nms_seg_lens = ex_nms_segs[:, :, 1] - ex_nms_segs[:, :, 0]
    all_seg_lens = ex_all_segs[:, :, 1] - ex_all_segs[:, :, 0]
    iou = inter / (nms_seg_lens + all_seg_lens - inter)
    seg_weights = (iou >= iou_threshold).to(all_scores.dtype) * all_scores[None, :] * iou
    seg_weights /= torch.sum(seg_weights, dim=1, keepdim=True)
    return seg_weights @ all_segs


def _official_batched_nms(segs, scores, cls_idxs, min_score, max_seg_num, multiclass, sigma, voting_thresh):
    """ActionFormer's ``batched_nms`` with Soft-NMS, ported; ``SoftNMSop`` is the sequential reference."""
    if segs.shape[0] == 0:
        return torch.zeros([0, 2]), torch.zeros([0]), torch.zeros([0], dtype=cls_idxs.dtype)

    def soft_nms_op(segs, scores, cls_idxs):
        kept = _actionformer_soft_nms(segs, scores, torch.zeros_like(cls_idxs), sigma, min_score, max_seg_num)
        inds = [next(i for i in range(len(segs)) if segs[i].tolist() == [s, e]) for s, e, *_ in kept]
        return (
            torch.tensor([k[:2] for k in kept]).reshape(-1, 2),
            torch.tensor([k[2] for k in kept]),
            cls_idxs[torch.tensor(inds, dtype=torch.long)],
        )

    if multiclass:
        new_segs, new_scores, new_cls_idxs = [], [], []
        for class_id in torch.unique(cls_idxs):
            curr_indices = torch.where(cls_idxs == class_id)[0]
            sorted_segs, sorted_scores, sorted_cls_idxs = soft_nms_op(
                segs[curr_indices], scores[curr_indices], cls_idxs[curr_indices]
            )
            # disable seg voting for multiclass nms, no sufficient segs
            new_segs.append(sorted_segs)
            new_scores.append(sorted_scores)
            new_cls_idxs.append(sorted_cls_idxs)
        new_segs, new_scores, new_cls_idxs = (
            torch.cat(new_segs),
            torch.cat(new_scores),
            torch.cat(new_cls_idxs),
        )
    else:
        new_segs, new_scores, new_cls_idxs = soft_nms_op(segs, scores, cls_idxs)
        if voting_thresh > 0:
            new_segs = _official_seg_voting(new_segs, segs, scores, voting_thresh)
    _, idxs = new_scores.sort(descending=True)
    max_seg_num = min(max_seg_num, new_segs.shape[0])
    return new_segs[idxs[:max_seg_num]], new_scores[idxs[:max_seg_num]], new_cls_idxs[idxs[:max_seg_num]]


def _candidates(seed, n=80):
    g = torch.Generator().manual_seed(seed)
    # clustered candidates, as a detector's neighbouring points predict: near-duplicates vote
    centres = (torch.rand(6, generator=g) * 100)[torch.randint(0, 6, (n,), generator=g)]
    half = 2 + torch.rand(n, generator=g) * 8
    jitter = torch.randn(n, 2, generator=g) * 0.3
    segments = torch.stack([centres - half, centres + half], dim=1) + jitter
    return segments, 0.01 + torch.rand(n, generator=g), torch.randint(0, 4, (n,), generator=g)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("voting_thresh", [0.95, 0.75, 0.5])
def test_batched_nms_with_voting_matches_actionformer(seed, voting_thresh):
    segments, scores, labels = _candidates(seed)
    kwargs = dict(sigma=0.9, min_score=0.05, max_segments=30)
    ours = batched_nms(segments, scores, labels, **kwargs, multiclass=False, voting_thresh=voting_thresh)
    ref = _official_batched_nms(
        segments, scores, labels, 0.05, 30, multiclass=False, sigma=0.9, voting_thresh=voting_thresh
    )
    assert len(ours[1]) == len(ref[1]) > 5
    assert torch.allclose(ours[1], ref[1], atol=1e-5)
    assert torch.allclose(ours[0], ref[0], atol=1e-4)
    assert torch.equal(ours[2], ref[2])
    # voting moved some boundaries: the refinement is not a no-op on this data
    plain = batched_nms(segments, scores, labels, **kwargs, multiclass=False, voting_thresh=0.0)
    assert not torch.allclose(ours[0], plain[0])


@pytest.mark.parametrize("seed", range(2))
def test_batched_nms_multiclass_never_votes(seed):
    segments, scores, labels = _candidates(seed)
    kwargs = dict(sigma=0.9, min_score=0.05, max_segments=30)
    ours = batched_nms(segments, scores, labels, **kwargs, multiclass=True, voting_thresh=0.95)
    ref = _official_batched_nms(
        segments, scores, labels, 0.05, 30, multiclass=True, sigma=0.9, voting_thresh=0.95
    )
    assert torch.allclose(ours[1], ref[1], atol=1e-5) and torch.equal(ours[0], ref[0])
    assert torch.equal(ours[2], ref[2])
    assert all(torch.equal(a, b) for a, b in zip(ours, soft_nms(segments, scores, labels, **kwargs)))


def test_seg_voting_worked_example():
    kept = torch.tensor([[0.0, 10.0], [50.0, 60.0]])
    candidates = torch.tensor([[0.0, 10.0], [1.0, 10.0], [0.0, 12.0], [30.0, 40.0], [50.0, 60.0]])
    scores = torch.tensor([0.9, 0.5, 0.4, 0.8, 0.6])
    refined = seg_voting(kept, candidates, scores, iou_threshold=0.8)
    # [0, 10] votes with itself (IoU 1, w 0.9), [1, 10] (IoU 0.9, w 0.45), [0, 12] (IoU 10/12, w 1/3)
    w = torch.tensor([0.9, 0.45, 0.4 * 10 / 12])
    expected = (w[:, None] * candidates[:3]).sum(0) / w.sum()
    assert torch.allclose(refined[0], expected)
    assert torch.equal(refined[1], kept[1])  # nothing else overlaps [50, 60]
    assert seg_voting(torch.zeros(0, 2), candidates, scores, 0.5).shape == (0, 2)


# -- linear / hard Soft-NMS against ActionFormer's C++ kernel -----------------------------------------


def _softnms_1d_cpu(segs, scores, iou_threshold, sigma, min_score, method):
    """ActionFormer's ``softnms_1d_cpu`` (happyharrycn/actionformer_release, libs/utils/csrc/nms_cpu.cpp),
    ported statement by statement in float32; ``method`` 0 hard, 1 linear, 2 gaussian.

    Returns the ``dets`` rows ``(start, end, score)`` it fills, in selection order.
    """
    f32 = np.float32
    iou_threshold, sigma, min_score = f32(iou_threshold), f32(sigma), f32(min_score)
    x1 = segs[:, 0].contiguous().numpy().copy()
    x2 = segs[:, 1].contiguous().numpy().copy()
    sc = scores.clone().numpy()
    areas = (segs[:, 1] - segs[:, 0] + 1e-6).numpy()  # `areas_t = x2_t - x1_t + 1e-6`
    nsegs, dets, i = len(sc), [], 0
    while i < nsegs:
        max_score, max_pos = sc[i], i
        for pos in range(i + 1, nsegs):
            if max_score < sc[pos]:
                max_score, max_pos = sc[pos], pos
        ix1, ix2, iscore, iarea = x1[max_pos], x2[max_pos], sc[max_pos], areas[max_pos]
        dets.append((float(ix1), float(ix2), float(iscore)))
        x1[max_pos], x2[max_pos], sc[max_pos], areas[max_pos] = x1[i], x2[i], sc[i], areas[i]
        x1[i], x2[i], sc[i], areas[i] = ix1, ix2, iscore, iarea
        pos = i + 1
        while pos < nsegs:
            inter = max(f32(0), min(ix2, x2[pos]) - max(ix1, x1[pos]))
            ovr = inter / (iarea + areas[pos] - inter)
            weight = f32(1)
            if method == 0:
                if ovr >= iou_threshold:
                    weight = f32(0)
            elif method == 1:
                if ovr >= iou_threshold:
                    weight = f32(1) - ovr
            else:
                weight = np.exp(-(ovr * ovr) / sigma)
            sc[pos] *= weight
            if sc[pos] < min_score:
                last = nsegs - 1
                x1[pos], x2[pos], sc[pos], areas[pos] = x1[last], x2[last], sc[last], areas[last]
                nsegs, pos = nsegs - 1, pos - 1
            pos += 1
        i += 1
    return dets


def _official_multiclass_softnms(segments, scores, labels, iou_threshold, sigma, min_score, method, max_num):
    """ActionFormer's multiclass ``batched_nms`` around ``SoftNMSop`` (libs/utils/nms.py), ported."""
    rows = []
    for c in torch.unique(labels).tolist():
        dets = _softnms_1d_cpu(
            segments[labels == c], scores[labels == c], iou_threshold, sigma, min_score, method
        )
        rows.extend((*d, c) for d in dets[:max_num])
    rows.sort(key=lambda r: -r[2])
    return rows[:max_num]


def test_linear_and_hard_act_from_an_iou_above_the_threshold_as_upstream():
    """[1, 2] overlaps [0, 2] by exactly 1/2; upstream's padded lengths put that IoU just below 0.5."""
    segments = torch.tensor([[0.0, 2.0], [1.0, 2.0]])
    scores = torch.tensor([0.9, 0.8])
    for method in ("hard", "linear"):
        _, out, _ = soft_nms(segments, scores, method=method, iou_threshold=0.5)
        assert torch.equal(out, scores), method  # left alone, as ActionFormer's kernel does
    _, out, _ = soft_nms(segments, scores, method="hard", iou_threshold=0.49)
    assert torch.equal(out, scores[:1])
    _, out, _ = soft_nms(segments, scores, method="linear", iou_threshold=0.49)
    assert torch.allclose(out, torch.tensor([0.9, 0.8 * 0.5]))
    # the Gaussian default keeps the exact IoU
    _, out, _ = soft_nms(segments, scores, sigma=0.5)
    assert torch.allclose(out, torch.tensor([0.9, 0.8 * math.exp(-0.25 / 0.5)]), rtol=0, atol=1e-7)


@pytest.mark.parametrize("method", ["hard", "linear", "gaussian"])
@pytest.mark.parametrize("seed", range(3))
def test_soft_nms_matches_actionformer_kernel_on_ties(method, seed):
    """Whole-number segments: many pairs overlap by exactly 1/2 or 1/3, the thresholds used here."""
    g = torch.Generator().manual_seed(seed)
    n = 60
    starts = torch.randint(0, 24, (n,), generator=g).float()
    segments = torch.stack([starts, starts + torch.randint(1, 7, (n,), generator=g).float()], dim=1)
    scores = 0.1 + torch.rand(n, generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    code = {"hard": 0, "linear": 1, "gaussian": 2}[method]
    threshold = 0.5 if seed % 2 else 1 / 3
    ours = soft_nms(segments, scores, labels, 0.7, 0.05, 25, method, threshold)
    ref = _official_multiclass_softnms(segments, scores, labels, threshold, 0.7, 0.05, code, 25)
    assert len(ours[1]) == len(ref) > 10
    assert torch.equal(ours[0], torch.tensor([r[:2] for r in ref]))
    assert ours[2].tolist() == [r[3] for r in ref]
    atol = 1e-6 if method == "gaussian" else 0.0  # the Gaussian decay keeps the exact IoU
    assert torch.allclose(ours[1], torch.tensor([r[2] for r in ref]), rtol=0, atol=atol)


# -- bit-identity with the step-by-step torch formulation this module replaced ---------------------------


def _reference_soft_nms(segments, scores, labels, sigma, min_score, max_segments, method, iou_threshold):
    """vidlit's previous ``_soft_nms`` (one padded row per class, one torch step per selection), verbatim."""
    if labels is None:
        labels = torch.zeros(len(scores), dtype=torch.long, device=scores.device)
    segments, scores, labels = segments.float(), scores.float(), labels.long()
    index = torch.nonzero(scores >= min_score).squeeze(1)
    segments, scores, labels = segments[index], scores[index], labels[index]
    if len(scores) == 0 or max_segments <= 0:
        return segments.new_zeros(0, 2), scores.new_zeros(0), labels.new_zeros(0), index[:0]
    classes, row = torch.unique(labels, return_inverse=True)
    counts = torch.bincount(row, minlength=len(classes))
    order = torch.argsort(row, stable=True)
    first = torch.cumsum(counts, 0) - counts
    col = torch.arange(len(row), device=row.device) - torch.repeat_interleave(first, counts)
    m = int(counts.max())
    seg = segments.new_zeros(len(classes), m, 2)
    live = scores.new_full((len(classes), m), float("-inf"))
    where = index.new_zeros(len(classes), m)
    seg[row[order], col] = segments[order]
    where[row[order], col] = index[order]
    live[row[order], col] = scores[order]
    picked_segments, picked_scores, picked_labels, picked_index = [], [], [], []
    for _ in range(min(m, max_segments)):
        best, j = live.max(dim=1)
        alive = best >= min_score
        if not alive.all():
            if not alive.any():
                break
            live, seg, where, classes, best, j = (x[alive] for x in (live, seg, where, classes, best, j))
        rows = torch.arange(len(classes), device=live.device)
        top = seg[rows, j]
        picked_segments.append(top)
        picked_scores.append(best)
        picked_labels.append(classes)
        picked_index.append(where[rows, j])
        live[rows, j] = float("-inf")
        if method == "gaussian":
            live = live * torch.exp(-segment_iou_pairs(top[:, None], seg).square() / sigma)
        else:
            iou = _iou_pairs(top[:, None], seg, 1e-6)
            if method == "linear":
                live = torch.where(iou >= iou_threshold, live * (1 - iou), live)
            else:
                live = live.masked_fill(iou >= iou_threshold, float("-inf"))
        live = live.masked_fill(~(live >= min_score), float("-inf"))
    out_scores, rank = torch.cat(picked_scores).sort(descending=True, stable=True)
    rank = rank[:max_segments]
    return (
        torch.cat(picked_segments)[rank],
        out_scores[:max_segments],
        torch.cat(picked_labels)[rank],
        torch.cat(picked_index)[rank],
    )


def _random_candidates(seed, n, num_classes, integer):
    g = torch.Generator().manual_seed(seed)
    if integer:  # whole numbers: exact IoU ties and equal scores
        starts = torch.randint(0, 40, (n,), generator=g).float()
        segments = torch.stack([starts, starts + torch.randint(0, 8, (n,), generator=g).float()], 1)
        scores = torch.randint(1, 20, (n,), generator=g).float() / 20
    else:
        starts = torch.rand(n, generator=g) * 200
        segments = torch.stack([starts, starts + torch.rand(n, generator=g) * 30], 1)
        scores = torch.rand(n, generator=g) ** 3
    return segments, scores, torch.randint(0, num_classes, (n,), generator=g) * 3 - 2


@pytest.mark.parametrize("method", ["gaussian", "linear", "hard"])
@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_soft_nms_bit_identical_to_the_torch_formulation(method, integer, seed):
    n = [40, 300, 900, 1500][seed]
    segments, scores, labels = _random_candidates(seed, n, [1, 5, 17, 60][seed], integer)
    sigma = [0.9, 0.5, 0.3, 0.123][seed]
    for min_score, max_segments in ((0.001, 2000), (0.01, 37), (0.2, 5), (0.0, 10**6)):
        args = (sigma, min_score, max_segments, method, 1 / 3 if integer else 0.1)
        ref = _reference_soft_nms(segments, scores, labels, *args)
        ours = _soft_nms(segments, scores, labels, *args)
        for a, b in zip(ours, ref, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert torch.equal(a, b), (min_score, max_segments)
        # class-agnostic (labels None), as batched_nms(multiclass=False) runs it
        ref = _reference_soft_nms(segments, scores, None, *args)
        ours = _soft_nms(segments, scores, None, *args)
        assert all(torch.equal(a, b) for a, b in zip(ours, ref, strict=True))


def test_gaussian_factor_of_zero_overlap_is_exactly_one():
    # the selection skips non-overlapping pairs: torch's exp(-0.0) must be 1 for that to be exact
    assert torch.equal(torch.exp(torch.tensor([-0.0, 0.0])), torch.ones(2))
