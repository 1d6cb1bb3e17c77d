"""Shared per-sample metric state: first occurrences, occurrence tags, list-or-tensor states."""

import torch

from vidlit.metrics import _state
from vidlit.metrics._state import cat_state, first_occurrence, occurrence_tags, rows_tags


def test_first_occurrence_by_position_and_groups():
    keys = torch.tensor([7, 3, 7, 5, 3, 7])
    first, group = first_occurrence(keys, return_inverse=True)
    assert first.tolist() == [0, 1, 3]  # 7, 3, 5 in first-seen order (not key order)
    assert group.tolist() == [0, 1, 0, 2, 1, 0]
    assert torch.equal(keys[first][group], keys)


def test_first_occurrence_by_order():
    # "first" is the smallest order value (a tag: lowest rank, then earliest update), not position
    keys = torch.tensor([7, 3, 7, 5, 3])
    order = torch.tensor([50, 40, 10, 20, 30])
    first, group = first_occurrence(keys, order=order, return_inverse=True)
    assert first.tolist() == [2, 3, 4]  # 7 (order 10), 5 (20), 3 (30): sorted by order
    assert group.tolist() == [0, 2, 0, 1, 2]


def test_first_occurrence_of_rows_and_of_nothing():
    rows = torch.tensor([[1.0, 2.0], [1.0, 3.0], [1.0, 2.0]])
    assert first_occurrence(rows).tolist() == [0, 1]
    first, group = first_occurrence(torch.zeros(0, dtype=torch.long), return_inverse=True)
    assert first.numel() == 0 and group.numel() == 0


def test_occurrence_tags_are_rank_major_and_increasing(monkeypatch):
    a, b = occurrence_tags(3), occurrence_tags(2)
    assert a.dtype == torch.long and (a.diff() == 1).all() and b[0] > a[-1]
    monkeypatch.setattr(_state.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(_state.dist, "get_rank", lambda: 1)
    later_on_rank_1 = occurrence_tags(1)
    # any tag of rank 1 sorts after every tag of rank 0, whenever it was made
    assert later_on_rank_1[0] >= 1 << 47 > b[-1]
    assert rows_tags(b, [torch.zeros(2, 4), torch.zeros(0, 4)]).tolist() == [b[0].item()] * 2


def test_cat_state_before_and_after_a_sync():
    assert cat_state([], (4,), torch.float64).shape == (0, 4)
    assert cat_state([], dtype=torch.long).dtype == torch.long
    parts = [torch.tensor([1, 2]), torch.tensor([3])]
    assert cat_state(parts).tolist() == [1, 2, 3]
    assert cat_state(torch.tensor([1, 2, 3])).tolist() == [1, 2, 3]  # already gathered
