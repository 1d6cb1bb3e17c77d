"""Multi-head self-attention on PyTorch's fused ``scaled_dot_product_attention``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection and SDPA (flash / memory-efficient).

    Biases follow VideoMAE (Tong et al., 2022) and BEiT: a ``qkv`` ``Linear`` without bias plus
    separate ``q_bias`` and ``v_bias`` vectors and no key bias. A key bias only adds
    ``q . b_k``, the same for every key of a query, which softmax cancels, so dropping it loses
    nothing; keeping VideoMAE's parameter names lets its checkpoints load without reshaping.

    Shape legend: ``b`` batch, ``n`` tokens, ``h`` heads, ``d`` head width.

    Args:
        dim: token width.
        num_heads: attention heads; must divide ``dim``.
        qkv_bias: learn ``q_bias`` and ``v_bias``.
        attn_drop: dropout on attention weights (training only).
        proj_drop: dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.register_parameter("q_bias", None)
            self.register_parameter("v_bias", None)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def qkv_bias(self) -> Tensor | None:
        """The ``[3 * dim]`` bias of the fused projection: ``q_bias``, zeros, ``v_bias``."""
        if self.q_bias is None:
            return None
        return torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))

    def forward(self, x: Tensor) -> Tensor:
        """Attend over all tokens.

        Args:
            x: ``[b, n, h*d]`` tokens.

        Returns:
            ``[b, n, h*d]`` tokens.
        """
        qkv = F.linear(x, self.qkv.weight, self.qkv_bias())
        # Views into one buffer; SDPA takes the strided q/k/v without copies.
        q, k, v = rearrange(qkv, "b n (three h d) -> three b h n d", three=3, h=self.num_heads).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = rearrange(x, "b h n d -> b n (h d)")
        return self.proj_drop(self.proj(x))
