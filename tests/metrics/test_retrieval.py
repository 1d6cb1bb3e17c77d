"""Retrieval Recall@K / median rank, worked examples in the CLIP4Clip / ViCLIP protocol."""

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
