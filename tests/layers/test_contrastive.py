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


# -- parity with the session-2 code: CLIP's loss and MuDaR's multi-positive loss, now one function --


def _old_contrastive_loss(video, text, logit_scale):
    """contrastive_loss before it took ``keys`` (single process), verbatim."""
    with torch.autocast(video.device.type, enabled=False):
        video, text, scale = video.float(), text.float(), logit_scale.float()
        labels = torch.arange(video.shape[0])
        logits_v2t = scale * video @ text.T
        logits_t2v = scale * text @ video.T
        total = F.cross_entropy(logits_v2t, labels, reduction="sum")
        total = total + F.cross_entropy(logits_t2v, labels, reduction="sum")
        return total / 2 * 1 / video.shape[0]


def _old_multi_positive_info_nce(dance, music, keys, logit_scale):
    """vidlit.heads.music_dance.multi_positive_info_nce before it called contrastive_loss, verbatim."""
    with torch.autocast(dance.device.type, enabled=False):
        dance, music, scale = dance.float(), music.float(), logit_scale.float()
        positive = keys[:, None] == keys[None, :]
        total = dance.new_zeros(())
        for logits in (scale * dance @ music.T, scale * music @ dance.T):
            total = (
                total
                - (logits.masked_fill(~positive, float("-inf")).logsumexp(-1) - logits.logsumexp(-1)).sum()
            )
        return total / 2 * 1 / dance.shape[0]


def _value_and_grads(fn, video, text, log_scale):
    video, text = video.clone().requires_grad_(True), text.clone().requires_grad_(True)
    log_scale = log_scale.clone().requires_grad_(True)
    loss = fn(video, text, clip_logit_scale(log_scale))
    loss.backward()
    return loss.detach(), video.grad, text.grad, log_scale.grad


KEYS = {
    "distinct": torch.arange(8),
    "shared": torch.tensor([0, 0, 1, 2, 2, 2, 3, 4]),
    "one_item": torch.zeros(8, dtype=torch.long),
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("keys", list(KEYS))
def test_keys_give_the_old_multi_positive_loss_and_no_keys_the_old_clip_loss(seed, keys):
    video, text = pairs(seed=seed)
    log_scale = torch.tensor(math.log(1 / 0.07) + seed)
    k = KEYS[keys]
    new = _value_and_grads(lambda v, t, s: contrastive_loss(v, t, s, keys=k)[0], video, text, log_scale)
    old = _value_and_grads(lambda v, t, s: _old_multi_positive_info_nce(v, t, k, s), video, text, log_scale)
    for got, want in zip(new, old):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    new = _value_and_grads(lambda v, t, s: contrastive_loss(v, t, s)[0], video, text, log_scale)
    old = _value_and_grads(_old_contrastive_loss, video, text, log_scale)
    for got, want in zip(new, old):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    if keys == "distinct":  # distinct keys are CLIP's loss
        torch.testing.assert_close(
            contrastive_loss(video, text, torch.tensor(5.0), keys=k)[0],
            contrastive_loss(video, text, torch.tensor(5.0))[0],
        )


def test_rejects_keys_of_the_wrong_length():
    video, text = pairs()
    with pytest.raises(ValueError, match="keys must be"):
        contrastive_loss(video, text, torch.tensor(1.0), keys=torch.arange(7))


# -- two gloo processes ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# rows per rank; uneven: a short last batch; shared_keys: items with several rows, one across ranks
CASES = {"equal": [4, 4], "uneven": [5, 3], "shared_keys": [5, 3]}
CASE_KEYS = {"shared_keys": torch.tensor([0, 1, 1, 2, 3, 3, 3, 4])}


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
            keys = CASE_KEYS[case][start : start + sizes[rank]] if case in CASE_KEYS else None
            loss, _ = contrastive_loss(
                F.normalize(proj(video), dim=-1), text, clip_logit_scale(log_scale), keys=keys
            )
            loss.backward()
            # what DDP does to parameter gradients: average them over ranks
            grads = [proj.weight.grad, proj.bias.grad, log_scale.grad]
            for g in grads:
                dist.all_reduce(g)
                g /= world
            results[(case, rank)] = {"loss": loss.detach(), "param_grads": grads, "input_grad": video.grad}
    finally:
        dist.destroy_process_group()


@pytest.mark.exclusive  # two processes
def test_gathered_loss_and_gradients_equal_the_full_batch_in_one_process():
    """Each of 2 gloo processes scores its rows against the gathered batch. The mean of their
    losses and the DDP-averaged parameter gradients equal one process computing the loss on the
    whole batch, and each input row's gradient is the full-batch one times the world size (which
    DDP's averaging divides out). Also with a short last batch (5 + 3 rows), and with ``keys``
    shared by rows of both processes (multi-positive)."""
    world = 2
    results = mp.get_context("spawn").Manager().dict()
    mp.start_processes(
        _worker, args=(world, _free_port(), results), nprocs=world, join=True, start_method="spawn"
    )
    for case, sizes in CASES.items():
        proj, log_scale, raw_video, raw_text = _setup(sizes)
        video = raw_video.clone().requires_grad_(True)
        embedded = F.normalize(proj(video), dim=-1)
        if case in CASE_KEYS:
            keys = CASE_KEYS[case]
            loss, _ = contrastive_loss(embedded, raw_text, clip_logit_scale(log_scale), keys=keys)
            expected = _old_multi_positive_info_nce(embedded, raw_text, keys, clip_logit_scale(log_scale))
        else:
            loss, _ = contrastive_loss(embedded, raw_text, clip_logit_scale(log_scale))
            expected = reference_loss(embedded, raw_text, clip_logit_scale(log_scale))
        torch.testing.assert_close(loss, expected)
        loss.backward()
        per_rank = [results[(case, r)] for r in range(world)]
        torch.testing.assert_close(sum(r["loss"] for r in per_rank) / world, loss.detach(), msg=case)
        for r in per_rank:
            for got, want in zip(r["param_grads"], [proj.weight.grad, proj.bias.grad, log_scale.grad]):
                torch.testing.assert_close(got, want, msg=case)
        input_grads = torch.cat([r["input_grad"] for r in per_rank])
        torch.testing.assert_close(input_grads / world, video.grad, msg=case)
