"""Cross-modal retrieval: Recall@K, median and mean rank, both directions, multi-caption aware.

The protocol of video-text retrieval papers (MSR-VTT / DiDeMo / ActivityNet in CLIP4Clip, ViCLIP,
InternVideo) and of music-dance retrieval: build the query x gallery similarity matrix, rank the
gallery for every query, and report the fraction of queries whose first correct item is within
the top K (R@K), and the median (MdR) and mean (MnR) rank of the first correct item (1-based).

Multi-caption data (several captions per video): text-to-video has one query per caption and one
correct video, in every convention. Video-to-text has one query per video and two conventions:

- ``"all_captions"`` (the default; ALBEF / BLIP ``itm_eval``, and the COCO / Flickr30K image-text
  protocol): the gallery is every caption, and the query's rank is that of its best-ranked own
  caption, so every caption of another video that scores higher counts.
- ``"per_video_max"`` (CLIP4Clip's ``multi_sentence_`` evaluation, ``tensor_video_to_text_sim``:
  a ``max`` over each video's captions, then ``compute_metrics`` on the video x video matrix): the
  gallery is the videos' caption sets, each scored by its best caption, so another video counts
  once however many of its captions score higher. Ranks are never worse than ``"all_captions"``'s.

With one caption per video both are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from vidlit.core.ids import stable_ids
from vidlit.metrics._state import cat_state, first_occurrence

__all__ = ["RetrievalRecall", "retrieval_metrics", "retrieval_ranks"]

V2T_CONVENTIONS = ("all_captions", "per_video_max")


def retrieval_ranks(similarity: Tensor, positives: Tensor) -> Tensor:
    """The 1-based rank of the best-ranked correct item of each query.

    Args:
        similarity: ``[num_queries, num_gallery]`` scores, higher is more similar.
        positives: ``[num_queries, num_gallery]`` bool, True where the gallery item is a correct
            answer to the query, or ``[num_queries]`` integer gallery indices (one answer each).

    Ties count against the query: an incorrect item scoring *equal* to the best correct one ranks
    above it, so a model with constant similarities gets rank ``num_gallery - num_correct + 1``,
    not a perfect score. Scores are compared in float32; a NaN among a query's correct scores
    gives rank 1 (nothing compares ``>=`` to NaN).

    On the CPU the ranks come from one compiled pass over each row (no ``[Q, G]`` temporaries, so
    the extra memory is ``O(Q)``); on other devices from chunks of rows.

    Returns:
        ``[num_queries]`` int64 ranks on the similarity's device.
    """
    if similarity.ndim != 2:
        raise ValueError(
            f"similarity must be [num_queries, num_gallery], got shape {tuple(similarity.shape)}"
        )
    num_queries, num_gallery = similarity.shape
    if positives.ndim == 1:
        if positives.shape[0] != num_queries:
            raise ValueError(f"{positives.shape[0]} positive indices for {num_queries} queries")
        positives = positives.long().to(similarity.device)
        bad = (positives < 0) | (positives >= num_gallery)
        if bad.any():
            first = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"query {first}: positive index {int(positives[first])} "
                f"is outside the gallery of {num_gallery}"
            )
    else:
        positives = positives.to(similarity.device).bool()
        if positives.shape != similarity.shape:
            raise ValueError(
                f"positives shape {tuple(positives.shape)} != similarity shape {tuple(similarity.shape)}"
            )
    similarity = similarity.float()
    if similarity.device.type == "cpu":
        sim = similarity.detach().numpy()
        ranks = np.empty(num_queries, np.int64)
        if positives.ndim == 1:
            _ranks_of_index(sim, positives.numpy(), ranks)
        else:
            _ranks_of_mask(sim, positives.numpy(), ranks)
        ranks = torch.from_numpy(ranks)
    else:
        ranks = (
            torch.cat(
                [
                    _chunk_ranks(similarity[i : i + _CHUNK_ROWS], positives[i : i + _CHUNK_ROWS], i)
                    for i in range(0, num_queries, _CHUNK_ROWS)
                ]
            )
            if num_queries
            else torch.zeros(0, dtype=torch.long, device=similarity.device)
        )
    if (ranks < 0).any():
        missing = (ranks < 0).nonzero().flatten()[:5].tolist()
        raise ValueError(f"queries {missing} have no correct gallery item")
    return ranks


# rows per chunk off the CPU: bounds the [chunk, G] temporaries
_CHUNK_ROWS = 256


def _chunk_ranks(similarity: Tensor, positives: Tensor, offset: int) -> Tensor:
    """The ranks of a chunk of rows; -1 for a row without a correct item."""
    if positives.ndim == 1:
        positives = F.one_hot(positives, similarity.shape[1]).bool()
    best = similarity.masked_fill(~positives, float("-inf")).amax(dim=1, keepdim=True)
    ranks = ((similarity >= best) & ~positives).sum(dim=1) + 1
    return torch.where(positives.any(dim=1), ranks, -1)


@numba.njit(cache=True, nogil=True)
def _ranks_of_index(sim, positive, ranks):  # pragma: no cover - compiled
    for q in range(sim.shape[0]):
        best = sim[q, positive[q]]
        count = 0
        for g in range(sim.shape[1]):
            if sim[q, g] >= best:
                count += 1
        # the correct item itself counts when it compares >= to itself (not NaN)
        ranks[q] = count + (0 if best >= best else 1)


@numba.njit(cache=True, nogil=True)
def _ranks_of_mask(sim, positive, ranks):  # pragma: no cover - compiled
    for q in range(sim.shape[0]):
        # amax over the correct items, NaN-propagating as torch's amax
        best = -np.inf
        found = False
        for g in range(sim.shape[1]):
            if positive[q, g]:
                found = True
                v = sim[q, g]
                if v > best or v != v:
                    best = v
                    if v != v:
                        break
        if not found:
            ranks[q] = -1
            continue
        count = 1
        for g in range(sim.shape[1]):
            if not positive[q, g] and sim[q, g] >= best:
                count += 1
        ranks[q] = count


@numba.njit(cache=True, nogil=True)
def _column_ranks_of_owner(sim, owner, num_columns):  # pragma: no cover - compiled
    """Ranks of ``sim.T`` with ``positives.T[v, i] = owner[i] == v``, reading ``sim`` row by row."""
    best = np.full(num_columns, -np.inf, sim.dtype)
    nan = np.zeros(num_columns, np.bool_)
    has = np.zeros(num_columns, np.bool_)
    for i in range(sim.shape[0]):
        v = owner[i]
        has[v] = True
        x = sim[i, v]
        if x != x:
            nan[v] = True
        elif x > best[v]:
            best[v] = x
    ranks = np.ones(num_columns, np.int64)
    for i in range(sim.shape[0]):
        for v in range(num_columns):
            if owner[i] != v and not nan[v] and sim[i, v] >= best[v]:
                ranks[v] += 1
    for v in range(num_columns):
        if not has[v]:
            ranks[v] = -1
    return ranks


def retrieval_metrics(
    similarity: Tensor, positives: Tensor, ks: Sequence[int] = (1, 5, 10), prefix: str = ""
) -> dict[str, float]:
    """``{prefix}R@K`` for each K (fractions in [0, 1]), ``{prefix}MdR`` and ``{prefix}MnR``."""
    return _metrics_of_ranks(retrieval_ranks(similarity, positives), ks, prefix)


def _metrics_of_ranks(ranks: Tensor, ks: Sequence[int], prefix: str) -> dict[str, float]:
    ranks = ranks.float()
    out = {f"{prefix}R@{k}": (ranks <= k).float().mean().item() for k in ks}
    # the median of an even count is the mean of the two middle ranks, as numpy.median gives
    out[f"{prefix}MdR"] = ranks.quantile(0.5).item()
    out[f"{prefix}MnR"] = ranks.mean().item()
    return out


class RetrievalRecall(Metric):
    """Retrieval between two modalities ``a`` and ``b`` from paired embeddings.

    ``update(a, b, ids)`` takes a batch of pairs: row ``i`` of ``a`` (e.g. a caption's embedding)
    belongs with row ``i`` of ``b`` (its video's embedding), and ``ids[i]`` names the ``b`` item
    (the video id). Rows sharing an id are several ``a`` items of one ``b`` item (multi-caption):
    the ``b`` embeddings are kept once per id, every ``a`` row is a query. Exact duplicate rows
    (same id, same ``a`` embedding, as a ``DistributedSampler`` pads them) are counted once.

    ``compute()`` returns, with ``names=("t", "v")``: ``t2v/R@1``, ``t2v/R@5``, ``t2v/R@10``,
    ``t2v/MdR``, ``t2v/MnR`` and the same for ``v2t``. Similarity is the cosine of the embeddings
    (or their dot product with ``normalize=False``). ``a2b`` (``t2v``) ranks the ``b`` items for
    each ``a`` row; ``b2a`` (``v2t``) ranks, for each ``b`` item, either every ``a`` row
    (``v2t="all_captions"``, ALBEF / BLIP ``itm_eval``) or the ``b`` items' groups of ``a`` rows,
    each scored by its best row (``v2t="per_video_max"``, CLIP4Clip); see the module docstring.

    Args:
        ks: the K of R@K.
        names: short names of the ``a`` and ``b`` modalities, used in the keys.
        normalize: L2-normalize embeddings before the dot product.
        v2t: the ``b``-to-``a`` convention, ``"all_captions"`` or ``"per_video_max"``.

    Example:
        >>> metric = RetrievalRecall(ks=(1,), names=("t", "v"))
        >>> texts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
        >>> videos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> metric.update(texts, videos, ["x", "y", "x"])  # two captions of video x
        >>> {k: round(v, 2) for k, v in metric.compute().items() if "R@1" in k}
        {'t2v/R@1': 1.0, 'v2t/R@1': 1.0}
    """

    full_state_update = False

    def __init__(
        self,
        ks: Sequence[int] = (1, 5, 10),
        names: tuple[str, str] = ("t", "v"),
        normalize: bool = True,
        v2t: str = "all_captions",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if v2t not in V2T_CONVENTIONS:
            raise ValueError(f"v2t must be one of {V2T_CONVENTIONS}, got {v2t!r}")
        self.ks = tuple(int(k) for k in ks)
        self.names = tuple(names)
        self.normalize = normalize
        self.v2t = v2t
        self.add_state("a", default=[], dist_reduce_fx="cat")
        self.add_state("b", default=[], dist_reduce_fx="cat")
        self.add_state("keys", default=[], dist_reduce_fx="cat")

    def update(self, a: Tensor, b: Tensor, ids: Sequence[str] | Tensor) -> None:
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
            raise ValueError(f"a and b must be [batch, dim] pairs, got {tuple(a.shape)} and {tuple(b.shape)}")
        keys = ids if isinstance(ids, Tensor) else stable_ids(ids)
        if keys.shape[0] != a.shape[0]:
            raise ValueError(f"{keys.shape[0]} ids for {a.shape[0]} pairs")
        self.a.append(a.detach().float())
        self.b.append(b.detach().float())
        self.keys.append(keys.to(a.device))

    def compute(self) -> dict[str, float]:
        a, b, keys = cat_state(self.a), cat_state(self.b), cat_state(self.keys, dtype=torch.long)
        if a.numel() == 0:
            raise RuntimeError("RetrievalRecall.compute() called before any update()")
        # drop exact duplicate (id, a) rows: ids are numbered first (a 64-bit hash is not exact in float64);
        # only rows whose id occurs more than once can be duplicates, so only those are compared whole
        _, key_index = first_occurrence(keys, return_inverse=True)
        shared = torch.bincount(key_index)[key_index] > 1
        candidates = shared.nonzero().flatten()
        first = first_occurrence(
            torch.cat([key_index[candidates, None].double(), a[candidates].double()], dim=1)
        )
        first = torch.cat([(~shared).nonzero().flatten(), candidates[first]]).sort().values
        a, b, keys = a[first], b[first], keys[first]
        # the gallery: one b row per id, in first-seen order; `owner` is each a row's gallery item
        gallery, owner = first_occurrence(keys, return_inverse=True)
        b = b[gallery]
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        similarity = a @ b.T  # [num_a, num_b]
        num_b = len(gallery)
        x, y = self.names
        out = retrieval_metrics(similarity, owner, self.ks, prefix=f"{x}2{y}/")
        if self.v2t == "all_captions":
            if similarity.device.type == "cpu":
                ranks = torch.from_numpy(_column_ranks_of_owner(similarity.numpy(), owner.numpy(), num_b))
            else:
                positives = owner[:, None] == torch.arange(num_b, device=owner.device)[None, :]
                ranks = retrieval_ranks(similarity.T, positives.T)
            out.update(_metrics_of_ranks(ranks, self.ks, prefix=f"{y}2{x}/"))
        else:
            # [group, b]: each b item's group of a rows scored by its best row (CLIP4Clip's max)
            grouped = similarity.new_full((num_b, num_b), float("-inf"))
            grouped = grouped.scatter_reduce(0, owner[:, None].expand(-1, num_b), similarity, reduce="amax")
            out.update(retrieval_metrics(grouped.T, torch.arange(num_b), self.ks, prefix=f"{y}2{x}/"))
        return out
