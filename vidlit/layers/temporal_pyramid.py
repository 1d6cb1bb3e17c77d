"""A multi-scale temporal feature pyramid of local (windowed) self-attention blocks.

The pieces of ActionFormer's backbone (Zhang et al., "ActionFormer: Localizing Moments of
Actions with Transformers", ECCV 2022, Sec. 3.2), written for ``[B, T, C]`` sequences with a
``[B, T]`` bool padding mask (True on real steps), so any temporal localization head can reuse
them:

- :class:`MaskedConv1d` and :class:`ConvEmbedding`: the convolutional projection of the input.
- :func:`local_attention`: multi-head attention in which step ``i`` only sees steps
  ``|i - j| <= window // 2``, computed with ``scaled_dot_product_attention`` over chunks.
- :class:`LocalAttention` and :class:`LocalTransformerBlock`: a pre-norm transformer block,
  optionally downsampling by 2 (ActionFormer's "MHCA": depthwise convs on queries, keys and
  values do the downsampling).
- :class:`TemporalPyramid`: embedding, a stem at full resolution and a branch that halves the
  resolution ``levels - 1`` times, one feature map per level.

Padding never leaks into real steps: every module zeroes padded steps of its output, so the
features of a clip do not depend on how much padding its batch added.

Shape legend: ``b`` batch, ``t`` steps, ``c`` channels, ``h`` heads, ``d`` channels per head,
``n`` chunks, ``q`` queries per chunk, ``k`` keys per chunk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import DropPath
from torch import Tensor, nn

from vidlit.layers.pos_embed import sincos_table

# queries per chunk of local attention: cost per query is CHUNK + window - 1 keys
CHUNK = 64


def _check_mask(x: Tensor, mask: Tensor) -> Tensor:
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask must be [B, T] = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    return mask.to(device=x.device, dtype=torch.bool)


def _masked(x: Tensor, mask: Tensor) -> Tensor:
    return x * mask[..., None].to(x.dtype)


def downsample_mask(mask: Tensor, stride: int) -> Tensor:
    """The mask of a sequence downsampled by ``stride``: output ``j`` is real iff input ``j * stride`` is.

    Equal to ActionFormer's nearest-neighbour interpolation of the mask.
    """
    return mask[:, ::stride]


class MaskedConv1d(nn.Module):
    """1-D convolution over ``[B, T, C]`` that ignores and zeroes padded steps.

    The weights are an ``nn.Conv1d``'s (``self.conv``, same state dict); the convolution runs as a
    channels-last 2-D convolution over the ``[B, T, C]`` memory, so no layout copies surround it.

    ``padding = kernel_size // 2``, so stride 1 keeps ``T`` and stride ``s`` gives ``T / s``
    steps, output ``j`` centred on input ``j * s``.

    Args:
        in_dim: input channels.
        out_dim: output channels.
        kernel_size: odd kernel size.
        stride: temporal stride; ``T`` must be divisible by it.
        groups: conv groups (``in_dim`` for depthwise).
        bias: add a bias (initialised to zero, as ActionFormer does).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"MaskedConv1d needs an odd kernel_size, got {kernel_size}")
        self.stride = stride
        self.conv = nn.Conv1d(
            in_dim, out_dim, kernel_size, stride, kernel_size // 2, groups=groups, bias=bias
        )
        if bias:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, T, C_in]``, ``[B, T]`` -> ``[B, T / stride, C_out]``, ``[B, T / stride]``."""
        mask = _check_mask(x, mask)
        if x.shape[1] % self.stride:
            raise ValueError(f"MaskedConv1d: length {x.shape[1]} is not divisible by stride {self.stride}")
        conv = self.conv
        # [B, T, C] memory read as [B, C, 1, T] in channels-last layout: the 2-D convolution reads
        # and writes the sequence layout directly, with no transposed copies around it (conv1d would
        # copy its input to [B, C, T] and hand back a transposed view)
        image = x.mul(mask[..., None].to(x.dtype)).transpose(1, 2).unsqueeze(2)  # b c 1 t
        weight = conv.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # o c/g 1 k
        out = F.conv2d(image, weight, conv.bias, (1, self.stride), (0, conv.padding[0]), 1, conv.groups)
        out_mask = downsample_mask(mask, self.stride)
        return _masked(out.squeeze(2).transpose(1, 2), out_mask), out_mask  # b t c


class ConvEmbedding(nn.Module):
    """Project input features with ``layers`` x (masked conv, LayerNorm, ReLU), ActionFormer's "embedding".

    Args:
        in_dim: input channels.
        dim: output channels.
        layers: number of conv layers.
        kernel_size: odd kernel size.
        norm: LayerNorm after each conv (the conv then has no bias).
    """

    def __init__(self, in_dim: int, dim: int, layers: int = 2, kernel_size: int = 3, norm: bool = True):
        super().__init__()
        self.convs = nn.ModuleList(
            MaskedConv1d(in_dim if i == 0 else dim, dim, kernel_size, bias=not norm) for i in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) if norm else nn.Identity() for _ in range(layers))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``[B, T, C_in]``, ``[B, T]`` -> ``[B, T, dim]``."""
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x, _ = conv(x, mask)
            x = _masked(F.relu(norm(x)), mask)
        return x


def local_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor, window: int | None, dropout_p: float = 0.0
) -> Tensor:
    """Multi-head self-attention restricted to a window, skipping padded keys.

    Query ``i`` attends to keys ``j`` with ``|i - j| <= window // 2`` and ``mask[j]`` True
    (ActionFormer's local attention, Sec. 3.2). The sequence is cut into chunks of
    ``CHUNK`` queries that each see their ``CHUNK + 2 * (window // 2)`` surrounding keys, so
    memory grows linearly with ``T``. Every query also sees itself, so a padded query never
    has an empty row (its output is garbage the caller masks out).

    Args:
        q: ``[B, H, T, D]`` queries (unscaled).
        k: ``[B, H, T, D]`` keys.
        v: ``[B, H, T, D]`` values.
        mask: ``[B, T]`` bool, True on real steps.
        window: odd window size; None for global attention.
        dropout_p: attention dropout probability.

    Returns:
        ``[B, H, T, D]``.
    """
    b, _, t, _ = q.shape
    if window is None:
        keep = mask[:, None, None, :] | torch.eye(t, dtype=torch.bool, device=q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout_p)
    if window < 1 or window % 2 != 1:
        raise ValueError(
            f"local attention window must be odd and positive (or None for global), got {window}"
        )
    r = window // 2
    chunk = min(max(CHUNK, window), t)
    pad = -t % chunk
    n = (t + pad) // chunk
    q = F.pad(q, (0, 0, 0, pad))
    k, v = (F.pad(x, (0, 0, r, pad + r)) for x in (k, v))
    key_mask = F.pad(mask, (r, pad + r), value=False)
    # overlapping key windows: chunk i sees padded positions [i * chunk, i * chunk + chunk + 2r)
    k, v = (rearrange(x.unfold(2, chunk + 2 * r, chunk), "b h n d k -> (b n) h k d") for x in (k, v))
    key_mask = rearrange(key_mask.unfold(1, chunk + 2 * r, chunk), "b n k -> (b n) 1 1 k")
    offset = (
        torch.arange(chunk + 2 * r, device=q.device)[None, :]
        - r
        - torch.arange(chunk, device=q.device)[:, None]
    )
    keep = (offset.abs() <= r) & key_mask | (offset == 0)  # (b n) 1 q k
    q = rearrange(q, "b h (n q) d -> (b n) h q d", n=n)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout_p)
    return rearrange(out, "(b n) h q d -> b h (n q) d", b=b)[:, :, :t]


class LocalAttention(nn.Module):
    """Masked multi-head local self-attention with depthwise-conv query/key/value (ActionFormer's MHCA).

    Queries, keys and values each go through a depthwise conv (kernel 3, or ``stride + 1``
    when downsampling) and a LayerNorm before their linear projections; the conv adds local
    context and, with ``stride`` 2, halves the sequence (Sec. 3.2, "downsampling"). With
    stride 1, output step ``i`` depends on input steps ``|i - j| <= window // 2 + 1`` only
    (the window, widened by the kernel-3 convs).

    Args:
        dim: channels.
        heads: attention heads (must divide ``dim``).
        window: odd attention window in output steps; None for global attention.
        stride: 1, or an even downsampling factor.
        attn_dropout: dropout on attention weights.
        proj_dropout: dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        window: int | None = 9,
        stride: int = 1,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        if stride != 1 and stride % 2:
            raise ValueError(f"stride must be 1 or even, got {stride}")
        self.heads = heads
        self.window = window
        self.attn_dropout = attn_dropout
        kernel = stride + 1 if stride > 1 else 3
        self.q_conv, self.k_conv, self.v_conv = (
            MaskedConv1d(dim, dim, kernel, stride, groups=dim, bias=False) for _ in range(3)
        )
        self.q_norm, self.k_norm, self.v_norm = (nn.LayerNorm(dim) for _ in range(3))
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))
        self.proj_drop = nn.Dropout(proj_dropout)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, T, C]``, ``[B, T]`` -> ``[B, T / stride, C]``, ``[B, T / stride]``."""
        q, out_mask = self.q_conv(x, mask)
        k, _ = self.k_conv(x, mask)
        v, _ = self.v_conv(x, mask)
        q, k, v = (
            rearrange(lin(norm(y)), "b t (h d) -> b h t d", h=self.heads)
            for y, norm, lin in ((q, self.q_norm, self.q), (k, self.k_norm, self.k), (v, self.v_norm, self.v))
        )
        # k and v come from the same downsampled positions as q (ActionFormer uses equal strides)
        out = local_attention(q, k, v, out_mask, self.window, self.attn_dropout if self.training else 0.0)
        out = self.proj_drop(self.proj(rearrange(out, "b h t d -> b t (h d)")))
        return _masked(out, out_mask), out_mask


class LayerScale(nn.Module):
    """Per-channel learnable residual scale (CaiT), initialised small: ActionFormer's ``AffineDropPath``."""

    def __init__(self, dim: int, init: float = 1e-4):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class LocalTransformerBlock(nn.Module):
    """Pre-norm transformer block with local self-attention, optionally downsampling by ``stride``.

    ``x' = skip(x) + drop_path(ls1 * attn(norm1(x)))``, ``y = x' + drop_path(ls2 * mlp(norm2(x')))``,
    where ``skip`` is identity, or a max-pool (kernel ``stride + 1``) when downsampling, as in
    ActionFormer's ``TransformerBlock`` (Sec. 3.2).

    Args:
        dim: channels.
        heads: attention heads.
        window: odd attention window; None for global attention.
        stride: 1, or an even downsampling factor.
        mlp_ratio: MLP hidden channels / ``dim``.
        dropout: dropout after the attention projection and in the MLP.
        attn_dropout: dropout on attention weights.
        drop_path: stochastic-depth probability of each residual branch.
        layer_scale_init: initial LayerScale of both branches; None disables it.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        window: int | None = 9,
        stride: int = 1,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init: float | None = None,
    ):
        super().__init__()
        self.stride = stride
        self.norm1 = nn.LayerNorm(dim)
        self.attn = LocalAttention(dim, heads, window, stride, attn_dropout, dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )
        scale = (lambda: LayerScale(dim, layer_scale_init)) if layer_scale_init is not None else nn.Identity
        self.ls1, self.ls2 = scale(), scale()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, T, C]``, ``[B, T]`` -> ``[B, T / stride, C]``, ``[B, T / stride]``."""
        mask = _check_mask(x, mask)
        out, out_mask = self.attn(_masked(self.norm1(x), mask), mask)
        skip = x
        if self.stride > 1:
            s = self.stride
            # [B, T, C] read as channels-last [B, C, 1, T]: pooled in place of layout, so the
            # result is a plain [B, T / s, C] again (max_pool1d would copy to [B, C, T] and back)
            image = x.transpose(1, 2).unsqueeze(2)  # b c 1 t
            skip = F.max_pool2d(image, (1, s + 1), (1, s), (0, (s + 1) // 2)).squeeze(2).transpose(1, 2)
        x = _masked(skip, out_mask) + self.drop_path(self.ls1(out))
        x = x + self.drop_path(self.ls2(_masked(self.mlp(self.norm2(x)), out_mask)))
        return x, out_mask


class TemporalPyramid(nn.Module):
    """ActionFormer's encoder: conv embedding, a full-resolution stem and a downsampling branch.

    The output has ``levels`` feature maps; level ``l`` has stride ``2**l`` (step ``j`` of level
    ``l`` sits at input step ``j * 2**l``). Inputs are zero-padded to a multiple of
    ``2**(levels - 1)`` first, so every level has a whole number of steps.

    Args:
        in_dim: input channels.
        dim: channels of every level.
        heads: attention heads.
        levels: pyramid levels (the branch has ``levels - 1`` stride-2 blocks).
        window: odd local-attention window, one for all levels or one per level; None for
            global attention.
        embed_layers: conv layers of the embedding.
        embed_kernel_size: kernel size of the embedding convs.
        stem_layers: full-resolution transformer blocks.
        mlp_ratio: MLP hidden channels / ``dim``.
        dropout: dropout in the transformer blocks.
        attn_dropout: dropout on attention weights.
        drop_path: stochastic depth of every block (constant, as ActionFormer).
        layer_scale_init: LayerScale init of the residual branches; None disables it.
        abs_pos_embed: add a fixed sinusoidal position encoding (scaled by ``dim**-0.5``)
            after the embedding.
        max_seq_len: length of that encoding; longer inputs stretch it by linear interpolation.
        out_norm: LayerNorm on every output level (ActionFormer's identity "neck").
    """

    def __init__(
        self,
        in_dim: int,
        dim: int = 512,
        heads: int = 4,
        levels: int = 6,
        window: int | None | Sequence[int | None] = 9,
        embed_layers: int = 2,
        embed_kernel_size: int = 3,
        stem_layers: int = 2,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init: float | None = None,
        abs_pos_embed: bool = False,
        max_seq_len: int = 1024,
        out_norm: bool = True,
    ):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        windows = list(window) if isinstance(window, Sequence) else [window] * levels
        if len(windows) != levels:
            raise ValueError(f"window gives {len(windows)} sizes for {levels} levels")
        self.levels = levels
        self.dim = dim
        self.embed = ConvEmbedding(in_dim, dim, embed_layers, embed_kernel_size)
        block = dict(
            heads=heads, mlp_ratio=mlp_ratio, dropout=dropout, attn_dropout=attn_dropout,
            drop_path=drop_path, layer_scale_init=layer_scale_init,
        )  # fmt: skip
        self.stem = nn.ModuleList(
            LocalTransformerBlock(dim, window=windows[0], **block) for _ in range(stem_layers)
        )
        self.branch = nn.ModuleList(
            LocalTransformerBlock(dim, window=windows[level], stride=2, **block) for level in range(1, levels)
        )
        self.out_norms = nn.ModuleList(
            nn.LayerNorm(dim) if out_norm else nn.Identity() for _ in range(levels)
        )
        if abs_pos_embed:
            self.register_buffer(
                "pos_embed", sincos_table(max_seq_len, dim)[0] / math.sqrt(dim), persistent=False
            )
        else:
            self.pos_embed = None
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d)) and module.bias is not None:
                nn.init.zeros_(module.bias)

    @property
    def multiple(self) -> int:
        """Inputs are padded to a multiple of this many steps."""
        return 2 ** (self.levels - 1)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Encode a padded batch.

        Args:
            x: ``[B, T, C_in]``.
            mask: ``[B, T]`` bool, True on real steps.

        Returns:
            ``levels`` features ``[B, T_l, dim]`` and masks ``[B, T_l]``, with
            ``T_l = ceil(T / 2**(levels-1)) * 2**(levels-1) / 2**l``.
        """
        mask = _check_mask(x, mask)
        pad = -x.shape[1] % self.multiple
        x, mask = F.pad(x, (0, 0, 0, pad)), F.pad(mask, (0, pad), value=False)
        x = self.embed(x, mask)
        if self.pos_embed is not None:
            t = x.shape[1]
            pe = self.pos_embed
            if t > pe.shape[0]:
                pe = rearrange(F.interpolate(rearrange(pe, "t c -> 1 c t"), t, mode="linear"), "1 c t -> t c")
            x = x + _masked(pe[:t].expand_as(x), mask)
        for block in self.stem:
            x, mask = block(x, mask)
        feats, masks = [x], [mask]
        for block in self.branch:
            x, mask = block(x, mask)
            feats.append(x)
            masks.append(mask)
        feats = [_masked(norm(f), m) for norm, f, m in zip(self.out_norms, feats, masks, strict=True)]
        return feats, masks
