"""MACIL-SD: weakly supervised audio-visual violence detection on XD-Violence features."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn
from torchmetrics import MetricCollection

from vidlit.formats.xd_violence import CLIP_LEN, XDViolenceBatch
from vidlit.heads.base import TaskHead
from vidlit.metrics.frame_ap import FrameLevelAP


class CrossModalLayer(nn.Module):
    """One transformer layer whose queries attend over a context sequence (self-attention when equal).

    The layer of MACIL-SD's ``Transformer.py``: pre-norm residual blocks, where only the
    queries are normalized (keys and values enter raw), attention dropout, then a ReLU
    feed-forward. Padded context steps are masked out of the attention.

    Shape legend: ``b`` sequences, ``n`` query steps, ``m`` context steps, ``h`` heads, ``d`` head width.

    Args:
        dim: width of queries and context.
        num_heads: attention heads; must divide ``dim``.
        ffn_dim: hidden width of the feed-forward.
        dropout: dropout on each residual branch and inside the feed-forward.
        attn_dropout: dropout on the attention weights.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, attn_dropout: float):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.attn_dropout = attn_dropout
        self.norm_attn = nn.LayerNorm(dim)
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, query: Tensor, context: Tensor, context_mask: Tensor | None = None) -> Tensor:
        """Update ``[b, n, c]`` queries from a ``[b, m, c]`` context (``context_mask``: True = real)."""
        q, k, v = (
            rearrange(proj(x), "b n (h d) -> b h n d", h=self.num_heads)
            for proj, x in ((self.q, self.norm_attn(query)), (self.k, context), (self.v, context))
        )
        mask = None if context_mask is None else rearrange(context_mask, "b m -> b 1 1 m")
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )
        x = query + self.drop(self.out(rearrange(x, "b h n d -> b n (h d)")))
        return x + self.drop(self.ffn(self.norm_ffn(x)))


class VisualPeer(nn.Module):
    """MACIL-SD's visual-only peer network (``Single_Model``): projection, self-attention, classifier.

    Its module names match the audio-visual model's visual path (``proj_visual``, ``layer``,
    ``classifier``), which the self-distillation EMA pairs up by name.
    """

    def __init__(
        self, in_dim: int, hidden_dim: int, num_heads: int, ffn_dim: int, dropout: float, attn_dropout: float
    ):
        super().__init__()
        self.proj_visual = nn.Linear(in_dim, hidden_dim)
        self.layer = CrossModalLayer(hidden_dim, num_heads, ffn_dim, dropout, attn_dropout)
        self.classifier = nn.Linear(hidden_dim, 1)

    def forward(self, visual: Tensor, mask: Tensor) -> Tensor:
        """``[b, t]`` snippet logits from ``[b, t, c]`` visual features."""
        x = self.proj_visual(visual)
        return self.classifier(self.layer(x, x, mask)).squeeze(-1)


def topk_mil_logits(logits: Tensor, mask: Tensor, divisor: int = 16) -> Tensor:
    """Video logits: the mean of each video's ``k = floor(T / divisor) + 1`` largest snippet logits.

    The top-k multiple-instance pooling of Wu et al. (ECCV 2020) and MACIL-SD, ``T`` being the
    video's number of real (unpadded) snippets.

    Args:
        logits: ``[b, t]`` snippet logits.
        mask: ``[b, t]`` True on real snippets.
        divisor: ``16`` in the official code.

    Returns:
        ``[b]`` video logits (apply a sigmoid for the video probability).
    """
    k = mask.sum(1) // divisor + 1
    ranked = logits.masked_fill(~mask, float("-inf")).sort(dim=1, descending=True).values
    keep = torch.arange(logits.shape[1], device=logits.device)[None] < k[:, None]
    return (ranked.masked_fill(~keep, 0.0)).sum(1) / k


def info_nce(query: Tensor, positive: Tensor, negatives: Tensor, temperature: float = 0.1) -> Tensor:
    """InfoNCE with one positive per query and a shared ("unpaired") set of negatives.

    Cosine similarities divided by ``temperature``; the positive is class 0 of a cross-entropy
    over ``[positive, negatives...]`` (the ``info-nce-pytorch`` formulation MACIL-SD uses).

    Args:
        query: ``[n, c]``.
        positive: ``[n, c]``, row ``i`` the positive of query ``i``.
        negatives: ``[m, c]``, negatives of every query.
    """
    query, positive, negatives = (F.normalize(x, dim=-1) for x in (query, positive, negatives))
    logits = torch.cat(((query * positive).sum(-1, keepdim=True), query @ negatives.T), dim=1)
    target = torch.zeros(len(query), dtype=torch.long, device=query.device)
    return F.cross_entropy(logits / temperature, target)


class MACILSDHead(TaskHead):
    """MACIL-SD head: modality-aware contrastive instance learning with self-distillation.

    Yu et al., "Modality-Aware Contrastive Instance Learning with Self-Distillation for Weakly-
    Supervised Audio-Visual Violence Detection" (ACM MM 2022), after ``JustinYuu/MACIL_SD``:

    - I3D RGB (``in_dim`` = 1024) and VGGish (``audio_dim`` = 128) snippet features are projected
      to ``hidden_dim`` = 128; ONE transformer layer is shared by both directions (video attends
      to audio, audio attends to video); a shared linear classifier scores each modality's
      snippets and their logits are summed into the audio-visual snippet logit.
    - Weak supervision (sec. 3.2): the video-level label (``batch["labels"]``, 1 = violent) is the
      only target; the video logit is the mean of the top ``k = floor(T/16) + 1`` snippet logits
      (:func:`topk_mil_logits`), trained with binary cross-entropy.
    - Modality-aware contrastive loss (sec. 3.3): each video is called violent or normal by its
      own predicted probability (> 0.5, unsupervised as in the paper). Per modality, the ``k``
      lowest-scored snippets form the background semi-bag, the ``k`` highest the violent
      semi-bag (averaged to its mean, repeated ``k`` times) of predicted-violent videos or the
      normal semi-bag of predicted-normal ones. Audio and visual violent semi-bags are positive
      pairs; the other modality's background and normal instances are negatives; InfoNCE with
      temperature 0.1, both directions. Its weights ramp as ``min(1.5, 0.1 * epoch)``.
    - Self-distillation (sec. 3.4): a visual-only peer (:class:`VisualPeer`: projection,
      self-attention layer, classifier; same top-k MIL loss) trains alongside, and after each
      epoch the audio-visual model's visual projection, transformer layer and classifier move
      towards the peer's: ``theta_av = m * theta_av + (1 - m) * theta_peer``, ``m`` following a
      cosine from ``ema_momentum`` = 0.91 at epoch 0 to 1 at ``ema_epochs`` = 50.

    Epochs: the head takes the epoch from the :class:`~vidlit.heads.base.TaskHead` hooks that
    :class:`~vidlit.tasks.TaskModule` calls. :meth:`on_train_epoch_start` sets the epoch of the
    contrastive ramp; :meth:`on_train_epoch_end` applies the epoch's EMA after its last training
    step and before its validation, so, as in the official ``main.py`` (train, EMA, test), an
    epoch is evaluated after its EMA. The epoch and the number of EMA updates applied
    (``current_epoch``, ``ema_done``) are buffers, so a run resumed from a checkpoint continues
    the schedule exactly; an EMA that a checkpoint taken between an epoch's last step and its
    end missed is applied at the next epoch start. Used without ``TaskModule``, call the two
    hooks around each training epoch.

    Differences from the official code, on purpose: padded snippets are masked out of attention
    (the official training attends over zero padding); the contrastive loss picks audio
    instances by audio scores and visual by visual scores (``train.py`` swaps ``audio_rep`` and
    ``visual_rep`` when unpacking the model output); one optimizer trains the model and its peer
    at one learning rate (the official peer has its own Adam at ``lr / 5``).

    Batch keys: ``features`` visual ``[b, t, c]`` (one crop per sample, training) or
    ``[b, k, t, c]`` (all ``k`` crops of a video, evaluation), ``audio`` ``[b, t, audio_dim]``
    (shared by the crops), ``mask`` ``[b, t]``, ``labels`` ``[b]``, ``video_ids``.

    Args:
        in_dim: visual feature width (linked from the data module's ``feature_dim``).
        num_classes: must be 1 (violence vs normal; linked from the data module).
        audio_dim: audio feature width.
        hidden_dim: width of the projections and the transformer layer.
        ffn_dim: feed-forward width.
        num_heads: attention heads.
        dropout: residual and feed-forward dropout.
        attn_dropout: attention-weight dropout.
        topk_divisor: ``k = floor(T / topk_divisor) + 1`` snippets per MIL bag.
        temperature: InfoNCE temperature.
        contrast_weight: final weight of each contrastive term (``lamda_a2b`` = ``lamda_a2n`` = 1.5).
        contrast_ramp: weight added per epoch until ``contrast_weight`` (``lamda_cof`` = 0.1).
        ema_momentum: EMA momentum after epoch 0 (``m`` = 0.91).
        ema_epochs: epochs of the cosine from ``ema_momentum`` to 1.
        peer_weight: weight of the peer's MIL loss (its parameters get no other gradient).
        steps_per_epoch: deprecated and ignored (the head counted its own steps before it got
            the epoch from ``TaskModule``).
        clip_len: frames per snippet, for the frame-level metric (16 for I3D).
    """

    input = "features"
    feature_layout = "temporal"

    def __init__(
        self,
        in_dim: int = 1024,
        num_classes: int = 1,
        audio_dim: int = 128,
        hidden_dim: int = 128,
        ffn_dim: int = 128,
        num_heads: int = 4,
        dropout: float = 0.1,
        attn_dropout: float = 0.1,
        topk_divisor: int = 16,
        temperature: float = 0.1,
        contrast_weight: float = 1.5,
        contrast_ramp: float = 0.1,
        ema_momentum: float = 0.91,
        ema_epochs: int = 50,
        peer_weight: float = 1.0,
        steps_per_epoch: int | None = None,
        clip_len: int = CLIP_LEN,
    ):
        super().__init__()
        if num_classes != 1:
            raise ValueError(
                f"MACILSDHead scores violence vs normal: num_classes must be 1, got {num_classes}"
            )
        if ema_epochs < 1 or topk_divisor < 1:
            raise ValueError(f"ema_epochs ({ema_epochs}) and topk_divisor ({topk_divisor}) must be positive")
        if steps_per_epoch is not None:
            warnings.warn(
                "MACILSDHead: steps_per_epoch is deprecated and ignored; the head now takes the epoch "
                "from TaskModule (on_train_epoch_start / on_train_epoch_end); drop it from the config",
                FutureWarning,
                stacklevel=2,
            )
        if not 0.0 <= ema_momentum <= 1.0:
            raise ValueError(f"ema_momentum must lie in [0, 1], got {ema_momentum}")
        self.num_classes = num_classes
        self.topk_divisor = topk_divisor
        self.temperature = temperature
        self.contrast_weight = contrast_weight
        self.contrast_ramp = contrast_ramp
        self.ema_momentum = ema_momentum
        self.ema_epochs = ema_epochs
        self.peer_weight = peer_weight
        self.clip_len = clip_len
        self.proj_visual = nn.Linear(in_dim, hidden_dim)
        self.proj_audio = nn.Linear(audio_dim, hidden_dim)
        self.layer = CrossModalLayer(hidden_dim, num_heads, ffn_dim, dropout, attn_dropout)
        self.classifier = nn.Linear(hidden_dim, 1)
        self.peer = VisualPeer(in_dim, hidden_dim, num_heads, ffn_dim, dropout, attn_dropout)
        # checkpointed, so a resumed run continues the ramp and the EMA schedule
        self.register_buffer("current_epoch", torch.zeros((), dtype=torch.long))
        self.register_buffer("ema_done", torch.zeros((), dtype=torch.long))

    # ---- epochs and self-distillation -------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The training epoch, as the last :meth:`on_train_epoch_start` said."""
        return int(self.current_epoch)

    def on_train_epoch_start(self, epoch: int) -> None:
        """Epoch ``epoch`` starts: its contrastive weight applies, and any missed EMA is caught up.

        ``ema_done`` above ``epoch`` means weights from another run were loaded into a new one
        (a resume has ``ema_done == epoch``): the EMA count restarts with this run.
        """
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.current_epoch.fill_(epoch)
        if int(self.ema_done) > epoch:
            self.ema_done.fill_(epoch)
        self._catch_up_ema(epoch)

    def on_train_epoch_end(self, epoch: int) -> None:
        """Epoch ``epoch``'s training steps are done: apply its self-distillation EMA (``main.py``)."""
        self._catch_up_ema(epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Same as :meth:`on_train_epoch_start` (kept for code written before the hook)."""
        self.on_train_epoch_start(epoch)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # checkpoints written before the epoch hooks hold a step counter instead of the epoch;
        # the next on_train_epoch_start sets the epoch, the EMA count carries over
        steps = state_dict.pop(prefix + "train_steps", None)
        if steps is not None and prefix + "current_epoch" not in state_dict:
            state_dict[prefix + "current_epoch"] = state_dict.get(
                prefix + "ema_done", torch.zeros((), dtype=torch.long)
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def ema_momentum_at(self, epoch: int) -> float:
        """MACIL-SD's ``cosine_scheduler``: ``1 + (m0 - 1) * (1 + cos(pi * epoch / ema_epochs)) / 2``."""
        return 1.0 + 0.5 * (self.ema_momentum - 1.0) * (1.0 + math.cos(math.pi * epoch / self.ema_epochs))

    def contrast_weight_at(self, epoch: int) -> float:
        """``min(contrast_weight, contrast_ramp * epoch)``: 0 in epoch 0, then ramping up."""
        return min(self.contrast_weight, self.contrast_ramp * epoch)

    def ema_pairs(self) -> list[tuple[Tensor, Tensor]]:
        """``(audio-visual parameter, peer parameter)`` pairs that self-distillation ties together."""
        pairs = []
        for name in ("proj_visual", "layer", "classifier"):
            mine, peers = getattr(self, name), getattr(self.peer, name)
            pairs += list(zip(mine.parameters(), peers.parameters(), strict=True))
        return pairs

    @torch.no_grad()
    def distill_from_peer(self, momentum: float) -> None:
        """``theta_av = momentum * theta_av + (1 - momentum) * theta_peer`` on the paired parameters."""
        for mine, peer in self.ema_pairs():
            mine.mul_(momentum).add_(peer.detach(), alpha=1.0 - momentum)

    def _catch_up_ema(self, finished: int) -> None:
        # the EMA of every finished epoch (0 .. finished - 1) not yet applied, in order
        while int(self.ema_done) < finished:
            momentum = self.ema_momentum_at(int(self.ema_done))
            if momentum != 1.0:
                self.distill_from_peer(momentum)
            self.ema_done += 1

    # ---- the head contract --------------------------------------------------------------------

    def forward(self, features: Tensor, batch: XDViolenceBatch) -> dict[str, Tensor]:
        """Per-snippet logits of the audio-visual model, of each modality and of the visual peer.

        Returns:
            ``av_logits``, ``audio_logits``, ``visual_logits``, ``peer_logits`` (``[n, t]``,
            ``n = b * k`` crop sequences), ``audio_rep``, ``visual_rep`` (``[n, t, hidden_dim]``),
            ``mask`` ``[n, t]`` and ``num_crops`` ``k``.
        """
        visual = features if features.ndim == 4 else features[:, None]
        crops = visual.shape[1]
        visual = rearrange(visual, "b k t c -> (b k) t c")
        audio = repeat(batch["audio"], "b t c -> (b k) t c", k=crops).to(visual.dtype)
        if audio.shape[1] != visual.shape[1]:
            raise ValueError(
                f"audio has {audio.shape[1]} snippets but the visual features {visual.shape[1]} "
                f"(videos {batch.get('video_ids')})"
            )
        mask = batch.get("mask")
        if mask is None:
            mask = torch.ones(visual.shape[:2], dtype=torch.bool, device=visual.device)
        else:
            mask = repeat(mask.bool(), "b t -> (b k) t", k=crops)
        v, a = self.proj_visual(visual), self.proj_audio(audio)
        # one layer, shared by both directions
        visual_rep = self.layer(v, a, mask)
        audio_rep = self.layer(a, v, mask)
        visual_logits = self.classifier(visual_rep).squeeze(-1)
        audio_logits = self.classifier(audio_rep).squeeze(-1)
        return {
            "av_logits": visual_logits + audio_logits,
            "audio_logits": audio_logits,
            "visual_logits": visual_logits,
            "peer_logits": self.peer(visual, mask),
            "audio_rep": audio_rep,
            "visual_rep": visual_rep,
            "mask": mask,
            "num_crops": torch.tensor(crops),
        }

    def contrastive_losses(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """MACIL-SD's modality-aware contrastive losses over predicted semi-bags (``CMA_MIL.py``).

        Returns:
            ``a2v_bgd``, ``v2a_bgd`` (violent vs the other modality's background),
            ``a2v_nor``, ``v2a_nor`` (violent vs the other modality's normal instances); all zero
            when the batch has no predicted-violent or no predicted-normal video.
        """
        mask = outputs["mask"]
        lengths = mask.sum(1)
        violent = topk_mil_logits(outputs["av_logits"], mask, self.topk_divisor).detach() > 0  # p > 0.5
        bags: dict[str, list[Tensor]] = {
            f"{m}_{kind}": [] for m in ("audio", "visual") for kind in ("abn", "bgd", "nor")
        }
        for i in range(mask.shape[0]):
            n = int(lengths[i])
            k = n // self.topk_divisor + 1
            for modality in ("audio", "visual"):
                scores = outputs[f"{modality}_logits"][i, :n].detach()
                reps = outputs[f"{modality}_rep"][i, :n]
                bags[f"{modality}_bgd"].append(reps[scores.topk(k, largest=False).indices])
                top = reps[scores.topk(k).indices]
                if violent[i]:
                    bags[f"{modality}_abn"].append(top.mean(0, keepdim=True).expand(k, -1))
                else:
                    bags[f"{modality}_nor"].append(top)
        zero = outputs["av_logits"].new_zeros(())
        if not bags["audio_abn"] or not bags["audio_nor"]:
            return dict.fromkeys(("a2v_bgd", "a2v_nor", "v2a_bgd", "v2a_nor"), zero)
        bag = {name: torch.cat(parts) for name, parts in bags.items()}
        t = self.temperature
        return {
            "a2v_bgd": info_nce(bag["audio_abn"], bag["visual_abn"], bag["visual_bgd"], t),
            "a2v_nor": info_nce(bag["audio_abn"], bag["visual_abn"], bag["visual_nor"], t),
            "v2a_bgd": info_nce(bag["visual_abn"], bag["audio_abn"], bag["audio_bgd"], t),
            "v2a_nor": info_nce(bag["visual_abn"], bag["audio_abn"], bag["audio_nor"], t),
        }

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Top-k MIL BCE + ramped contrastive losses + the peer's MIL BCE, from video labels only.

        The contrastive weight is :meth:`contrast_weight_at` the current :attr:`epoch`.
        """
        mask = outputs["mask"]
        labels = repeat(
            torch.as_tensor(batch["labels"], device=mask.device).float(),
            "b -> (b k)",
            k=int(outputs["num_crops"]),
        )
        mil = F.binary_cross_entropy_with_logits(
            topk_mil_logits(outputs["av_logits"].float(), mask, self.topk_divisor), labels
        )
        peer = F.binary_cross_entropy_with_logits(
            topk_mil_logits(outputs["peer_logits"].float(), mask, self.topk_divisor), labels
        )
        contrast = self.contrastive_losses(outputs)
        weight = self.contrast_weight_at(self.epoch)
        total = mil + weight * sum(contrast.values()) + self.peer_weight * peer
        return {
            "loss": total,
            "mil": mil.detach(),
            "peer": peer.detach(),
            "contrast_bgd": (contrast["a2v_bgd"] + contrast["v2a_bgd"]).detach(),
            "contrast_nor": (contrast["a2v_nor"] + contrast["v2a_nor"]).detach(),
            "contrast_weight": mil.new_tensor(weight),
        }

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per video: violence probability of each real snippet, averaged over the video's crops."""
        crops = int(outputs["num_crops"])
        probs = rearrange(outputs["av_logits"].float().sigmoid(), "(b k) t -> b k t", k=crops).mean(1)
        lengths = rearrange(outputs["mask"], "(b k) t -> b k t", k=crops)[:, 0].sum(1)
        return [
            {"video_id": video_id, "scores": probs[i, : int(lengths[i])].detach()}
            for i, video_id in enumerate(batch["video_ids"])
        ]

    def metrics(self) -> MetricCollection:
        """XD-Violence's frame-level AP (PR-AUC of 16x-repeated snippet scores)."""
        return MetricCollection({"ap": FrameLevelAP(clip_len=self.clip_len)})
