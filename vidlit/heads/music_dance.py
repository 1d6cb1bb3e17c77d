"""MuDaR: music-dance representation learning with explicit and implicit rhythm synchronization.

Wang et al., "Learning Music-Dance Representations through Explicit-Implicit Rhythm
Synchronization" (MuDaR, 2022). The head reads the windows of
:class:`vidlit.data.music_dance.MusicDanceDataModule` and has three parts:

- **Explicit rhythm** (MuDaR Sec. 3.1-3.2): the dance's visual onset envelope and the music's
  sound-intensity onset envelope are aligned by :func:`rhythm_alignment` (the best normalized
  cross-correlation over small lags); each prediction carries the alignment score and lag, and
  the envelopes are inputs of both encoders.
- **Implicit rhythm** (Sec. 3.3): a dance encoder (motion energy on a grid + visual envelope,
  temporal convolutions) and a music encoder (onset envelope, plus the timbre of a VGGish-shaped
  log-mel encoder) map a window to one embedding each, the rhythm part of both through one
  shared rhythm encoder (:class:`MuDaRHead`); symmetric
  InfoNCE pulls paired dance and music together against the batch's other windows, and an
  in-sync classifier tells the true pair from the same music shifted in time (the temporal
  consistency the paper's model predicts).
- **Downstream**: dance-genre classification from the joint representation (pooled dance
  features and music timbre), and music-to-dance / dance-to-music retrieval by cosine similarity
  of the embeddings.

Dances of one music over the same span share that music window (AIST++ aligns every dance of
``mBR0`` to the same track): InfoNCE counts every such pair as positive, and retrieval scores a
music query by the best-ranked of its dances (:class:`vidlit.metrics.music_dance.MusicDanceRetrieval`).

Shape legend: ``b`` windows, ``t`` motion steps, ``c`` motion grid cells, ``n`` envelope frames
(100 Hz), ``s`` seconds, ``k`` rhythm bins, ``d`` model width, ``e`` embedding width.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torchmetrics import MetricCollection

from vidlit.backbones.audio import create_audio_encoder
from vidlit.core.ids import stable_id
from vidlit.formats.music_dance import MusicDanceBatch
from vidlit.heads.base import TaskHead
from vidlit.layers.contrastive import clip_logit_scale, contrastive_loss
from vidlit.layers.log_mel import NUM_MEL_BANDS
from vidlit.metrics.music_dance import GenreAccuracy, MusicDanceRetrieval, SyncAccuracy

__all__ = ["MuDaRHead", "multi_positive_info_nce", "rhythm_alignment"]


def rhythm_alignment(visual_env: Tensor, audio_env: Tensor, max_lag: int) -> tuple[Tensor, Tensor]:
    """Explicit rhythm synchronization: the best normalized cross-correlation of two onset envelopes.

    For every lag ``l`` in ``[-max_lag, max_lag]`` the Pearson correlation of ``visual[t]`` and
    ``audio[t + l]`` over the frames where both exist is computed; the score is the largest, the
    lag its argmax (the earliest on ties). A positive lag means the music's onsets come ``l``
    frames after the dance's. Identical envelopes score 1 at lag 0; a constant envelope scores 0.

    Args:
        visual_env: ``[..., n]`` visual onset envelope.
        audio_env: ``[..., n]`` music onset envelope at the same rate.
        max_lag: largest shift in frames tried each way (``< n``).

    Returns:
        ``(score [...], lag [...])``: the score in ``[-1, 1]`` and the lag in frames (int64).
    """
    if visual_env.shape != audio_env.shape:
        raise ValueError(f"envelopes differ in shape: {tuple(visual_env.shape)} vs {tuple(audio_env.shape)}")
    n = visual_env.shape[-1]
    if not 0 <= max_lag < n:
        raise ValueError(f"max_lag must be in [0, {n}) for {n}-frame envelopes, got {max_lag}")
    x, y = visual_env.float(), audio_env.float()
    scores = []
    for lag in range(-max_lag, max_lag + 1):
        a = x[..., max(0, -lag) : n - max(0, lag)]
        b = y[..., max(0, lag) : n - max(0, -lag)]
        a = a - a.mean(-1, keepdim=True)
        b = b - b.mean(-1, keepdim=True)
        norm = (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-8)
        scores.append((a * b).sum(-1) / norm)
    scores = torch.stack(scores, dim=-1)  # ... lags
    best, index = scores.max(dim=-1)
    return best, index - max_lag


def multi_positive_info_nce(
    dance: Tensor, music: Tensor, keys: Tensor, logit_scale: Tensor, gather: bool = True
) -> Tensor:
    """Symmetric InfoNCE where every pair with the same music window is a positive.

    CLIP's loss generalized to several correct items per query (the multi-positive NCE of
    MIL-NCE, Miech et al., CVPR 2020): ``-log(sum_pos exp(s) / sum_all exp(s))`` per query, for
    dance-to-music and music-to-dance, averaged; with one positive per query it equals CLIP's
    loss. It is :func:`vidlit.layers.contrastive.contrastive_loss` with ``keys`` (negatives
    gathered from every process under ``torch.distributed``), returning the loss only.

    Args:
        dance: ``[b, e]`` L2-normalized dance embeddings.
        music: ``[b, e]`` L2-normalized music embeddings of the same windows.
        keys: ``[b]`` int64 music-window keys: equal keys are the same music window.
        logit_scale: scalar inverse temperature (already exponentiated and clamped).
        gather: gather negatives from every process.
    """
    if dance.ndim != 2 or dance.shape != music.shape or keys.shape != dance.shape[:1]:
        raise ValueError(
            f"need [b, e] dance and music and [b] keys, got {tuple(dance.shape)}, {tuple(music.shape)}, "
            f"{tuple(keys.shape)}"
        )
    return contrastive_loss(dance, music, logit_scale, gather=gather, keys=keys)[0]


def _join(rhythm: Tensor, content: Tensor) -> Tensor:
    """Unit-norm embedding from an L2-normalized rhythm half and a content half (normalized here)."""
    return torch.cat([rhythm, F.normalize(content, dim=-1)], dim=-1) / math.sqrt(2.0)


class _TemporalConv(nn.Sequential):
    """Two 1-D convolutions over rhythm bins: ``[b, c_in, k] -> [b, d, k]``."""

    def __init__(self, in_dim: int, dim: int, kernel: int = 5, dropout: float = 0.0):
        super().__init__(
            nn.Conv1d(in_dim, dim, kernel, padding=kernel // 2),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv1d(dim, dim, kernel, padding=kernel // 2),
            nn.GELU(),
        )


class MuDaRHead(TaskHead):
    """MuDaR-style music-dance head: rhythm and content encoders, InfoNCE, in-sync and genre classifiers.

    Each embedding has two halves, each L2-normalized (the whole then scaled to unit norm):

    - **rhythm** (explicit synchronization in a shared space): one rhythm encoder, *shared* by
      the visual and the music onset envelope, max-pools an envelope to ``time_bins`` bins (no
      beat is averaged away), runs temporal convolutions and flattens over time, so *when* the
      beats fall is part of the embedding: two windows of one track embed apart. Sharing the
      weights puts dance and music rhythm in one space from the start.
    - **content** (implicit): the dance's motion energy (projected per step, pooled to the bins,
      with its rhythm bins, temporal convolutions, averaged over time) and the music's timbre (a
      VGGish-shaped encoder over log-mel patches, averaged over seconds, with the mean log-mel
      spectrum), each projected.

    Losses (weights in brackets): multi-positive symmetric InfoNCE between dance and music
    embeddings with a learned temperature (1); binary cross-entropy of the in-sync classifier, on
    rhythm bins of both streams, for the true pair (label 1) and for the pair with the music's
    envelope circularly shifted by ``[min_shift, 1 - min_shift]`` of the window, at random in
    training and by half a window in evaluation (label 0) (``sync_weight``); cross-entropy of the
    genre from the dance content features and the music timbre (``genre_weight``).

    Args:
        in_dim: motion features per step (linked from the data module's ``feature_dim``).
        num_classes: dance genres (linked; 10 for AIST).
        dim: width of the temporal convolutions.
        embed_dim: width of the joint embedding space (even: rhythm and content halves).
        time_bins: rhythm bins per window.
        bin_dim: per-bin width before the rhythm embedding flattens over time.
        audio_encoder: :func:`vidlit.backbones.audio.create_audio_encoder` size for the music
            timbre (``"audio_test"`` tiny, ``"vggish"`` full).
        dropout: dropout in the temporal convolutions.
        sync_weight: weight of the in-sync loss.
        genre_weight: weight of the genre loss.
        min_shift: smallest shift of an out-of-sync negative, as a fraction of the window.
        max_lag: largest lag, in envelope frames (10 ms), of the explicit alignment in ``predict``.
        init_temperature: initial InfoNCE temperature (CLIP: 0.07).
    """

    input: ClassVar[str] = "motion"
    feature_layout: ClassVar[str] = "temporal"

    def __init__(
        self,
        in_dim: int,
        num_classes: int = 10,
        dim: int = 64,
        embed_dim: int = 64,
        time_bins: int = 25,
        bin_dim: int = 16,
        audio_encoder: str = "audio_test",
        dropout: float = 0.1,
        sync_weight: float = 1.0,
        genre_weight: float = 0.5,
        min_shift: float = 0.2,
        max_lag: int = 10,
        init_temperature: float = 0.07,
    ):
        super().__init__()
        if not 0.0 < min_shift <= 0.5:
            raise ValueError(f"min_shift must be in (0, 0.5], got {min_shift}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if embed_dim < 2 or embed_dim % 2:
            raise ValueError(f"embed_dim must be even (rhythm and content halves), got {embed_dim}")
        self.in_dim, self.num_classes, self.time_bins = in_dim, num_classes, time_bins
        self.sync_weight, self.genre_weight = sync_weight, genre_weight
        self.min_shift, self.max_lag = min_shift, max_lag
        half = embed_dim // 2
        # rhythm: one encoder for both onset envelopes
        self.rhythm_conv = _TemporalConv(1, dim, dropout=dropout)
        self.rhythm_bins = nn.Linear(dim, bin_dim)
        self.rhythm_embed = nn.Linear(time_bins * bin_dim, half)
        # dance content: motion energy per bin, with the dance's rhythm bins
        self.motion_proj = nn.Linear(in_dim, dim)
        self.dance_conv = _TemporalConv(2 * dim, dim, dropout=dropout)
        self.dance_content = nn.Linear(dim, half)
        # music content: timbre
        self.timbre_encoder = create_audio_encoder(audio_encoder)
        self.timbre_proj = nn.Linear(self.timbre_encoder.embed_dim + NUM_MEL_BANDS, dim)
        self.music_content = nn.Linear(dim, half)
        self.sync = nn.Sequential(
            nn.Conv1d(3 * dim, dim, 3, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(dim, 1),
        )
        self.genre = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, num_classes))
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    def _check(self, motion: Tensor, batch: dict[str, Any]) -> None:
        name = type(self).__name__
        for key in ("visual_envelope", "audio_envelope", "audio"):
            if key not in batch:
                raise ValueError(f"{name}: the batch has no {key!r}")
        if motion.ndim != 3 or motion.shape[-1] != self.in_dim:
            raise ValueError(
                f"{name}: motion must be [B, T, {self.in_dim}] (in_dim), got {tuple(motion.shape)}"
            )
        v, a = batch["visual_envelope"], batch["audio_envelope"]
        if v.shape != a.shape or v.ndim != 2 or v.shape[0] != motion.shape[0]:
            raise ValueError(
                f"{name}: visual_envelope and audio_envelope must both be [B={motion.shape[0]}, N], "
                f"got {tuple(v.shape)} and {tuple(a.shape)}"
            )

    def encode_rhythm(self, envelope: Tensor) -> tuple[Tensor, Tensor]:
        """Onset envelope ``[b, n]`` (visual or music) -> bins ``[b, d, k]``, embedding ``[b, e/2]``."""
        env = F.adaptive_max_pool1d(envelope[:, None].to(self.rhythm_embed.weight.dtype), self.time_bins)
        bins = self.rhythm_conv(env)  # b d k
        flat = rearrange(self.rhythm_bins(rearrange(bins, "b d k -> b k d")), "b k f -> b (k f)")
        return bins, F.normalize(self.rhythm_embed(flat), dim=-1)

    def encode_dance(self, motion: Tensor, visual_env: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Motion ``[b, t, c]`` and envelope ``[b, n]`` -> rhythm bins ``[b, d, k]``, content ``[b, d]``,
        embedding ``[b, e]``."""
        rhythm_bins, rhythm = self.encode_rhythm(visual_env)
        x = F.adaptive_avg_pool1d(rearrange(self.motion_proj(motion), "b t d -> b d t"), self.time_bins)
        content = self.dance_conv(torch.cat([x, rhythm_bins], dim=1)).mean(dim=-1)  # b d
        return rhythm_bins, content, _join(rhythm, self.dance_content(content))

    def encode_music(self, audio_env: Tensor, patches: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Envelope ``[b, n]`` and log-mel ``[b, s, 96, 64]`` -> rhythm bins ``[b, d, k]``, timbre ``[b, d]``,
        embedding ``[b, e]``."""
        rhythm_bins, rhythm = self.encode_rhythm(audio_env)
        # the encoder's per-second embeddings and the long-term mean spectrum (a classic timbre
        # descriptor, blind to where the beats fall), averaged over the window
        spectrum = patches.mean(dim=(1, 2))  # b m
        timbre = self.timbre_proj(torch.cat([self.timbre_encoder(patches).mean(dim=1), spectrum], dim=-1))
        return rhythm_bins, timbre, _join(rhythm, self.music_content(timbre))

    def _shifts(self, batch_size: int, n: int, device: torch.device) -> Tensor:
        lo = max(1, int(math.ceil(self.min_shift * n)))
        if not self.training:
            return torch.full((batch_size,), n // 2, device=device)
        return torch.randint(lo, max(lo + 1, n - lo + 1), (batch_size,), device=device)

    def _sync_logit(self, dance_bins: Tensor, music_bins: Tensor) -> Tensor:
        return self.sync(torch.cat([dance_bins, music_bins, dance_bins * music_bins], dim=1)).squeeze(-1)

    def forward(self, features: Tensor, batch: MusicDanceBatch) -> dict[str, Tensor]:
        """Embeddings and logits of a batch; ``features`` is ``batch["motion"]`` ``[b, t, c]``.

        Returns:
            ``dance_embedding`` / ``music_embedding`` ``[b, e]`` (L2-normalized), ``genre_logits``
            ``[b, num_classes]``, ``sync_logits`` ``[b, 2]`` (true pair, shifted pair) and
            ``logit_scale`` (scalar).
        """
        self._check(features, batch)
        audio_env = batch["audio_envelope"]
        dance_bins, content, dance = self.encode_dance(features, batch["visual_envelope"])
        music_bins, timbre, music = self.encode_music(audio_env, batch["audio"])
        # out of sync: the same music, its rhythm circularly shifted against the dance
        shifts = self._shifts(audio_env.shape[0], audio_env.shape[1], audio_env.device)
        index = (
            torch.arange(audio_env.shape[1], device=audio_env.device)[None] - shifts[:, None]
        ) % audio_env.shape[1]
        shifted_bins, _ = self.encode_rhythm(audio_env.gather(1, index))
        sync_logits = torch.stack(
            [self._sync_logit(dance_bins, music_bins), self._sync_logit(dance_bins, shifted_bins)], dim=-1
        )
        return {
            "dance_embedding": dance,
            "music_embedding": music,
            "genre_logits": self.genre(torch.cat([content, timbre], dim=-1)),
            "sync_logits": sync_logits,
            "logit_scale": clip_logit_scale(self.log_logit_scale),
        }

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """``{"loss", "contrastive", "sync", "genre"}``; see the class docstring."""
        keys = torch.tensor(
            [stable_id(m) for m in batch["music_ids"]],
            dtype=torch.long,
            device=outputs["dance_embedding"].device,
        )
        contrastive = multi_positive_info_nce(
            outputs["dance_embedding"], outputs["music_embedding"], keys, outputs["logit_scale"]
        )
        sync_logits = outputs["sync_logits"].float()
        sync_target = torch.zeros_like(sync_logits)
        sync_target[:, 0] = 1.0
        sync = F.binary_cross_entropy_with_logits(sync_logits, sync_target)
        genre = F.cross_entropy(outputs["genre_logits"].float(), batch["genre"])
        total = contrastive + self.sync_weight * sync + self.genre_weight * genre
        return {
            "loss": total,
            "contrastive": contrastive.detach(),
            "sync": sync.detach(),
            "genre": genre.detach(),
        }

    @torch.no_grad()
    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per window: ids, both embeddings, genre ``scores`` / ``label``, ``sync_scores`` (true,
        shifted) and the explicit rhythm ``alignment`` score and ``lag_seconds`` (music after dance)."""
        scores = outputs["genre_logits"].detach().float().softmax(-1).cpu()
        sync = outputs["sync_logits"].detach().float().sigmoid().cpu()
        v, a = batch["visual_envelope"], batch["audio_envelope"]
        alignment, lag = rhythm_alignment(v, a, min(self.max_lag, v.shape[-1] - 1))
        dance = outputs["dance_embedding"].detach().float().cpu()
        music = outputs["music_embedding"].detach().float().cpu()
        return [
            {
                "video_id": vid,
                "music_id": batch["music_ids"][i],
                "dance_embedding": dance[i],
                "music_embedding": music[i],
                "scores": scores[i],
                "label": int(scores[i].argmax()),
                "sync_scores": sync[i],
                "alignment": float(alignment[i]),
                "lag_seconds": float(lag[i]) / 100.0,
            }
            for i, vid in enumerate(batch["video_ids"])
        ]

    def metrics(self) -> MetricCollection:
        """Retrieval (``m2d``/``d2m`` R@1/5/10, MdR, MnR), genre top-1 and in-sync accuracy."""
        return MetricCollection(
            {
                "retrieval": MusicDanceRetrieval(),
                "genre": GenreAccuracy(num_classes=self.num_classes),
                "sync": SyncAccuracy(),
            }
        )
