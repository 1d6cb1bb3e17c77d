"""LORIS: rhythm-conditioned soundtrack generation by waveform diffusion (Yu et al., ICML 2023).

A 1-D U-Net denoises a patched waveform (no VAE, as in LORIS's released code), conditioned on
the video through cross-attention in its inner blocks:

- **visual**: I3D features -> 2-layer bidirectional LSTM -> linear (Sec. 4.2);
- **rhythm**: the binary visual-beat sequence (directogram -> flux -> peaks, computed by the
  reader) -> beat embedding + sinusoidal position -> one transformer block (Sec. 4.1);
- **genre** (dance only): an embedding.

Each condition has its own cross-attention. Visual and rhythm tokens carry their time in
seconds, and their attention adds a learned per-head distance penalty ``-s_h |t_query - t_key|``
(ALiBi, Press et al., ICLR 2022, in seconds): the audio at time ``t`` starts out looking at the
beats near ``t``, which lets a small model learn the beat-to-hit mapping in minutes; a head
can learn ``s_h -> 0`` to attend globally. Classifier-free guidance: in training each condition
is replaced by its learned null embedding with probability ``cond_dropout``; sampling mixes the
conditional and the all-null outputs with ``guidance_scale``.

Diffusion: EDM (Karras et al., NeurIPS 2022) preconditioning and loss weighting, training noise
levels from a log-normal (``log sigma ~ N(-1.6, 1.4^2)``: audio-diffusion-pytorch's ``N(-3, 1)``,
which LORIS uses, leaves the noise levels above ~0.3, where a sample's beats are placed, almost
untrained for a small model and a short run), sampling on a Karras sigma schedule with a
2nd-order solver. The preconditioning, the schedule and the solver are diffusers'
``EDMDPMSolverMultistepScheduler`` (DPM-Solver++(2M), one network evaluation per step, Lu et al.
2022); training and sampling share its ``precondition_*`` functions, so they cannot drift apart.
The libraries LORIS builds on were not used: audio-diffusion-pytorch 0.1.x dropped the K-diffusion /
ADPM2 code LORIS used (only v-diffusion remains) and imports torchaudio, and a-unet (no release since
2023) pulls ``data-science-types`` stubs; the U-Net and its cross-attention are written here.

Shape legend: ``b`` clips, ``n`` samples, ``p`` patch, ``l`` tokens at a U-Net level, ``c``
channels, ``m`` condition tokens, ``d`` condition width, ``h`` heads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torchmetrics import MetricCollection

from vidlit.core.progress import progress_bar
from vidlit.formats.loris import POSE_RATE, VISUAL_RATE, LorisPrediction
from vidlit.heads.base import TaskHead
from vidlit.metrics.beat_alignment import BeatAlignment

__all__ = ["LorisHead", "LorisUNet"]


def _sinusoidal(positions: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """``[..., dim]`` sinusoidal embedding of float positions (sines, then cosines).

    Not :func:`vidlit.layers.pos_embed.sincos_table` (VideoMAE's interleaved float64 table of integer
    positions): the float32 ``exp(-log(T) i/h)`` frequencies differ from it in the last bits (3e-6 over
    50 positions of width 256), and trained models expect these.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=positions.device) / half)
    args = positions[..., None].float() * freqs
    return torch.cat([args.sin(), args.cos()], dim=-1)


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class ResBlock1d(nn.Module):
    """Two 3-tap convolutions with GroupNorm/SiLU, the noise embedding as scale and shift (FiLM)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv1d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[..., None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class CrossAttention(nn.Module):
    """Audio tokens attend to one condition's tokens, with an optional time-distance penalty.

    Args:
        dim: audio channels.
        cond_dim: condition width.
        num_heads: attention heads.
        timed: add ``-softplus(w_h) * |t_q - t_k|`` (seconds) to the logits when key times are given.
    """

    def __init__(self, dim: int, cond_dim: int, num_heads: int, timed: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(_groups(dim), dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(cond_dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim)
        # penalties from 46 to 23 per second (3 to 1.4 per 16-Hz frame): sharp to broader time windows
        self.slope = nn.Parameter(torch.linspace(46.0, 23.0, num_heads)) if timed else None

    def forward(self, x: Tensor, tokens: Tensor, query_times: Tensor, key_times: Tensor | None) -> Tensor:
        h = rearrange(self.norm(x), "b c l -> b l c")
        q = rearrange(self.q(h), "b l (h e) -> b h l e", h=self.num_heads)
        k, v = rearrange(self.kv(tokens), "b m (two h e) -> two b h m e", two=2, h=self.num_heads)
        bias = None
        if self.slope is not None and key_times is not None:
            distance = (query_times[:, None] - key_times[None, :]).abs()  # l m
            bias = -F.softplus(self.slope)[:, None, None] * distance  # h l m
            bias = bias.to(q.dtype)[None]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return x + rearrange(self.out(rearrange(out, "b h l e -> b l (h e)")), "b l c -> b c l")


class LorisUNet(nn.Module):
    """The conditional 1-D waveform U-Net: patched audio in, EDM's ``F(c_in x, c_noise)`` out.

    Args:
        patch: samples per input token (LORIS patches the waveform before the U-Net).
        channels: width of each level; level ``i + 1`` is ``factors[i]`` times shorter.
        factors: down-sampling factor between levels.
        attn_levels: levels (0 = the finest) whose blocks cross-attend to the conditions.
        num_conditions: the conditions, each with its own cross-attention; ``timed[i]`` says
            whether condition ``i`` has token times.
        timed: per condition, whether its attention has the time-distance penalty.
        cond_dim: condition width.
        num_heads: attention heads.
    """

    def __init__(
        self,
        patch: int,
        channels: Sequence[int],
        factors: Sequence[int],
        attn_levels: Sequence[int],
        timed: Sequence[bool],
        cond_dim: int,
        num_heads: int,
    ):
        super().__init__()
        if len(factors) != len(channels) - 1:
            raise ValueError(
                f"need one factor per level transition: {len(channels)} levels, factors {factors}"
            )
        self.patch = patch
        self.factors = tuple(factors)
        self.attn_levels = set(attn_levels)
        emb_dim = 4 * channels[0]
        self.noise_mlp = nn.Sequential(
            nn.Linear(channels[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.stem = nn.Conv1d(patch, channels[0], 3, padding=1)

        def attn(level: int, c: int) -> nn.ModuleList:
            if level not in self.attn_levels:
                return nn.ModuleList()
            return nn.ModuleList(CrossAttention(c, cond_dim, num_heads, t) for t in timed)

        self.down = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, c in enumerate(channels):
            self.down.append(ResBlock1d(channels[i - 1] if i else c, c, emb_dim))
            self.down_attn.append(attn(i, c))
            if i < len(factors):
                self.downsample.append(nn.Conv1d(c, c, factors[i], stride=factors[i]))
        self.mid = ResBlock1d(channels[-1], channels[-1], emb_dim)
        self.up = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(channels))):
            c_next = channels[i - 1] if i else channels[0]
            self.up.append(ResBlock1d(2 * channels[i], channels[i], emb_dim))
            self.up_attn.append(attn(i, channels[i]))
            if i:
                self.upsample.append(
                    nn.ConvTranspose1d(channels[i], c_next, factors[i - 1], stride=factors[i - 1])
                )
        self.head = nn.Sequential(
            nn.GroupNorm(_groups(channels[0]), channels[0]),
            nn.SiLU(),
            nn.Conv1d(channels[0], patch, 3, padding=1),
        )

    @property
    def hop(self) -> int:
        """Samples per token at the coarsest level: a waveform's length must be a multiple of it."""
        return self.patch * math.prod(self.factors)

    def _attend(
        self,
        x: Tensor,
        blocks: nn.ModuleList,
        conditions: list[tuple[Tensor, Tensor | None]],
        seconds_per_token: float,
    ) -> Tensor:
        if not len(blocks):
            return x
        query_times = (torch.arange(x.shape[-1], device=x.device) + 0.5) * seconds_per_token
        for block, (tokens, times) in zip(blocks, conditions):
            x = block(x, tokens, query_times, times)
        return x

    def forward(
        self, x: Tensor, c_noise: Tensor, conditions: list[tuple[Tensor, Tensor | None]], sample_rate: int
    ) -> Tensor:
        """``[b, 1, n]`` scaled noisy audio, ``[b]`` noise levels, per condition ``(tokens [b, m, d],
        times [m] or None)`` -> ``[b, 1, n]``."""
        emb = self.noise_mlp(_sinusoidal(c_noise.reshape(-1) * 1000.0, self.stem.out_channels))
        x = self.stem(rearrange(x, "b 1 (l p) -> b p l", p=self.patch))
        seconds = self.patch / sample_rate
        skips = []
        for i, block in enumerate(self.down):
            x = self._attend(block(x, emb), self.down_attn[i], conditions, seconds)
            skips.append(x)
            if i < len(self.downsample):
                x = self.downsample[i](x)
                seconds *= self.factors[i]
        x = self.mid(x, emb)
        for j, block in enumerate(self.up):
            x = self._attend(
                block(torch.cat([x, skips.pop()], dim=1), emb), self.up_attn[j], conditions, seconds
            )
            if j < len(self.upsample):
                x = self.upsample[j](x)
                seconds /= self.factors[len(self.factors) - 1 - j]
        return rearrange(self.head(x), "b p l -> b 1 (l p)")


class LorisHead(TaskHead):
    """LORIS's conditional waveform diffusion model as a task head (see the module docstring).

    ``forward`` noises the batch's audio at a random EDM noise level (a fixed one per batch
    position in eval mode, so validation losses compare across epochs) and denoises it; ``loss``
    is EDM's weighted denoising loss; ``predict`` samples a soundtrack per clip (a progress bar
    while sampling) and ``metrics`` are LORIS's beat scores.

    Args:
        in_dim: I3D feature width (linked from the data module's ``feature_dim``).
        num_classes: genres (linked from the data module: 10 for dance, 0 for no genre condition).
        patch: waveform samples per token.
        channels: U-Net level widths.
        factors: U-Net down-sampling factors.
        attn_levels: U-Net levels with cross-attention.
        cond_dim: condition width.
        num_heads: attention heads.
        lstm_layers: layers of the visual BiLSTM (LORIS: 2).
        cond_dropout: probability of replacing each condition by its null embedding in training.
        sigma_data: EDM's data standard deviation.
        sigma_min: smallest sampling noise level.
        sigma_max: largest sampling noise level.
        rho: Karras schedule exponent.
        train_sigma_mean: mean of ``log sigma`` in training.
        train_sigma_std: standard deviation of ``log sigma`` in training.
        sampling_steps: solver steps of ``predict`` (LORIS: about 50).
        guidance_scale: classifier-free guidance scale of ``predict`` (1: no guidance).
        progress: draw a progress bar while sampling.
        seed: seed of the sampling noise and of the eval-mode noise levels.
    """

    input = "audio"
    feature_layout = "temporal"

    def __init__(
        self,
        in_dim: int = 1024,
        num_classes: int = 0,
        patch: int = 16,
        channels: Sequence[int] = (32, 64, 96),
        factors: Sequence[int] = (4, 4),
        attn_levels: Sequence[int] = (1, 2),
        cond_dim: int = 64,
        num_heads: int = 4,
        lstm_layers: int = 2,
        cond_dropout: float = 0.1,
        sigma_data: float = 0.2,
        sigma_min: float = 1e-4,
        sigma_max: float = 1.0,
        rho: float = 9.0,
        train_sigma_mean: float = -1.6,
        train_sigma_std: float = 1.4,
        sampling_steps: int = 50,
        guidance_scale: float = 3.0,
        progress: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if cond_dim % 2 or cond_dim % num_heads:
            raise ValueError(f"cond_dim must be even and divisible by num_heads, got {cond_dim}, {num_heads}")
        if not 0.0 <= cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {cond_dropout}")
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.cond_dim = cond_dim
        self.cond_dropout = cond_dropout
        self.train_sigma = (train_sigma_mean, train_sigma_std)
        self.sampling_steps = sampling_steps
        self.guidance_scale = guidance_scale
        self.progress = progress
        self.seed = seed
        self.schedule = dict(sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=sigma_data, rho=rho)
        # conditions: rhythm (beats), visual (I3D), genre (dance only)
        self.beat_embed = nn.Embedding(2, cond_dim)
        self.rhythm_block = nn.TransformerEncoderLayer(
            cond_dim, num_heads, 2 * cond_dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.visual_lstm = nn.LSTM(in_dim, cond_dim // 2, lstm_layers, batch_first=True, bidirectional=True)
        self.visual_proj = nn.Linear(cond_dim, cond_dim)
        self.genre_embed = nn.Embedding(num_classes, cond_dim) if num_classes > 0 else None
        names = ["rhythm", "visual"] + (["genre"] if num_classes > 0 else [])
        self.condition_names = tuple(names)
        self.null = nn.ParameterDict({name: nn.Parameter(torch.randn(cond_dim) * 0.02) for name in names})
        self.unet = LorisUNet(
            patch, channels, factors, attn_levels, [name != "genre" for name in names], cond_dim, num_heads
        )

    def _scheduler(self) -> Any:
        from diffusers import EDMDPMSolverMultistepScheduler

        return EDMDPMSolverMultistepScheduler(
            **self.schedule, sigma_schedule="karras", solver_order=2, final_sigmas_type="zero"
        )

    def encode_conditions(
        self, batch: dict[str, Any], drop: dict[str, Tensor] | None = None
    ) -> list[tuple[Tensor, Tensor | None]]:
        """``(tokens [b, m, d], times [m] or None)`` per condition; ``drop[name]`` ``[b]`` bool selects
        the clips that get the condition's null embedding instead."""
        beats = batch["beats"].float()
        device = beats.device
        frames = torch.arange(beats.shape[1], device=device)
        rhythm = self.beat_embed(beats.round().long().clamp(0, 1)) + _sinusoidal(frames, self.cond_dim)
        rhythm = self.rhythm_block(rhythm)
        visual, _ = self.visual_lstm(batch["visual"].to(self.visual_proj.weight.dtype))
        visual = self.visual_proj(visual)
        steps = torch.arange(visual.shape[1], device=device)
        out = {
            "rhythm": (rhythm, frames.float() / POSE_RATE),
            "visual": (visual, (steps.float() + 0.5) / VISUAL_RATE),
        }
        if self.genre_embed is not None:
            genre = batch["genre"].to(device)
            tokens = self.genre_embed(genre.clamp_min(0))[:, None]
            # a clip without a genre gets the null embedding
            tokens = torch.where((genre < 0)[:, None, None], self.null["genre"].to(tokens.dtype), tokens)
            out["genre"] = (tokens, None)
        conditions = []
        for name in self.condition_names:
            tokens, times = out[name]
            if drop is not None and name in drop:
                tokens = torch.where(drop[name][:, None, None], self.null[name].to(tokens.dtype), tokens)
            conditions.append((tokens, times))
        return conditions

    def denoise(self, scheduler: Any, x: Tensor, sigma: Tensor, conditions: list, sample_rate: int) -> Tensor:
        """EDM's ``D(x; sigma)`` for ``[b, 1, n]`` noisy audio and ``[b]`` noise levels."""
        s = sigma.reshape(-1, 1, 1).to(x.dtype)
        out = self.unet(
            scheduler.precondition_inputs(x, s), scheduler.precondition_noise(sigma), conditions, sample_rate
        )
        return scheduler.precondition_outputs(x, out, s)

    def _check_audio(self, audio: Tensor) -> None:
        if audio.ndim != 3 or audio.shape[1] != 1 or audio.shape[-1] % self.unet.hop:
            raise ValueError(
                f"LorisHead expects audio [b, 1, n] with n a multiple of {self.unet.hop} "
                f"(patch x down-sampling factors), got shape {tuple(audio.shape)}"
            )

    def forward(self, features: Tensor, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Denoise the clean ``[b, 1, n]`` audio at one noise level per clip (see the class)."""
        self._check_audio(features)
        b, device = features.shape[0], features.device
        generator = None if self.training else torch.Generator().manual_seed(self.seed)
        log_sigma = torch.randn(b, generator=generator) * self.train_sigma[1] + self.train_sigma[0]
        sigma = log_sigma.exp().to(device)
        noise = torch.randn(features.shape, generator=generator).to(device, features.dtype)
        drop = None
        if self.training and self.cond_dropout > 0:
            drop = {name: torch.rand(b, device=device) < self.cond_dropout for name in self.condition_names}
        conditions = self.encode_conditions(batch, drop)
        scheduler = self._scheduler()
        denoised = self.denoise(
            scheduler, features + sigma.reshape(-1, 1, 1) * noise, sigma, conditions, batch["sample_rate"]
        )
        return {"denoised": denoised, "clean": features, "sigma": sigma}

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """EDM's weighted denoising loss ``(sigma^2 + sigma_d^2) / (sigma sigma_d)^2 |D - x|^2``."""
        sigma, sd = outputs["sigma"].float(), self.schedule["sigma_data"]
        weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
        error = (outputs["denoised"].float() - outputs["clean"].float()).pow(2).mean(dim=(1, 2))
        loss = (weight * error).mean()
        return {"loss": loss, "mse": error.mean().detach()}

    @torch.no_grad()
    def sample(
        self,
        batch: dict[str, Any],
        num_samples: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
    ) -> Tensor:
        """Generate ``[b, n]`` waveforms for a batch's conditions (Karras sigmas, DPM-Solver++(2M), CFG).

        Args:
            batch: the conditions (``beats``, ``visual``, ``genre``, ``sample_rate``).
            num_samples: length ``n``; defaults to the batch's audio length.
            steps: solver steps; defaults to :attr:`sampling_steps`.
            guidance_scale: defaults to :attr:`guidance_scale`; 1 samples the conditional model alone.
            seed: the initial noise's seed; defaults to the head's.
        """
        steps = steps or self.sampling_steps
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        n = num_samples or batch["audio"].shape[-1]
        b = batch["beats"].shape[0]
        device = batch["beats"].device
        dtype = self.unet.stem.weight.dtype
        if n % self.unet.hop:
            raise ValueError(f"num_samples must be a multiple of {self.unet.hop}, got {n}")
        conditions = self.encode_conditions(batch)
        if scale != 1.0:
            # the conditional and the all-null halves in one network call per step
            null = {name: torch.ones(b, dtype=torch.bool, device=device) for name in self.condition_names}
            unconditional = self.encode_conditions(batch, null)
            conditions = [(torch.cat([c, u]), t) for (c, t), (u, _) in zip(conditions, unconditional)]
        scheduler = self._scheduler()
        scheduler.set_timesteps(steps, device=device)
        generator = torch.Generator().manual_seed(self.seed if seed is None else seed)
        # EDM starts from N(0, sigma_max^2) (the scheduler's init_noise_sigma is sqrt(sigma_max^2 + 1))
        x = (torch.randn(b, 1, n, generator=generator) * scheduler.sigmas[0]).to(device, dtype)
        with progress_bar("sampling soundtracks", steps, enabled=self.progress) as advance:
            for t in scheduler.timesteps:
                model_in = scheduler.scale_model_input(x, t)
                if scale != 1.0:
                    model_in = torch.cat([model_in, model_in])
                c_noise = t.reshape(1).expand(model_in.shape[0]).to(device)
                out = self.unet(model_in.to(dtype), c_noise, conditions, batch["sample_rate"])
                if scale != 1.0:
                    cond, uncond = out.chunk(2)
                    out = uncond + scale * (cond - uncond)
                x = scheduler.step(out.float(), t, x.float()).prev_sample.to(dtype)
                advance()
        return x[:, 0]

    def predict(self, outputs: Any, batch: dict[str, Any]) -> list[LorisPrediction]:
        """One generated soundtrack per clip."""
        waveforms = self.sample(batch)
        return [
            LorisPrediction(video_id=vid, waveform=w.float().cpu(), sample_rate=int(batch["sample_rate"]))
            for vid, w in zip(batch["video_ids"], waveforms)
        ]

    def metrics(self) -> MetricCollection:
        return MetricCollection({"beat": BeatAlignment()})
