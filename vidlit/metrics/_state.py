"""Per-sample metric state that survives a cross-process sync: tags, first occurrences, list states.

A torchmetrics ``"cat"`` state is a list of tensors on each process and one concatenated tensor
after a sync; with a ``DistributedSampler`` the gathered state can hold a sample twice (the
sampler pads the last batch with copies from the start of the split). Vidlit's metrics key each
sample by :func:`vidlit.core.ids.stable_id` of its id, and score it once, from its *first*
occurrence: the one with the smallest :func:`occurrence_tags` tag (lowest rank, then earliest
``update``), found by :func:`first_occurrence`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

# A tag is (rank << _COUNTER_BITS) | a process-wide counter: unique across the ranks of a process
# group and across the metric instances of one process (``merge_state``), and ordered rank-major.
_COUNTER_BITS = 47
_counter = 0
_lock = threading.Lock()


def occurrence_tags(n: int, device: torch.device | str | None = None) -> Tensor:
    """``n`` fresh, increasing int64 tags for the samples of one ``update``.

    Sorting tags orders occurrences by rank, then by the time they were tagged in that process,
    so the smallest tag of a sample seen several times is its first occurrence.
    """
    global _counter
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    with _lock:
        start, _counter = _counter, _counter + n
    return (rank << _COUNTER_BITS) | torch.arange(start, start + n, dtype=torch.long, device=device)


def rows_tags(tags: Tensor, parts: Sequence[Tensor]) -> Tensor:
    """Each sample's tag once per row of its part (its predictions, its ground truths): ``[sum rows]``."""
    return tags.repeat_interleave(torch.tensor([len(part) for part in parts], device=tags.device))


def cat_state(
    state: list[Tensor] | Tensor, tail: tuple[int, ...] = (), dtype: torch.dtype = torch.float32
) -> Tensor:
    """A ``"cat"`` state as one tensor: the local list concatenated, or the synced tensor as is.

    Args:
        state: the state attribute (a list of tensors before a sync, a tensor after it).
        tail: trailing shape of the empty tensor returned when nothing was added.
        dtype: its dtype.
    """
    if isinstance(state, list) and not state:
        return torch.empty((0, *tail), dtype=dtype)
    return dim_zero_cat(state)


def first_occurrence(
    keys: Tensor, order: Tensor | None = None, return_inverse: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """The row of the first occurrence of each distinct key, earliest first.

    Args:
        keys: ``[N]`` keys, or ``[N, D]`` rows compared whole.
        order: ``[N]`` values defining "first" (smallest first, e.g. :func:`occurrence_tags`);
            ``None`` uses the row position.
        return_inverse: also return the group of every row.

    Returns:
        ``first [G]``: indices into ``keys``, one per distinct key, sorted by ``order``; with
        ``return_inverse``, also ``inverse [N]``: the group (index into ``first``) of each row, so
        ``keys[first][inverse]`` equals ``keys``.

    Example:
        >>> first_occurrence(torch.tensor([7, 3, 7, 5, 3]), return_inverse=True)
        (tensor([0, 1, 3]), tensor([0, 1, 0, 2, 1]))
    """
    n = keys.shape[0]
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long, device=keys.device)
        return (empty, empty.clone()) if return_inverse else empty
    _, group = torch.unique(keys, dim=0, return_inverse=True)  # groups in key order
    if order is None:
        row_of_rank = torch.arange(n, device=keys.device)
        rank = row_of_rank
    else:
        row_of_rank = torch.argsort(order, stable=True)
        rank = torch.empty_like(row_of_rank)
        rank[row_of_rank] = torch.arange(n, device=keys.device)
    num_groups = int(group.max()) + 1
    first_rank = torch.full((num_groups,), n, dtype=torch.long, device=keys.device)
    first_rank = first_rank.scatter_reduce(0, group, rank, reduce="amin")
    by_first = torch.argsort(first_rank)
    first = row_of_rank[first_rank[by_first]]
    if not return_inverse:
        return first
    renumber = torch.empty_like(by_first)
    renumber[by_first] = torch.arange(num_groups, device=keys.device)
    return first, renumber[group]
