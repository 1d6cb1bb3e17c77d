"""Symmetric InfoNCE: worked values, fp32 under autocast, and the gathered loss across 2 gloo processes."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from vidlit.layers.contrastive import (
    MAX_LOGIT_SCALE,
    all_gather_with_grad,
    clip_logit_scale,
    contrastive_loss,
)


def reference_loss(video, text, scale):
    """CLIP's pseudo-code (Radford et al., 2021, Fig. 3): mean of the two cross-entropies."""
    logits = scale * video @ text.T
    labels = torch.arange(len(video))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def pairs(n=8, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        F.normalize(torch.randn(n, d, generator=g), dim=-1),
        F.normalize(torch.randn(n, d, generator=g), dim=-1),
    )


def test_matches_clip_pseudocode_and_a_worked_value():
    video, text = pairs()
    scale = torch.tensor(1 / 0.07)
    loss, logits = contrastive_loss(video, text, scale)
    assert loss.dtype == torch.float32 and logits.shape == (8, 8)
    torch.testing.assert_close(loss, reference_loss(video, text, scale))
    # worked example: two orthogonal pairs, perfectly aligned, scale 1:
    # each row's softmax is [e, 1] / (e + 1), so the loss is log(1 + 1/e)
    eye = torch.eye(2)
    loss, _ = contrastive_loss(eye, eye, torch.tensor(1.0))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))
    # a constant embedding cannot tell pairs apart: log(n)
    same = F.normalize(torch.ones(4, 3), dim=-1)
    assert contrastive_loss(same, same, torch.tensor(10.0))[0].item() == pytest.approx(math.log(4), abs=1e-5)


def test_logit_scale_is_clamped_like_clip():
    init = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    assert clip_logit_scale(init).item() == pytest.approx(1 / 0.07)
    high = torch.tensor(10.0, requires_grad=True)
    assert clip_logit_scale(high).item() == pytest.approx(MAX_LOGIT_SCALE)
    clip_logit_scale(high).backward()
    assert high.grad.item() == 0.0  # no gradient beyond the clip
    assert clip_logit_scale(torch.tensor(-3.0)).item() == pytest.approx(1.0)


def test_bf16_inputs_give_fp32_logits_under_autocast():
    video, text = pairs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logits = contrastive_loss(video.bfloat16(), text.bfloat16(), torch.tensor(50.0))
    assert loss.dtype == torch.float32 and logits.dtype == torch.float32
    expected = reference_loss(video.bfloat16().float(), text.bfloat16().float(), 50.0)
    torch.testing.assert_close(loss, expected)


def test_rejects_unpaired_embeddings():
    with pytest.raises(ValueError, match="paired"):
        contrastive_loss(torch.zeros(3, 4), torch.zeros(2, 4), torch.tensor(1.0))


def test_single_process_gather_is_the_identity():
    x = torch.randn(3, 4)
    gathered, offset = all_gather_with_grad(x)
    assert gathered is x and offset == 0


# -- two gloo processes ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASES = {"equal": [4, 4], "uneven": [5, 3]}  # rows per rank; uneven: a short last batch


def _setup(sizes: list[int]):
    """The same weights and data on every rank, as DDP starts."""
    torch.manual_seed(0)
    proj = torch.nn.Linear(6, 5)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    return proj, log_scale, torch.randn(sum(sizes), 6), F.normalize(torch.randn(sum(sizes), 5), dim=-1)


def _worker(rank: int, world: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for case, sizes in CASES.items():
            proj, log_scale, raw_video, raw_text = _setup(sizes)
            start = sum(sizes[:rank])
            video = raw_video[start : start + sizes[rank]].clone().requires_grad_(True)
            text = raw_text[start : start + sizes[rank]]
            loss, _ = contrastive_loss(F.normalize(proj(video), dim=-1), text, clip_logit_scale(log_scale))
            loss.backward()
            # what DDP does to parameter gradients: average them over ranks
            grads = [proj.weight.grad, proj.bias.grad, log_scale.grad]
            for g in grads:
                dist.all_reduce(g)
                g /= world
            results[(case, rank)] = {"loss": loss.detach(), "param_grads": grads, "input_grad": video.grad}
    finally:
        dist.destroy_process_group()


def test_gathered_loss_and_gradients_equal_the_full_batch_in_one_process():
    """Each of 2 gloo processes scores its rows against the gathered batch. The mean of their
    losses and the DDP-averaged parameter gradients equal one process computing the loss on the
    whole batch, and each input row's gradient is the full-batch one times the world size (which
    DDP's averaging divides out). Also with a short last batch (5 + 3 rows)."""
    world = 2
    results = mp.get_context("spawn").Manager().dict()
    mp.start_processes(
        _worker, args=(world, _free_port(), results), nprocs=world, join=True, start_method="spawn"
    )
    for case, sizes in CASES.items():
        proj, log_scale, raw_video, raw_text = _setup(sizes)
        video = raw_video.clone().requires_grad_(True)
        embedded = F.normalize(proj(video), dim=-1)
        loss, _ = contrastive_loss(embedded, raw_text, clip_logit_scale(log_scale))
        torch.testing.assert_close(loss, reference_loss(embedded, raw_text, clip_logit_scale(log_scale)))
        loss.backward()
        per_rank = [results[(case, r)] for r in range(world)]
        torch.testing.assert_close(sum(r["loss"] for r in per_rank) / world, loss.detach(), msg=case)
        for r in per_rank:
            for got, want in zip(r["param_grads"], [proj.weight.grad, proj.bias.grad, log_scale.grad]):
                torch.testing.assert_close(got, want, msg=case)
        input_grads = torch.cat([r["input_grad"] for r in per_rank])
        torch.testing.assert_close(input_grads / world, video.grad, msg=case)
