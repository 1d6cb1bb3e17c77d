"""Retrieval Recall@K / median rank, worked examples in the CLIP4Clip / ViCLIP protocol."""

import numpy as np
import pytest
import torch

from vidlit.metrics.retrieval import RetrievalRecall, retrieval_metrics, retrieval_ranks


def test_ranks_worked_example():
    # query 0: correct item 2 is ranked 2nd (0.9 > 0.5); query 1: correct item 1 is 1st
    sim = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]])
    assert retrieval_ranks(sim, torch.tensor([2, 1])).tolist() == [2, 1]
    m = retrieval_metrics(sim, torch.tensor([2, 1]), ks=(1, 5))
    assert m == {"R@1": 0.5, "R@5": 1.0, "MdR": 1.5, "MnR": 1.5}


def test_ties_count_against_the_query():
    sim = torch.zeros(3, 3)
    assert retrieval_ranks(sim, torch.arange(3)).tolist() == [3, 3, 3]


def test_best_of_several_positives():
    sim = torch.tensor([[0.1, 0.9, 0.5, 0.7]])
    positives = torch.tensor([[True, False, False, True]])
    assert retrieval_ranks(sim, positives).tolist() == [2]


def test_query_without_positive_is_an_error():
    with pytest.raises(ValueError, match="no correct gallery item"):
        retrieval_ranks(torch.zeros(2, 2), torch.tensor([[True, False], [False, False]]))


def test_multi_caption_and_padded_duplicates():
    """Two captions of video x, one of y; a DistributedSampler-style duplicate row is dropped."""
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.0, 1.0]])
    videos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    metric = RetrievalRecall(ks=(1,))
    metric.update(texts[:2], videos[:2], ["x", "y"])
    metric.update(texts[2:], videos[2:], ["x", "y"])  # caption 2 of x (closer to y); y again
    out = metric.compute()
    # text->video: 3 distinct captions; caption 2 of x is nearer y -> 2 of 3 at rank 1
    assert out["t2v/R@1"] == pytest.approx(2 / 3)
    assert out["t2v/MnR"] == pytest.approx(4 / 3)
    # video->text: x's best caption (its first) ranks 1st, y's caption ranks 1st
    assert out["v2t/R@1"] == 1.0


def test_random_embeddings_are_near_chance():
    g = torch.Generator().manual_seed(0)
    n = 200
    metric = RetrievalRecall(ks=(1, 10), names=("m", "d"))
    metric.update(
        torch.randn(n, 64, generator=g), torch.randn(n, 64, generator=g), [str(i) for i in range(n)]
    )
    out = metric.compute()
    assert set(out) == {f"{d}/{k}" for d in ("m2d", "d2m") for k in ("R@1", "R@10", "MdR", "MnR")}
    assert out["m2d/R@1"] < 0.05 and 60 < out["m2d/MdR"] < 140


# Hand-made caption x video similarities: videos x (2 captions), y (3 captions), z (1 caption).
#                           x     y     z
_SIMILARITY = [[0.90, 0.20, 0.55],  # x1
               [0.30, 0.80, 0.00],  # x2
               [0.70, 0.60, 0.60],  # y1
               [0.50, 0.40, 0.70],  # y2
               [0.10, 0.30, 0.00],  # y3
               [0.20, 0.10, 0.50]]  # z1  # fmt: skip
_OWNERS = ["x", "x", "y", "y", "y", "z"]


def _hand_made(v2t):
    """RetrievalRecall on _SIMILARITY: caption rows against one-hot video embeddings, dot product."""
    metric = RetrievalRecall(ks=(1, 2), normalize=False, v2t=v2t)
    captions = torch.tensor(_SIMILARITY)
    videos = torch.eye(3)[[{"x": 0, "y": 1, "z": 2}[v] for v in _OWNERS]]
    metric.update(captions[:4], videos[:4], _OWNERS[:4])
    metric.update(captions[4:], videos[4:], _OWNERS[4:])
    return metric.compute()


def test_v2t_all_captions_worked_example():
    """ALBEF / BLIP itm_eval: a video's gallery is every caption; its rank is its best caption's."""
    out = _hand_made("all_captions")
    # x: its x1 (0.9) is the top caption -> 1; y: best y1 0.6, x2 0.8 above -> 2;
    # z: z1 0.5, with x1 0.55, y1 0.6, y2 0.7 above -> 4
    assert out["v2t/R@1"] == pytest.approx(1 / 3) and out["v2t/R@2"] == pytest.approx(2 / 3)
    assert out["v2t/MdR"] == 2 and out["v2t/MnR"] == pytest.approx(7 / 3)
    # t2v is the same in both conventions: x1 1, x2 2, y1 3 (x 0.7 above, z's 0.6 tie counts
    # against), y2 3, y3 1, z1 1
    assert out["t2v/R@1"] == 0.5 and out["t2v/MdR"] == 1.5 and out["t2v/MnR"] == pytest.approx(11 / 6)


def test_v2t_per_video_max_worked_example():
    """CLIP4Clip multi-sentence: each video's captions are one gallery item scored by their max."""
    out = _hand_made("per_video_max")
    # video z against the caption sets: x max(0.55, 0.0) = 0.55, y max(0.6, 0.7, 0.0) = 0.7, z 0.5
    # -> rank 3 (two sets above, not four captions); x -> 1, y: x's set 0.8 > y's 0.6 -> 2
    assert out["v2t/R@1"] == pytest.approx(1 / 3) and out["v2t/R@2"] == pytest.approx(2 / 3)
    assert out["v2t/MdR"] == 2 and out["v2t/MnR"] == 2
    assert out["t2v/MnR"] == pytest.approx(11 / 6)  # t2v unchanged


def _clip4clip_v2t(sim, owners):
    """CLIP4Clip's multi-sentence v2t (main_task_retrieval.py + metrics.py), ported.

    ``sim`` is [captions, videos] with captions grouped by video in video order.
    """
    cut = np.cumsum(np.bincount(owners))
    max_len = int(np.bincount(owners).max())
    groups, start = [], 0
    for end in cut:
        pad = np.full((max_len - end + start, sim.shape[1]), -np.inf)
        groups.append(np.concatenate((sim[start:end], pad), axis=0))
        start = end
    sim_tensor = torch.tensor(np.stack(groups))  # [videos, max captions, videos]
    values, _ = torch.max(sim_tensor, dim=1, keepdim=True)  # tensor_video_to_text_sim
    x = torch.squeeze(values).T.numpy()
    sx = np.sort(-x, axis=1)  # compute_metrics
    d = np.diag(-x)[:, np.newaxis]
    ind = np.where(sx - d == 0)[1]
    return {"R@1": np.mean(ind == 0), "R@5": np.mean(ind < 5), "R@10": np.mean(ind < 10),
            "MdR": np.median(ind) + 1, "MnR": np.mean(ind) + 1}  # fmt: skip


def _albef_i2t(scores_i2t, img2txt):
    """ALBEF's itm_eval, image -> text part, ported (R@K as fractions)."""
    ranks = np.zeros(scores_i2t.shape[0])
    for index, score in enumerate(scores_i2t):
        inds = np.argsort(score)[::-1]
        rank = 1e20
        for i in img2txt[index]:
            tmp = np.where(inds == i)[0][0]
            if tmp < rank:
                rank = tmp
        ranks[index] = rank
    return {f"R@{k}": len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)}


@pytest.mark.parametrize("seed", [0, 1])
def test_v2t_conventions_match_clip4clip_and_albef(seed):
    rng = np.random.default_rng(seed)
    owners = np.sort(rng.integers(0, 30, 90))
    owners = np.unique(owners, return_inverse=True)[1]  # every video has a caption, 1 to ~8 each
    num_videos = owners.max() + 1
    sim = rng.normal(size=(len(owners), num_videos)) + 1.5 * np.eye(num_videos)[owners]
    ids = [f"v{o}" for o in owners]
    captions, videos = torch.tensor(sim), torch.eye(num_videos, dtype=torch.float64)[owners]
    out = {}
    for v2t in ("all_captions", "per_video_max"):
        metric = RetrievalRecall(normalize=False, v2t=v2t)
        metric.update(captions.float(), videos.float(), ids)
        out[v2t] = metric.compute()
    expected = _clip4clip_v2t(sim.astype(np.float32), owners)
    assert {k: out["per_video_max"][f"v2t/{k}"] for k in expected} == pytest.approx(expected)
    img2txt = [np.nonzero(owners == v)[0] for v in range(num_videos)]
    expected = _albef_i2t(sim.astype(np.float32).T, img2txt)
    assert {k: out["all_captions"][f"v2t/{k}"] for k in expected} == pytest.approx(expected)
    assert out["per_video_max"]["v2t/MnR"] < out["all_captions"]["v2t/MnR"]  # the data tells them apart


def test_ids_that_agree_in_float64_stay_apart():
    # two videos whose 64-bit ids differ only below float64's 53-bit mantissa, with the same caption
    # embedding: not duplicates of each other (the dedup once compared ids as float64)
    ids = torch.tensor([2**60, 2**60 + 1])
    texts = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    videos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    metric = RetrievalRecall(ks=(1,))
    metric.update(texts, videos, ids)
    out = metric.compute()
    # two queries and two videos (not one of each): the second caption's video ranks 2nd
    assert out["t2v/R@1"] == 0.5 and out["t2v/MnR"] == 1.5
    assert out["v2t/MnR"] == 2.0  # both videos tie their own caption with the other one


def test_errors():
    with pytest.raises(ValueError, match="v2t must be one of"):
        RetrievalRecall(v2t="clip4clip")
    with pytest.raises(RuntimeError, match="before any update"):
        RetrievalRecall().compute()


# -- bit-identity with the dense formulation this module replaced -------------------------------------


def _reference_ranks(similarity, positives):
    """vidlit's previous ``retrieval_ranks`` (dense one-hot and masked copies), verbatim."""
    if positives.ndim == 1:
        positives = torch.nn.functional.one_hot(positives.long(), similarity.shape[1]).bool()
    positives = positives.to(similarity.device).bool()
    similarity = similarity.float()
    best = similarity.masked_fill(~positives, float("-inf")).amax(dim=1, keepdim=True)
    return ((similarity >= best) & ~positives).sum(dim=1) + 1


def _random_similarity(seed, q, g, ties):
    gen = torch.Generator().manual_seed(seed)
    if ties:  # few distinct values: many exact ties, and a few NaN
        sim = torch.randint(0, 4, (q, g), generator=gen).float() / 4
        sim[torch.rand(q, g, generator=gen) < 0.01] = float("nan")
        return sim
    return torch.randn(q, g, generator=gen)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_ranks_identical_to_the_dense_formulation(seed, ties):
    q, g = [(1, 1), (37, 53), (300, 211)][seed]
    sim = _random_similarity(seed, q, g, ties)
    gen = torch.Generator().manual_seed(seed)
    index = torch.randint(0, g, (q,), generator=gen)
    assert torch.equal(retrieval_ranks(sim, index), _reference_ranks(sim, index))
    mask = torch.rand(q, g, generator=gen) < 0.1
    mask[torch.arange(q), index] = True
    assert torch.equal(retrieval_ranks(sim, mask), _reference_ranks(sim, mask))
    assert torch.equal(retrieval_ranks(sim.double(), mask), _reference_ranks(sim.double(), mask))
    # the chunked path used off the CPU gives the same ranks
    from vidlit.metrics.retrieval import _chunk_ranks

    assert torch.equal(_chunk_ranks(sim, mask, 0), _reference_ranks(sim, mask))
    # the column kernel of compute(): sim.T with caption groups
    from vidlit.metrics.retrieval import _column_ranks_of_owner

    owner = torch.randint(0, g, (q,), generator=gen)
    owned = torch.unique(owner)
    sub = sim[:, owned].contiguous()
    owner = torch.searchsorted(owned, owner)
    positives = owner[:, None] == torch.arange(len(owned))[None, :]
    ours = torch.from_numpy(_column_ranks_of_owner(sub.numpy(), owner.numpy(), len(owned)))
    assert torch.equal(ours, _reference_ranks(sub.T, positives.T))


def test_positive_index_outside_the_gallery_is_an_error():
    with pytest.raises(ValueError, match="query 1: positive index 3 is outside the gallery of 3"):
        retrieval_ranks(torch.zeros(2, 3), torch.tensor([0, 3]))


@pytest.mark.parametrize("v2t", ["all_captions", "per_video_max"])
def test_compute_identical_to_the_dense_formulation(v2t):
    from vidlit.core.ids import stable_ids
    from vidlit.metrics._state import first_occurrence

    gen = torch.Generator().manual_seed(0)
    ids = [f"v{int(i)}" for i in torch.randint(0, 40, (120,), generator=gen)]
    a = torch.randint(0, 3, (120, 4), generator=gen).float()  # coarse values: duplicates and ties
    b = torch.randn(40, 4, generator=gen)[[int(i[1:]) for i in ids]]
    metric = RetrievalRecall(ks=(1, 5), v2t=v2t)
    metric.update(a[:70], b[:70], ids[:70])
    metric.update(a[60:], b[60:], ids[60:])  # rows 60-69 again, as a sampler pads
    ours = metric.compute()
    # the previous compute(): whole-row unique over every row, dense positives
    a, b, keys = torch.cat([a[:70], a[60:]]), torch.cat([b[:70], b[60:]]), stable_ids(ids[:70] + ids[60:])
    _, key_index = first_occurrence(keys, return_inverse=True)
    first = first_occurrence(torch.cat([key_index[:, None].double(), a.double()], dim=1))
    a, b, keys = a[first], b[first], keys[first]
    gallery, owner = first_occurrence(keys, return_inverse=True)
    a, b = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(b[gallery], dim=-1)
    sim = a @ b.T
    positives = owner[:, None] == torch.arange(len(gallery))[None, :]
    ref = {f"t2v/{k}": v for k, v in _metrics(_reference_ranks(sim, positives)).items()}
    if v2t == "all_captions":
        ref.update({f"v2t/{k}": v for k, v in _metrics(_reference_ranks(sim.T, positives.T)).items()})
    else:
        n = len(gallery)
        grouped = sim.new_full((n, n), float("-inf")).scatter_reduce(
            0, owner[:, None].expand(-1, n), sim, reduce="amax"
        )
        ref.update({f"v2t/{k}": v for k, v in _metrics(_reference_ranks(grouped.T, torch.arange(n))).items()})
    assert ours == ref


def _metrics(ranks):
    ranks = ranks.float()
    out = {f"R@{k}": (ranks <= k).float().mean().item() for k in (1, 5)}
    out["MdR"] = ranks.quantile(0.5).item()
    out["MnR"] = ranks.mean().item()
    return out
