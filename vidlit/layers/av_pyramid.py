"""MM-Pyramid: a multimodal temporal pyramid of windowed attention and dilated convolutions.

The shared multi-scale block of Yu et al., "MM-Pyramid: Multimodal Pyramid Attentional Network
for Audio-Visual Event Localization and Video Parsing" (ACM MM 2022), for per-segment audio and
visual features ``[B, T, C]`` with an optional ``[B, T]`` bool padding mask (True on real steps):

- :class:`WindowedAttentionLayer`: a pre-norm transformer layer (attention + FFN) whose queries
  attend to keys of the same or the other modality within a window, via
  :func:`vidlit.layers.temporal_pyramid.local_attention`.
- :class:`DilatedConvBlock`: the "dilated convolution block" (a TCN residual block): dilated
  conv, ReLU, 1x1 conv, residual, ReLU.
- :class:`PyramidUnit`: one level of the "attentive feature pyramid module" (Sec. 3.2): windowed
  self-attention per modality and cross-modal attention, fused by sigmoid gates, then a
  dilated conv block per modality.
- :class:`MMPyramid`: ``num_levels`` stacked units (dilation ``2**l``, window ``2 * d + 1``
  as in the official code), then the "adaptive semantic fusion module" (Sec. 3.3): attention
  over each segment's levels and a sigmoid-weighted sum of the levels.

Following the official implementation, unit ``l`` attends within ``|i - j| <= dilations[l]``
(its ``masksize = 2 * dilation``), the cross-modal layer is shared by both directions
(visual->audio and audio->visual), and the level weights are independent sigmoids (not a
softmax), summed without normalisation.

Padding never leaks into real steps: padded keys are skipped, padded steps are zeroed before
every convolution and in every output.

Shape legend: ``b`` batch, ``t`` segments, ``c`` channels, ``h`` heads, ``d`` channels per
head, ``l`` pyramid levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vidlit.layers.temporal_pyramid import _check_mask, _masked, local_attention

DEFAULT_DILATIONS = (1, 2, 4, 8)


class WindowedAttentionLayer(nn.Module):
    """Pre-norm transformer layer whose queries attend to a (possibly other) sequence within a window.

    ``x' = x + drop(attn(norm_q(x), norm_kv(context)))``, ``y = x' + drop(ffn(norm_ffn(x')))``:
    the ``TransformerLayer`` of MM-Pyramid's official code (with the key/value stream also
    layer-normed). Query ``i`` sees context steps ``|i - j| <= window // 2`` that are real.

    Args:
        dim: channels.
        num_heads: attention heads (must divide ``dim``).
        window: odd attention window; None for global attention.
        ffn_dim: FFN hidden channels (default ``dim``; the official AVE setting uses 512 = ``dim``).
        dropout: dropout on attention weights, after attention and in the FFN.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        window: int | None = 3,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if window is not None and (window < 1 or window % 2 != 1):
            raise ValueError(f"attention window must be odd and positive (or None), got {window}")
        self.num_heads = num_heads
        self.window = window
        self.dropout = dropout
        self.norm_q, self.norm_kv, self.norm_ffn = (nn.LayerNorm(dim) for _ in range(3))
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))
        hidden = ffn_dim or dim
        self.ffn = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """Attend from ``x`` to ``context``.

        Args:
            x: ``[B, T, C]`` queries.
            context: ``[B, T, C]`` keys and values (``x`` itself for self-attention).
            mask: ``[B, T]`` bool, True on real steps (shared by both sequences).

        Returns:
            ``[B, T, C]``, zero on padded steps.
        """
        kv = self.norm_kv(context)
        q, k, v = (
            rearrange(lin(y), "b t (h d) -> b h t d", h=self.num_heads)
            for lin, y in ((self.q, self.norm_q(x)), (self.k, kv), (self.v, kv))
        )
        out = local_attention(q, k, v, mask, self.window, self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(rearrange(out, "b h t d -> b t (h d)")))
        x = x + self.drop(self.ffn(self.norm_ffn(x)))
        return _masked(x, mask)


class DilatedConvBlock(nn.Module):
    """TCN residual block: ``relu(x + conv1x1(relu(dilated_conv(x))))``, padded steps zeroed.

    Args:
        dim: channels.
        dilation: temporal dilation of the kernel-3 convolution (``T`` is kept).
        kernel_size: odd kernel size.
    """

    def __init__(self, dim: int, dilation: int = 1, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"DilatedConvBlock needs an odd kernel_size, got {kernel_size}")
        if dilation < 1:
            raise ValueError(f"dilation must be >= 1, got {dilation}")
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation)
        self.pointwise = nn.Conv1d(dim, dim, 1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``[B, T, C]``, ``[B, T]`` -> ``[B, T, C]``."""
        x = _masked(x, mask)
        out = self.pointwise(F.relu(self.conv(rearrange(x, "b t c -> b c t"))))
        return _masked(F.relu(x + rearrange(out, "b c t -> b t c")), mask)


class PyramidUnit(nn.Module):
    """One MM-Pyramid unit: gated windowed self-/cross-modal attention, then a dilated conv block.

    For each modality ``m`` with other modality ``o`` (Sec. 3.2, "fixed-size attention block"):
    ``s = SA_m(x_m)``, ``c = CA(x_m -> x_o)``,
    ``z = sigmoid(W1 [s; c]) * s + sigmoid(W2 [s; c]) * c``, then ``y_m = DilatedConv_m(z)``.
    The self-attention layers are per modality; the cross-modal layer is shared by both
    directions, as in the official code.

    Args:
        dim: channels of both modalities.
        dilation: dilation of the conv block.
        window: odd attention window; default ``2 * dilation + 1`` (the official ``masksize``).
        num_heads: attention heads.
        dropout: dropout in the attention layers.
        ffn_dim: FFN hidden channels (default ``dim``).
    """

    def __init__(
        self,
        dim: int,
        dilation: int = 1,
        window: int | None = None,
        num_heads: int = 4,
        dropout: float = 0.1,
        ffn_dim: int | None = None,
    ):
        super().__init__()
        window = 2 * dilation + 1 if window is None else window
        layer = dict(num_heads=num_heads, window=window, ffn_dim=ffn_dim, dropout=dropout)
        self.self_audio = WindowedAttentionLayer(dim, **layer)
        self.self_visual = WindowedAttentionLayer(dim, **layer)
        self.cross = WindowedAttentionLayer(dim, **layer)
        self.gate_audio = nn.Linear(2 * dim, 2 * dim)
        self.gate_visual = nn.Linear(2 * dim, 2 * dim)
        self.conv_audio = DilatedConvBlock(dim, dilation)
        self.conv_visual = DilatedConvBlock(dim, dilation)

    @staticmethod
    def _gated(gate: nn.Linear, s: Tensor, c: Tensor) -> Tensor:
        g_s, g_c = torch.sigmoid(gate(torch.cat((s, c), dim=-1))).chunk(2, dim=-1)
        return g_s * s + g_c * c

    def forward(self, audio: Tensor, visual: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, T, C]`` x2, ``[B, T]`` -> audio and visual ``[B, T, C]``."""
        a_self, a_cross = self.self_audio(audio, audio, mask), self.cross(audio, visual, mask)
        v_self, v_cross = self.self_visual(visual, visual, mask), self.cross(visual, audio, mask)
        a, v = self._gated(self.gate_audio, a_self, a_cross), self._gated(self.gate_visual, v_self, v_cross)
        return self.conv_audio(a, mask), self.conv_visual(v, mask)


class LevelFusion(nn.Module):
    """MM-Pyramid's adaptive semantic fusion of one modality (Sec. 3.3).

    Each segment's ``L`` level features attend to each other (the "unit-level attention
    block"), then each level gets an independent sigmoid weight and the weighted levels are
    summed (the "selective fusion block").

    Args:
        dim: channels.
        num_heads: attention heads.
        dropout: dropout in the attention layer.
        ffn_dim: FFN hidden channels (default ``dim``).
    """

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.1, ffn_dim: int | None = None):
        super().__init__()
        self.attn = WindowedAttentionLayer(dim, num_heads, window=None, ffn_dim=ffn_dim, dropout=dropout)
        self.weight = nn.Linear(dim, 1)

    def forward(self, levels: Tensor) -> Tensor:
        """``[B, T, L, C]`` -> ``[B, T, C]``."""
        b = levels.shape[0]
        x = rearrange(levels, "b t l c -> (b t) l c")
        x = self.attn(x, x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device))
        w = torch.sigmoid(self.weight(x))  # (b t) l 1
        return rearrange((w * x).sum(dim=1), "(b t) c -> b t c", b=b)


class MMPyramid(nn.Module):
    """MM-Pyramid's attentive feature pyramid and adaptive semantic fusion for audio-visual segments.

    Yu et al., ACM MM 2022: ``num_levels`` stacked :class:`PyramidUnit` s with growing dilation
    (and window) produce one audio and one visual feature map per level; per segment, the
    levels attend to each other and are fused by sigmoid weights (:class:`LevelFusion`).

    Example:
        >>> pyramid = MMPyramid(dim=32, num_levels=2)
        >>> a, v = pyramid(torch.randn(2, 10, 32), torch.randn(2, 10, 32))
        >>> a.shape, v.shape
        (torch.Size([2, 10, 32]), torch.Size([2, 10, 32]))

    Args:
        dim: channels of both modalities (project inputs to it first).
        num_levels: pyramid units.
        dilations: conv dilation of each unit. If left at the default ``(1, 2, 4, 8)`` with a
            different ``num_levels``, ``2**l`` is used; otherwise it must have ``num_levels`` entries.
        window: odd attention window of every unit; None (default) uses ``2 * dilation + 1``
            per unit, the official ``masksize = 2 * dilation``.
        num_heads: attention heads (must divide ``dim``).
        dropout: dropout in every attention layer.
        ffn_dim: FFN hidden channels of the attention layers (default ``dim``).
    """

    def __init__(
        self,
        dim: int,
        num_levels: int = 4,
        dilations: Sequence[int] = DEFAULT_DILATIONS,
        window: int | None = None,
        num_heads: int = 4,
        dropout: float = 0.1,
        ffn_dim: int | None = None,
    ):
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        dilations = tuple(int(d) for d in dilations)
        if len(dilations) != num_levels:
            if dilations != DEFAULT_DILATIONS:
                raise ValueError(f"dilations {dilations} must have num_levels={num_levels} entries")
            dilations = tuple(2**level for level in range(num_levels))
        self.dim = dim
        self.dilations = dilations
        self.units = nn.ModuleList(
            PyramidUnit(dim, d, window, num_heads, dropout, ffn_dim) for d in dilations
        )
        self.fuse_audio = LevelFusion(dim, num_heads, dropout, ffn_dim)
        self.fuse_visual = LevelFusion(dim, num_heads, dropout, ffn_dim)

    def forward(self, audio: Tensor, visual: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Fuse multi-scale audio-visual context into every segment.

        Args:
            audio: ``[B, T, C]`` per-segment audio features.
            visual: ``[B, T, C]`` per-segment visual features.
            mask: ``[B, T]`` bool, True on real segments; None if all are real.

        Returns:
            Fused audio and visual features, each ``[B, T, C]`` (zero on padded segments).
        """
        if audio.shape != visual.shape or audio.ndim != 3 or audio.shape[-1] != self.dim:
            raise ValueError(
                f"MMPyramid expects audio and visual [B, T, {self.dim}], got {tuple(audio.shape)} "
                f"and {tuple(visual.shape)}"
            )
        if mask is None:
            mask = torch.ones(audio.shape[:2], dtype=torch.bool, device=audio.device)
        mask = _check_mask(audio, mask)
        audio_levels, visual_levels = [], []
        for unit in self.units:
            audio, visual = unit(audio, visual, mask)
            audio_levels.append(audio)
            visual_levels.append(visual)
        audio = self.fuse_audio(torch.stack(audio_levels, dim=2))
        visual = self.fuse_visual(torch.stack(visual_levels, dim=2))
        return _masked(audio, mask), _masked(visual, mask)
