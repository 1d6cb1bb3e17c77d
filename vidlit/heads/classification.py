"""Video classification heads: linear and attentive probes on a backbone's features.

Shape legend: ``b`` clips (views), ``n`` tokens, ``d`` feature width (``in_dim``), ``k`` classes,
``h`` attention heads, ``e`` width per head, ``q`` queries (one).

Batches carry ``labels`` (int64 ``[b]``), ``video_ids`` and ``targets`` (``{"video_id",
"label"}`` per clip, see :class:`vidlit.data.VideoListDataModule`); the views of one video share
its ``video_id`` and the metric averages them.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torchmetrics import MetricCollection

from vidlit.formats.video_cls import VideoClsBatch, VideoClsPrediction
from vidlit.heads.base import TaskHead
from vidlit.metrics.classification import TopKAccuracy


class ClassificationHead(TaskHead):
    """What every clip classifier shares: cross-entropy, softmax predictions, top-k accuracy.

    Subclasses map features to ``[b, k]`` logits in :meth:`forward`.

    Args:
        num_classes: number of classes (linked from the data module by the CLI).
        label_smoothing: cross-entropy label smoothing (Szegedy et al., 2016, sec. 7), 0.1 in
            VideoMAE fine-tuning, 0 for linear probing.
    """

    input: ClassVar[str] = "video"

    def __init__(self, num_classes: int, label_smoothing: float = 0.0):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing

    def loss(self, outputs: Tensor, batch: VideoClsBatch) -> dict[str, Tensor]:
        """Cross-entropy of the logits against ``batch["labels"]``, or the soft targets of mixup.

        A batch that carries float ``soft_labels`` ``[b, k]`` (mixup / cutmix,
        :class:`~vidlit.data.augment.VideoAugment`) is scored against them, without
        ``label_smoothing``: the mixed targets are already smoothed. A batch left empty by skipped
        videos gives a zero loss that still reaches every parameter, so the step is a no-op
        instead of a NaN.
        """
        labels = batch["labels"]
        if labels.numel() == 0:
            return {"loss": outputs.sum() * 0.0}
        soft = batch.get("soft_labels")
        if soft is not None:
            return {"loss": F.cross_entropy(outputs.float(), soft.float())}
        return {"loss": F.cross_entropy(outputs.float(), labels, label_smoothing=self.label_smoothing)}

    def predict(self, outputs: Tensor, batch: VideoClsBatch) -> list[VideoClsPrediction]:
        """One ``{"video_id", "label", "scores"}`` per clip.

        ``label`` is the arg-max class (int) and ``scores`` the ``[k]`` softmax probabilities,
        what :class:`~vidlit.metrics.classification.TopKAccuracy` averages over a video's views.
        """
        scores = outputs.detach().float().softmax(dim=-1)
        labels = scores.argmax(dim=-1).tolist()
        return [
            {"video_id": video_id, "label": label, "scores": score}
            for video_id, label, score in zip(batch["video_ids"], labels, scores)
        ]

    def metrics(self) -> MetricCollection:
        """Kinetics-style video accuracy: ``top1`` (headline) and ``top5``, views averaged."""
        return MetricCollection({"accuracy": TopKAccuracy(num_classes=self.num_classes, top_k=(1, 5))})


class LinearProbeHead(ClassificationHead):
    """Linear probe on pooled features, with MAE's parameter-free BatchNorm in front.

    He et al., "Masked Autoencoders Are Scalable Vision Learners" (CVPR 2022), appendix A.2:
    normalizing the pre-trained features helps the linear classifier, so linear probing puts a
    ``BatchNorm1d`` without affine parameters in front of it (``main_linprobe.py``, after
    MoCo v3); at test time it is a fixed linear map, so the probe stays linear. The classifier
    is initialized with ``trunc_normal(std=0.01)``.

    A training batch with fewer than two clips (the last batch, or one whose other videos were
    skipped) is normalized with the running statistics, which BatchNorm cannot estimate from
    a single sample.

    VideoMAE's fine-tuning head (``modeling_finetune.py``) is the plain linear layer instead:
    ``batch_norm=False, init_std=2e-5`` (``trunc_normal(std=0.02)`` scaled by ``init_scale``
    0.001). On a tiny backbone the BatchNorm matters: an MVM-pretrained ``vit_test`` fine-tuned
    with ``recipes/finetune_k400.yaml`` (augmentations and mean pooling off) reached 0.97 val top-1
    in 8 epochs with it and stayed at chance (0.25-0.27) with VideoMAE's head, whose logits
    barely move on pooled features that differ little between clips (between-clip std about
    0.01 per channel against a norm of 8).

    Args:
        in_dim: feature width (the backbone's ``embed_dim``, linked by the CLI).
        num_classes: number of classes.
        dropout: dropout before the linear layer.
        label_smoothing: cross-entropy label smoothing.
        batch_norm: the parameter-free BatchNorm in front of the linear layer (linear probing);
            False for full fine-tuning.
        init_std: standard deviation of the linear layer's truncated-normal initialization
            (0.01 as MAE's linear probe; VideoMAE fine-tuning 2e-5).
    """

    feature_layout: ClassVar[Literal["temporal", "tokens", "pooled"]] = "pooled"

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
        batch_norm: bool = True,
        init_std: float = 0.01,
    ):
        super().__init__(num_classes, label_smoothing)
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.in_dim = in_dim
        self.norm = nn.BatchNorm1d(in_dim, affine=False, eps=1e-6) if batch_norm else None
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=init_std)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: Tensor, batch: VideoClsBatch) -> Tensor:
        """``[b, d]`` pooled features in, ``[b, k]`` logits out."""
        self.check_features(features, "[b, d]")
        if self.norm is None:
            x = features
        elif self.training and features.shape[0] < 2:
            norm = self.norm
            x = F.batch_norm(features, norm.running_mean, norm.running_var, training=False, eps=norm.eps)
        else:
            x = self.norm(features)
        return self.fc(self.dropout(x))


class AttentiveProbeHead(ClassificationHead):
    """Attentive probe: one learned query cross-attends over all tokens, then a linear classifier.

    The frozen-evaluation head of V-JEPA (Bardes et al., "Revisiting Feature Prediction for
    Learning Visual Representations from Video", 2024, sec. 4 and appendix; ``AttentivePooler``
    with one query and one cross-attention block) and of InternVideo2's attention pooling:
    a query token attends over the layer-normed tokens (SDPA), the result passes an MLP with a
    residual, and ``LayerNorm`` plus ``Linear`` give the logits. Unlike mean pooling, the query
    can weight the tokens that matter; V-JEPA reports large gains over linear probing of
    frozen features with it.

    Args:
        in_dim: token width (the backbone's ``embed_dim``, linked by the CLI).
        num_classes: number of classes.
        num_heads: attention heads; must divide ``in_dim``.
        mlp_ratio: hidden width of the MLP after the attention, as a multiple of ``in_dim``.
        dropout: dropout before the linear classifier.
        label_smoothing: cross-entropy label smoothing.
    """

    feature_layout: ClassVar[Literal["temporal", "tokens", "pooled"]] = "tokens"

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
    ):
        super().__init__(num_classes, label_smoothing)
        if in_dim % num_heads:
            raise ValueError(f"in_dim={in_dim} is not divisible by num_heads={num_heads}")
        self.in_dim = in_dim
        self.num_heads = num_heads
        self.query = nn.Parameter(torch.zeros(1, 1, in_dim))
        self.norm_tokens = nn.LayerNorm(in_dim, eps=1e-6)
        self.q = nn.Linear(in_dim, in_dim)
        self.kv = nn.Linear(in_dim, 2 * in_dim)
        self.proj = nn.Linear(in_dim, in_dim)
        self.norm_mlp = nn.LayerNorm(in_dim, eps=1e-6)
        hidden = round(in_dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, in_dim))
        self.norm = nn.LayerNorm(in_dim, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_classes)
        nn.init.trunc_normal_(self.query, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def pool(self, tokens: Tensor) -> Tensor:
        """``[b, n, d]`` tokens in, ``[b, d]`` attention-pooled feature out (before the final norm)."""
        x = self.norm_tokens(tokens)
        query = self.query.expand(tokens.shape[0], -1, -1)  # b 1 d
        q = rearrange(self.q(query), "b q (h e) -> b h q e", h=self.num_heads)
        k, v = rearrange(self.kv(x), "b n (two h e) -> two b h n e", two=2, h=self.num_heads)
        attended = F.scaled_dot_product_attention(q, k, v)
        query = query + self.proj(rearrange(attended, "b h q e -> b q (h e)"))
        query = query + self.mlp(self.norm_mlp(query))
        return query[:, 0]

    def forward(self, features: Tensor, batch: VideoClsBatch) -> Tensor:
        """``[b, n, d]`` tokens in, ``[b, k]`` logits out."""
        self.check_features(features, "[b, n, d]")
        return self.fc(self.dropout(self.norm(self.pool(features))))
