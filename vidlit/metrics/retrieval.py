"""Cross-modal retrieval: Recall@K, median and mean rank, both directions, multi-caption aware.

The protocol of video-text retrieval papers (MSR-VTT / DiDeMo / ActivityNet in CLIP4Clip, ViCLIP,
InternVideo) and of music-dance retrieval: build the query x gallery similarity matrix, rank the
gallery for every query, and report the fraction of queries whose first correct item is within
the top K (R@K), and the median (MdR) and mean (MnR) rank of the first correct item (1-based).

Multi-caption data (several captions per video) is handled as those papers do: text-to-video has
one query per caption and one correct video; video-to-text has one query per video, and its rank
is that of the best-ranked of its captions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from vidlit.core.ids import stable_id

__all__ = ["RetrievalRecall", "retrieval_metrics", "retrieval_ranks"]


def retrieval_ranks(similarity: Tensor, positives: Tensor) -> Tensor:
    """The 1-based rank of the best-ranked correct item of each query.

    Args:
        similarity: ``[num_queries, num_gallery]`` scores, higher is more similar.
        positives: ``[num_queries, num_gallery]`` bool, True where the gallery item is a correct
            answer to the query, or ``[num_queries]`` integer gallery indices (one answer each).

    Ties count against the query: an incorrect item scoring *equal* to the best correct one ranks
    above it, so a model with constant similarities gets rank ``num_gallery - num_correct + 1``,
    not a perfect score.
    """
    if similarity.ndim != 2:
        raise ValueError(
            f"similarity must be [num_queries, num_gallery], got shape {tuple(similarity.shape)}"
        )
    if positives.ndim == 1:
        positives = F.one_hot(positives.long(), similarity.shape[1]).bool()
    positives = positives.to(similarity.device).bool()
    if positives.shape != similarity.shape:
        raise ValueError(
            f"positives shape {tuple(positives.shape)} != similarity shape {tuple(similarity.shape)}"
        )
    if not positives.any(dim=1).all():
        missing = (~positives.any(dim=1)).nonzero().flatten()[:5].tolist()
        raise ValueError(f"queries {missing} have no correct gallery item")
    similarity = similarity.float()
    best = similarity.masked_fill(~positives, float("-inf")).amax(dim=1, keepdim=True)
    return ((similarity >= best) & ~positives).sum(dim=1) + 1


def retrieval_metrics(
    similarity: Tensor, positives: Tensor, ks: Sequence[int] = (1, 5, 10), prefix: str = ""
) -> dict[str, float]:
    """``{prefix}R@K`` for each K (fractions in [0, 1]), ``{prefix}MdR`` and ``{prefix}MnR``."""
    ranks = retrieval_ranks(similarity, positives).float()
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
    (or their dot product with ``normalize=False``).

    Args:
        ks: the K of R@K.
        names: short names of the ``a`` and ``b`` modalities, used in the keys.
        normalize: L2-normalize embeddings before the dot product.

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
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.ks = tuple(int(k) for k in ks)
        self.names = tuple(names)
        self.normalize = normalize
        self.add_state("a", default=[], dist_reduce_fx="cat")
        self.add_state("b", default=[], dist_reduce_fx="cat")
        self.add_state("keys", default=[], dist_reduce_fx="cat")

    def update(self, a: Tensor, b: Tensor, ids: Sequence[str] | Tensor) -> None:
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
            raise ValueError(f"a and b must be [batch, dim] pairs, got {tuple(a.shape)} and {tuple(b.shape)}")
        keys = (
            ids
            if isinstance(ids, Tensor)
            else torch.tensor([stable_id(str(i)) for i in ids], dtype=torch.long)
        )
        if keys.shape[0] != a.shape[0]:
            raise ValueError(f"{keys.shape[0]} ids for {a.shape[0]} pairs")
        self.a.append(a.detach().float())
        self.b.append(b.detach().float())
        self.keys.append(keys.to(a.device))

    def compute(self) -> dict[str, float]:
        a, b, keys = dim_zero_cat(self.a), dim_zero_cat(self.b), dim_zero_cat(self.keys)
        if a.numel() == 0:
            raise RuntimeError("RetrievalRecall.compute() called before any update()")
        # drop exact duplicate (id, a) rows, then keep one b row per id
        rows = torch.cat([keys.unsqueeze(1).to(torch.float64), a.to(torch.float64)], dim=1)
        _, first = _first_unique(rows)
        a, b, keys = a[first], b[first], keys[first]
        gallery_keys, b_first = _first_unique(keys)
        b = b[b_first]
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        similarity = a @ b.T  # [num_a, num_b]
        positives = keys.unsqueeze(1) == gallery_keys.unsqueeze(0)
        x, y = self.names
        out = retrieval_metrics(similarity, positives, self.ks, prefix=f"{x}2{y}/")
        out.update(retrieval_metrics(similarity.T, positives.T, self.ks, prefix=f"{y}2{x}/"))
        return out


def _first_unique(values: Tensor) -> tuple[Tensor, Tensor]:
    """Unique values (rows, for 2-D) and the index of each one's first occurrence, in that order."""
    unique, inverse = torch.unique(values, dim=0, return_inverse=True)
    positions = torch.arange(inverse.numel(), device=values.device)
    first = torch.full((unique.shape[0],), inverse.numel(), dtype=torch.long, device=values.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    order = first.argsort()
    return unique[order], first[order]
