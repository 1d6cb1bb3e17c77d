"""Symmetric InfoNCE over paired embeddings, gathered across processes with gradients.

The contrastive objective of CLIP (Radford et al., 2021, "Learning Transferable Visual Models
From Natural Language Supervision", Fig. 3) as video-text models train it (ViCLIP and
InternVideo, Wang et al., 2022/2023): for ``N`` pairs, the ``N x N`` cosine similarities scaled by
a learned temperature are the logits of two ``N``-way classifications (each video picks its
caption among the batch's captions, each caption its video), and the loss is the mean of the two
cross-entropies. Under data parallelism the negatives are the whole global batch: every process
gathers the embeddings of all processes, keeping the autograd graph to its own slice, as
open_clip's ``ClipLoss(gather_with_grad=True, local_loss=True)`` does.

Numerics: the similarity matrix, the temperature and the softmax run in float32 with autocast
disabled, whatever the training precision: bf16 keeps 8 bits of mantissa, and logits up to 100
(the clamped temperature) would be quantized in steps of 0.5.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MAX_LOGIT_SCALE", "all_gather_with_grad", "clip_logit_scale", "contrastive_loss"]

# CLIP clips the learned temperature so logits are scaled by at most 100 (Radford et al., 2021, Sec. 2.5)
MAX_LOGIT_SCALE = 100.0


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather ``[n_r, d]`` slices of different lengths; the backward pass sums every process's
    gradient for this process's slice (an all-reduce, which every backend, gloo included, has)."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], group) -> Tensor:  # type: ignore[override]
        rank = dist.get_rank(group)
        ctx.group, ctx.sizes, ctx.rank = group, sizes, rank
        longest = max(sizes)
        padded = x.new_zeros((longest, *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous(), group=group)
        return torch.cat([part[:size] for part, size in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def _distributed(group=None) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def all_gather_with_grad(x: Tensor, group=None) -> tuple[Tensor, int]:
    """Concatenate every process's ``[n_r, ...]`` tensor along dim 0, differentiably.

    Processes may hold different numbers of rows (a last, short batch). Gradients flow back to
    each process's own rows and are summed over processes, so that after data parallelism
    averages parameter gradients over the ``W`` processes, the update is the gradient of the mean
    of the processes' losses (see :func:`contrastive_loss`).

    Args:
        x: this process's rows.
        group: process group; the default group when None.

    Returns:
        ``(gathered [sum_r n_r, ...], offset)``: all rows in rank order, and where this process's
        rows start in them. Without an initialized process group of more than one process, ``x``
        itself and 0.
    """
    if not _distributed(group):
        return x, 0
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, size, group=group)
    sizes = [int(s.item()) for s in sizes]
    rank = dist.get_rank(group)
    return _AllGatherWithGrad.apply(x, sizes, group), sum(sizes[:rank])


def clip_logit_scale(log_scale: Tensor, max_scale: float = MAX_LOGIT_SCALE) -> Tensor:
    """``exp(log_scale)`` with ``log_scale`` clamped to ``[0, log(max_scale)]``, in float32.

    CLIP learns the inverse temperature in log space, initialized at ``log(1 / 0.07)``, and clips
    it to 100; clamping here (rather than in place after the optimizer step, as open_clip does)
    gives the same logits and no gradient beyond the limit.
    """
    return log_scale.float().clamp(0.0, math.log(max_scale)).exp()


def _multi_positive_nll(logits: Tensor, positive: Tensor) -> Tensor:
    """``sum_i -log(sum_{j in pos(i)} exp(l_ij) / sum_j exp(l_ij))`` of ``[b, n]`` logits."""
    return (logits.logsumexp(-1) - logits.masked_fill(~positive, float("-inf")).logsumexp(-1)).sum()


def contrastive_loss(
    video: Tensor,
    text: Tensor,
    logit_scale: Tensor,
    gather: bool = True,
    group=None,
    keys: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Symmetric InfoNCE of paired, L2-normalized embeddings (CLIP's loss).

    Row ``i`` of ``video`` and row ``i`` of ``text`` are a positive pair; every other row of the
    (global) batch is a negative. With ``keys``, rows with equal keys are the same item (several
    dances of one music window, several clips of one caption): every such pair is a positive,
    and each query's term is the multi-positive NCE of MIL-NCE (Miech et al., CVPR 2020),
    ``-log(sum_pos exp(s) / sum_all exp(s))``; with distinct keys it equals CLIP's loss.
    With ``gather`` under ``torch.distributed``, each process scores
    its own rows against the rows of all processes and returns
    ``W / N * sum of its rows' cross-entropies`` (``W`` processes, ``N`` rows in all), so the mean
    of the processes' losses, which data parallelism's gradient averaging optimizes, is exactly the
    loss of the whole global batch computed in one process.

    Shape legend: ``b`` this process's pairs, ``n`` all processes' pairs, ``d`` embedding width.

    Args:
        video: ``[b, d]`` video embeddings, L2-normalized.
        text: ``[b, d]`` text embeddings of the same clips, L2-normalized.
        logit_scale: scalar inverse temperature (already exponentiated and clamped, see
            :func:`clip_logit_scale`).
        gather: gather negatives from every process (a no-op in a single process).
        group: process group for the gather.
        keys: ``[b]`` int64 item keys (gathered with the embeddings); None: row ``i`` is only
            its own pair's positive.

    Returns:
        ``(loss, logits)``: the scalar loss (float32) and this process's video-to-text logits
        ``[b, n]`` (float32, detached), e.g. for an in-batch accuracy.
    """
    if video.ndim != 2 or video.shape != text.shape:
        raise ValueError(
            f"video and text embeddings must be paired [batch, dim] tensors, got {tuple(video.shape)} "
            f"and {tuple(text.shape)}"
        )
    if keys is not None and keys.shape != video.shape[:1]:
        raise ValueError(f"keys must be [{video.shape[0]}] (one per pair), got {tuple(keys.shape)}")
    with torch.autocast(video.device.type, enabled=False):
        video, text = video.float(), text.float()
        scale = logit_scale.float()
        if gather:
            all_video, offset = all_gather_with_grad(video, group)
            all_text, _ = all_gather_with_grad(text, group)
        else:
            all_video, all_text, offset = video, text, 0
        logits_v2t = scale * video @ all_text.T  # b n
        logits_t2v = scale * text @ all_video.T  # b n
        if keys is None:
            labels = torch.arange(offset, offset + video.shape[0], device=video.device)
            total = F.cross_entropy(logits_v2t, labels, reduction="sum")
            total = total + F.cross_entropy(logits_t2v, labels, reduction="sum")
        else:
            all_keys = all_gather_with_grad(keys, group)[0] if gather else keys
            positive = keys[:, None] == all_keys[None, :]  # b n
            total = _multi_positive_nll(logits_v2t, positive) + _multi_positive_nll(logits_t2v, positive)
        world = dist.get_world_size(group) if gather and _distributed(group) else 1
        loss = total / 2 * world / all_video.shape[0]
    return loss, logits_v2t.detach()
