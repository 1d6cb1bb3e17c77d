"""Ego4D Natural Language Queries: VSLNet, span-based localization of a query in a clip.

Zhang, Sun, Jing and Zhou, "Span-based Localizing Network for Natural Language Video
Localization", ACL 2020, the baseline of the Ego4D NLQ challenge (``EGO4D/episodic-memory``,
``NLQ/VSLNet``, whose defaults this follows: width 128, 8 heads, conv kernel 7, 4 conv layers,
highlight extension 10%, highlight weight 5, top-5 decoding). The query is encoded by a
vidlit text tower (:mod:`vidlit.backbones.text`; the baseline's frozen-BERT variant).

Shape legend: ``b`` queries, ``t`` video steps (grid units), ``l`` query tokens, ``d`` width.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torchmetrics import MetricCollection

from vidlit.backbones.text import create_text_encoder
from vidlit.core.temporal import span_to_seconds
from vidlit.formats.ego4d_nlq import NLQBatch, NLQPrediction
from vidlit.heads.base import TaskHead
from vidlit.metrics.recall_at_iou import RecallAtIoU


def _mask_logits(logits: Tensor, mask: Tensor) -> Tensor:
    """Logits with padded positions at the dtype's lowest value (softmax / sigmoid give ~0 there)."""
    return logits.masked_fill(~mask, torch.finfo(logits.dtype).min)


def _clear_text_cache(head: VSLNetHead, incompatible_keys: Any) -> None:
    """Load-state-dict hook: new text weights invalidate the cached query encodings."""
    head._text_cache.clear()


class DepthwiseSeparableConvs(nn.Module):
    """Pre-norm residual stack of depthwise-separable 1-D convolutions (QANet / VSLNet encoder)."""

    def __init__(self, dim: int, kernel_size: int = 7, layers: int = 4, dropout: float = 0.0):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim, eps=1e-6) for _ in range(layers))
        self.convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=False),
                nn.Conv1d(dim, dim, 1),
                nn.ReLU(),
            )
            for _ in range(layers)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        keep = mask[..., None].to(x.dtype)
        for norm, conv in zip(self.norms, self.convs, strict=True):
            y = rearrange(norm(x) * keep, "b t d -> b d t")
            x = x + self.dropout(rearrange(conv(y), "b d t -> b t d"))
        return x


class MaskedSelfAttention(nn.Module):
    """VSLNet's pre-norm multi-head self-attention block with a position-wise output layer (SDPA)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        q, k, v = rearrange(
            self.qkv(self.dropout(self.norm1(x))),
            "b t (three h d) -> three b h t d",
            three=3,
            h=self.num_heads,
        ).unbind(0)
        attn_mask = mask[:, None, None, :]  # b 1 1 t: padded keys are never attended
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_dropout if self.training else 0.0
        )
        x = x + self.dropout(rearrange(y, "b h t d -> b t (h d)"))
        return x + self.dropout(self.out(self.dropout(self.norm2(x))))


class FeatureEncoder(nn.Module):
    """Learned positions, depthwise-separable convs, then self-attention; shared by video and query."""

    def __init__(
        self, dim: int, num_heads: int, max_pos_len: int, kernel_size: int, layers: int, dropout: float
    ):
        super().__init__()
        self.max_pos_len = max_pos_len
        self.pos_embed = nn.Embedding(max_pos_len, dim)
        self.convs = DepthwiseSeparableConvs(dim, kernel_size, layers, dropout)
        self.attention = MaskedSelfAttention(dim, num_heads, dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if x.shape[1] > self.max_pos_len:
            raise ValueError(
                f"sequence of {x.shape[1]} steps is longer than max_pos_len={self.max_pos_len}; "
                "resample the features (the data module's max_len) or raise max_pos_len"
            )
        x = x + self.pos_embed.weight[: x.shape[1]]
        return self.attention(self.convs(x, mask), mask)


class ContextQueryAttention(nn.Module):
    """Trilinear context-query attention (BiDAF / QANet), VSLNet's video-query fusion (Sec. 3.2)."""

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        self.w_context = nn.Parameter(torch.empty(dim, 1))
        self.w_query = nn.Parameter(torch.empty(dim, 1))
        self.w_mul = nn.Parameter(torch.empty(1, 1, dim))
        for w in (self.w_context, self.w_query, self.w_mul):
            nn.init.xavier_uniform_(w)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(4 * dim, dim)

    def forward(self, context: Tensor, query: Tensor, c_mask: Tensor, q_mask: Tensor) -> Tensor:
        c, q = self.dropout(context), self.dropout(query)
        score = (
            (c @ self.w_context)  # b t 1
            + rearrange(q @ self.w_query, "b l 1 -> b 1 l")
            + (c * self.w_mul) @ rearrange(q, "b l d -> b d l")
        )  # b t l
        c2q_weights = _mask_logits(score, q_mask[:, None, :]).softmax(dim=2)  # over query tokens
        q2c_weights = _mask_logits(score, c_mask[:, :, None]).softmax(dim=1)  # over video steps
        c2q = c2q_weights @ query  # b t d
        q2c = (c2q_weights @ rearrange(q2c_weights, "b t l -> b l t")) @ context  # b t d
        return self.proj(torch.cat((context, c2q, context * c2q, context * q2c), dim=-1))


class VSLNetHead(TaskHead):
    """VSLNet (Zhang et al., ACL 2020) for Ego4D Natural Language Queries on pre-extracted features.

    The video features (``[B, T, in_dim]``, resampled by the data module to at most ``max_len``
    steps, VSLNet's ``max_pos_len``) and the query's token features from the text tower are
    projected to ``dim`` and encoded by one *shared* feature encoder (learned positions,
    depthwise-separable convs, self-attention). Context-query attention fuses them, the
    attention-pooled query is concatenated to every step, and query-guided highlighting
    (Sec. 3.3) predicts which steps lie in the answer, extended by ``highlight_extend`` of its
    length on each side, trained with a foreground-weighted (x2) BCE; the fused features are
    scaled by that score. A conditioned span predictor (the same encoder run twice, the end
    conditioned on the start) gives start and end logits over the steps.

    Loss: ``CE(start) + CE(end) + highlight_weight * highlight BCE``. Decoding (:meth:`predict`):
    ``P(start = i) P(end = j)`` over ``i <= j``, the ``top_k`` best spans, converted to seconds on
    the uniform grid over the clip (``duration / T`` per step).

    The batch (one entry per query; see :class:`vidlit.data.ego4d_nlq.Ego4DNLQ`) carries
    ``features [B, T, C]``, ``mask [B, T]`` bool, ``queries`` (``B`` strings), ``duration [B]``
    seconds, ``start_index`` / ``end_index [B]`` (the training span, in steps), ``video_ids`` and
    ``targets`` in :class:`~vidlit.metrics.recall_at_iou.RecallAtIoU`'s format.

    Args:
        in_dim: video feature channels (linked from the data module's ``feature_dim``).
        dim: model width (VSLNet: 128).
        num_heads: attention heads (VSLNet: 8).
        max_pos_len: length of the learned position table; longer inputs raise.
        kernel_size: depthwise conv kernel (VSLNet: 7).
        conv_layers: depthwise-separable conv layers per encoder (VSLNet: 4).
        dropout: dropout rate (VSLNet: 0.2).
        text_encoder: text tower name (``"minilm"``, ``"text_test"`` or a local Hugging Face
            folder), see :func:`vidlit.backbones.text.create_text_encoder`.
        freeze_text: keep the text tower fixed (VSLNet freezes its BERT).
        max_query_tokens: queries are truncated to this many tokens.
        highlight_extend: fraction of the span length added on each side for highlighting.
        highlight_weight: weight of the highlighting loss (VSLNet's ``highlight_lambda``: 5).
        top_k: windows returned per query by :meth:`predict` (the challenge scores 5).
        text_cache_size: while the text tower is frozen, the encodings of up to this many
            query strings are kept (least recently used dropped), so each query is encoded once
            rather than every epoch (Ego4D NLQ v2 has about 19k train + val queries); 0 disables.
    """

    input = "features"
    feature_layout = "temporal"

    def __init__(
        self,
        in_dim: int,
        dim: int = 128,
        num_heads: int = 8,
        max_pos_len: int = 128,
        kernel_size: int = 7,
        conv_layers: int = 4,
        dropout: float = 0.2,
        text_encoder: str = "minilm",
        freeze_text: bool = True,
        max_query_tokens: int = 32,
        highlight_extend: float = 0.1,
        highlight_weight: float = 5.0,
        top_k: int = 5,
        text_cache_size: int = 20000,
    ):
        super().__init__()
        if text_cache_size < 0:
            raise ValueError(f"text_cache_size must be >= 0, got {text_cache_size}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if highlight_extend < 0:
            raise ValueError(f"highlight_extend must be >= 0, got {highlight_extend}")
        self.in_dim = in_dim
        self.highlight_extend = highlight_extend
        self.highlight_weight = highlight_weight
        self.top_k = top_k
        self.text_cache_size = text_cache_size
        # query string -> [L, C] token states of the frozen tower; not part of the state dict
        self._text_cache: OrderedDict[str, Tensor] = OrderedDict()
        self.register_load_state_dict_post_hook(_clear_text_cache)
        self.text = create_text_encoder(text_encoder, max_length=max_query_tokens, freeze=freeze_text)
        self.video_proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, dim))
        self.query_proj = nn.Linear(self.text.embed_dim, dim)
        self.encoder = FeatureEncoder(
            dim, num_heads, max(max_pos_len, max_query_tokens), kernel_size, conv_layers, dropout
        )
        self.cq_attention = ContextQueryAttention(dim, dropout)
        self.query_pool = nn.Linear(dim, 1)
        self.cq_concat = nn.Linear(2 * dim, dim)
        self.highlight = nn.Linear(dim, 1)
        self.predictor = FeatureEncoder(dim, num_heads, max_pos_len, kernel_size, conv_layers, dropout)
        self.start_norm = nn.LayerNorm(dim, eps=1e-6)
        self.end_norm = nn.LayerNorm(dim, eps=1e-6)
        self.start_head = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, 1))
        self.end_head = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, 1))
        self._init_weights()

    def _init_weights(self) -> None:
        # VSLNet's init: Xavier-uniform weights, zero biases, for every conv and linear layer
        # of the head (the text tower keeps its pretrained weights)
        for name, module in self.named_modules():
            if name.startswith("text"):
                continue
            if isinstance(module, (nn.Linear, nn.Conv1d)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _apply(self, fn, *args, **kwargs):
        # .to() / .half() / .cuda(): cached encodings would sit on the old device or dtype
        self._text_cache.clear()
        return super()._apply(fn, *args, **kwargs)

    def text_frozen(self) -> bool:
        """Whether the text tower is fixed: built with ``freeze_text`` and no parameter trainable."""
        return self.text.freeze and not any(p.requires_grad for p in self.text.parameters())

    def _cached_text(self, queries: list[str]) -> tuple[Tensor, Tensor]:
        """Token states ``[B, L, C]`` and mask ``[B, L]`` of the frozen tower, each string encoded once.

        Strings not in the cache are encoded together, in float32 whatever the autocast
        context (so an entry does not depend on the precision of the step that first saw
        it); real tokens equal the uncached path's, padding is zeros (masked everywhere).
        """
        missing = list(dict.fromkeys(q for q in queries if q not in self._text_cache))
        if missing:
            device_type = next(self.text.parameters()).device.type
            with torch.no_grad(), torch.autocast(device_type, enabled=False):
                text = self.text.encode(missing)
            for query, tokens, mask in zip(missing, text.tokens, text.mask, strict=True):
                self._text_cache[query] = tokens[mask].clone()
        entries = []
        for query in queries:
            self._text_cache.move_to_end(query)
            entries.append(self._text_cache[query])
        while len(self._text_cache) > self.text_cache_size:
            self._text_cache.popitem(last=False)
        lengths = torch.tensor([len(e) for e in entries], device=entries[0].device)
        tokens = nn.utils.rnn.pad_sequence(entries, batch_first=True)  # b l c
        return tokens, torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None]

    def encode_queries(self, queries: list[str]) -> tuple[Tensor, Tensor]:
        """``[B, L, dim]`` projected query tokens and their ``[B, L]`` mask.

        With a frozen text tower and ``text_cache_size > 0`` the tower's outputs are cached
        per query string (see ``text_cache_size``); the cache is cleared when weights are
        loaded or the module moves to another device or dtype.
        """
        if not isinstance(queries, (list, tuple)) or not queries:
            raise ValueError("batch['queries'] must be a non-empty list of strings")
        queries = list(queries)
        if self.text_cache_size > 0 and self.text_frozen() and len(set(queries)) <= self.text_cache_size:
            tokens, mask = self._cached_text(queries)
        else:
            if not self.text_frozen():
                self._text_cache.clear()  # the tower trains now: what it encoded before is stale
            text = self.text.encode(queries)
            tokens, mask = text.tokens, text.mask
        return self.query_proj(tokens), mask

    def forward(self, features: Tensor, batch: NLQBatch) -> dict[str, Tensor]:
        """Start / end logits and highlighting logits.

        Args:
            features: ``[B, T, in_dim]`` video features.
            batch: uses ``mask`` (``[B, T]``, optional) and ``queries``.

        Returns:
            ``start_logits``, ``end_logits``, ``highlight_logits``: ``[B, T]`` float32, padded
            steps at the lowest float; ``mask``: ``[B, T]`` bool.
        """
        self.check_features(features)
        mask = self.sequence_mask(features, batch)
        query, q_mask = self.encode_queries(batch["queries"])
        if query.shape[0] != features.shape[0]:
            raise ValueError(f"{query.shape[0]} queries for {features.shape[0]} feature sequences")
        video = self.encoder(self.video_proj(features), mask)  # b t d
        query = self.encoder(query.to(video.dtype), q_mask)  # b l d
        fused = self.cq_attention(video, query, mask, q_mask)  # b t d
        pool = _mask_logits(self.query_pool(query).squeeze(-1), q_mask).softmax(dim=-1)  # b l
        pooled = torch.einsum("bl,bld->bd", pool.to(query.dtype), query)
        fused = self.cq_concat(torch.cat((fused, pooled[:, None].expand_as(fused)), dim=-1))
        highlight = self.highlight(fused).squeeze(-1).float()  # b t
        fused = fused * _mask_logits(highlight, mask).sigmoid()[..., None].to(fused.dtype)
        start = self.predictor(fused, mask)
        end = self.predictor(start, mask)
        start_logits = self.start_head(torch.cat((self.start_norm(start), fused), dim=-1)).squeeze(-1)
        end_logits = self.end_head(torch.cat((self.end_norm(end), fused), dim=-1)).squeeze(-1)
        return {
            "start_logits": _mask_logits(start_logits.float(), mask),
            "end_logits": _mask_logits(end_logits.float(), mask),
            "highlight_logits": highlight,
            "mask": mask,
        }

    def highlight_targets(self, start: Tensor, end: Tensor, mask: Tensor) -> Tensor:
        """``[B, T]`` 0/1 targets: the span extended by ``round(extend * length)`` steps each side."""
        length = mask.sum(1)
        extend = torch.round(self.highlight_extend * (end - start + 1).double()).long()
        lo = (start - extend).clamp(min=0)
        hi = torch.minimum(end + extend, length - 1)
        steps = torch.arange(mask.shape[1], device=mask.device)
        return ((steps >= lo[:, None]) & (steps <= hi[:, None]) & mask).float()

    def loss(self, outputs: dict[str, Tensor], batch: NLQBatch) -> dict[str, Tensor]:
        """``CE(start) + CE(end) + highlight_weight * weighted BCE``, VSLNet's objective (Sec. 3.4).

        The highlighting BCE weighs foreground steps 2 and background steps 1 and averages over
        the real steps, as the baseline's ``HighLightLayer.compute_loss``.

        Returns:
            ``{"loss", "span_loss", "highlight_loss"}``, float32.
        """
        mask = outputs["mask"]
        start = batch["start_index"].to(mask.device).long()
        end = batch["end_index"].to(mask.device).long()
        span_loss = F.cross_entropy(outputs["start_logits"], start) + F.cross_entropy(
            outputs["end_logits"], end
        )
        target = self.highlight_targets(start, end, mask)
        bce = F.binary_cross_entropy_with_logits(
            outputs["highlight_logits"].masked_fill(~mask, 0.0), target, reduction="none"
        )
        weights = torch.where(target > 0, 2.0, 1.0) * mask
        highlight_loss = (bce * weights).sum() / mask.sum().clamp(min=1)
        return {
            "loss": span_loss + self.highlight_weight * highlight_loss,
            "span_loss": span_loss,
            "highlight_loss": highlight_loss,
        }

    @torch.no_grad()
    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The ``top_k`` spans maximizing ``P(start) P(end)`` with ``start <= end``.

        Returns:
            ``start [B, K]``, ``end [B, K]`` step indices and ``scores [B, K]``, with
            ``K = min(top_k, T (T + 1) / 2)`` over the padded length ``T``; a shorter row's
            entries beyond its own valid spans have score -1 and :meth:`predict` drops them.
        """
        mask = outputs["mask"]
        p_start = outputs["start_logits"].float().softmax(-1)
        p_end = outputs["end_logits"].float().softmax(-1)
        joint = p_start[:, :, None] * p_end[:, None, :]  # b t t
        t = joint.shape[-1]
        valid = torch.ones(t, t, dtype=torch.bool, device=joint.device).triu()
        valid = valid & mask[:, :, None] & mask[:, None, :]
        joint = joint.masked_fill(~valid, -1.0)
        k = min(self.top_k, t * (t + 1) // 2)
        scores, flat = joint.flatten(1).topk(k, dim=-1)
        return torch.div(flat, t, rounding_mode="floor"), flat % t, scores

    @torch.no_grad()
    def predict(self, outputs: dict[str, Tensor], batch: NLQBatch) -> list[NLQPrediction]:
        """Top-``k`` windows per query in seconds, best first.

        Returns:
            One ``{"video_id", "windows": [K, 2] seconds, "scores": [K]}`` per query
            (:class:`~vidlit.metrics.recall_at_iou.RecallAtIoU`'s prediction format).
        """
        start, end, scores = self.decode(outputs)
        units = outputs["mask"].sum(1)
        duration = torch.as_tensor(batch["duration"], dtype=torch.float32, device=start.device)
        windows = span_to_seconds(start, end, units[:, None], duration[:, None])  # b k 2
        predictions = []
        for i, video_id in enumerate(batch["video_ids"]):
            keep = scores[i] >= 0
            predictions.append({"video_id": video_id, "windows": windows[i][keep], "scores": scores[i][keep]})
        return predictions

    def metrics(self) -> MetricCollection:
        """Ego4D NLQ's official protocol: Recall@{1, 5} at IoU {0.3, 0.5} and mean IoU."""
        return MetricCollection({"recall": RecallAtIoU(thresholds=(0.3, 0.5), top_k=(1, 5))})
