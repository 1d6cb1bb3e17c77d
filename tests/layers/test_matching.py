"""HungarianMatcher: DETR's matching cost, checked against brute force over every assignment."""

import itertools

import pytest
import torch

from vidlit.core.boxes import cxcywh_to_xyxy, generalized_box_iou
from vidlit.layers.matching import HungarianMatcher


def test_matches_each_target_to_its_box():
    boxes = torch.tensor([[[0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.9, 0.9]]])
    logits = torch.zeros(1, 3, 2)
    targets = torch.tensor([[0.71, 0.69, 0.2, 0.2], [0.2, 0.21, 0.1, 0.1]])
    ((queries, which),) = HungarianMatcher()(logits, boxes, [torch.zeros(2, dtype=torch.long)], [targets])
    # query 0 takes target 1, query 1 target 0; query 2 stays unmatched (no object)
    assert queries.tolist() == [0, 1] and which.tolist() == [1, 0]


def test_minimizes_the_detr_cost_like_brute_force():
    g = torch.Generator().manual_seed(0)
    b, q, n = 3, 5, 3
    logits = torch.randn(b, q, 3, generator=g)
    boxes = torch.rand(b, q, 4, generator=g) * 0.5 + 0.1
    labels = [torch.randint(0, 2, (n,), generator=g) for _ in range(b)]
    targets = [torch.rand(n, 4, generator=g) * 0.5 + 0.1 for _ in range(b)]
    matcher = HungarianMatcher(cost_class=1, cost_bbox=5, cost_giou=2)
    for i, (queries, which) in enumerate(matcher(logits, boxes, labels, targets)):
        prob = logits[i].softmax(-1)
        cost = (
            -prob[:, labels[i]]
            + 5 * torch.cdist(boxes[i], targets[i], p=1)
            - 2 * generalized_box_iou(cxcywh_to_xyxy(boxes[i]), cxcywh_to_xyxy(targets[i]))
        )
        best = min(
            sum(cost[p, t] for t, p in enumerate(perm)) for perm in itertools.permutations(range(q), n)
        )
        got = cost[queries, which].sum()
        assert got == pytest.approx(float(best), abs=1e-5)
        assert sorted(which.tolist()) == list(range(n))


def test_images_without_targets_and_more_targets_than_queries():
    logits, boxes = torch.zeros(2, 2, 2), torch.rand(2, 2, 4) * 0.5 + 0.1
    labels = [torch.zeros(0, dtype=torch.long), torch.zeros(3, dtype=torch.long)]
    targets = [torch.zeros(0, 4), torch.rand(3, 4) * 0.5 + 0.1]
    (q0, t0), (q1, t1) = HungarianMatcher()(logits, boxes, labels, targets)
    assert len(q0) == len(t0) == 0
    assert len(q1) == len(t1) == 2 and len(set(t1.tolist())) == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="non-negative"):
        HungarianMatcher(cost_class=-1)
    with pytest.raises(ValueError, match="2 images"):
        HungarianMatcher()(torch.zeros(2, 1, 2), torch.zeros(2, 1, 4), [torch.zeros(0)], [torch.zeros(0, 4)])
