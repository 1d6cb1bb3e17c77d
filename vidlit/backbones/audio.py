"""Audio front end: VGGish-style log-mel patches and a small CNN giving one 128-d embedding per second.

The audio-visual datasets (AVE, LLP, XD-Violence) ship VGGish features: one 128-d vector per
0.96 s of 16 kHz mono audio. This module lets raw audio (a ``.wav`` or a video's soundtrack, read
with PyAV by :func:`vidlit.data.video.read_audio`) stand in for them, with no torchaudio or
librosa:

>>> wave, rate = read_audio("clip.mp4", sample_rate=16000, mono=True)   # [1, n]
>>> patches = log_mel_patches(wave[0], rate)                            # [seconds, 96, 64]
>>> encoder = create_audio_encoder("vggish")                            # random init: train it
>>> encoder(patches[None]).shape                                        # [1, seconds, 128]

The front end follows VGGish's ``mel_features.py`` / ``vggish_input.py`` (Hershey et al., "CNN
Architectures for Large-Scale Audio Classification", ICASSP 2017): 25 ms periodic-Hann frames
every 10 ms, a 512-point FFT magnitude, 64 HTK-mel bands over 125-7500 Hz, ``log(mel + 0.01)``,
and 96-frame (0.96 s) patches. Unlike VGGish, which tiles the signal with 0.96 s hops, patches
start on whole seconds, so embedding ``i`` covers second ``i`` as the datasets' 1-s segments do.
The encoder is VGGish-shaped (3x3 conv blocks with max-pooling, then fully connected layers to
128-d); ``"vggish"`` has VGGish's widths (no pretrained weights are bundled), ``"audio_test"``
is tiny, for tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

__all__ = [
    "AUDIO_ENCODERS",
    "AudioEncoder",
    "create_audio_encoder",
    "log_mel_patches",
    "log_mel_spectrogram",
    "mel_filterbank",
    "onset_envelope",
    "onset_envelope_and_patches",
]

SAMPLE_RATE = 16000
WINDOW_SEC = 0.025
HOP_SEC = 0.010
NUM_MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
PATCH_FRAMES = 96  # 0.96 s of 10 ms frames


def _hz_to_mel(hz: Tensor) -> Tensor:
    """The HTK mel scale, as VGGish uses."""
    return 1127.0 * torch.log1p(hz / 700.0)


def mel_filterbank(
    num_bands: int = NUM_MEL_BANDS,
    num_fft_bins: int = 257,
    sample_rate: int = SAMPLE_RATE,
    low_hz: float = MEL_MIN_HZ,
    high_hz: float = MEL_MAX_HZ,
) -> Tensor:
    """``[num_fft_bins, num_bands]`` triangular mel filters (VGGish's ``spectrogram_to_mel_matrix``).

    Filters are triangles in the mel domain with unit peak; the DC bin gets no weight.
    """
    if not 0.0 <= low_hz < high_hz <= sample_rate / 2:
        raise ValueError(f"need 0 <= low_hz < high_hz <= {sample_rate / 2}, got {low_hz}, {high_hz}")
    bin_mel = _hz_to_mel(torch.linspace(0.0, sample_rate / 2, num_fft_bins, dtype=torch.float64))
    edges = torch.linspace(
        _hz_to_mel(torch.tensor(low_hz, dtype=torch.float64)).item(),
        _hz_to_mel(torch.tensor(high_hz, dtype=torch.float64)).item(),
        num_bands + 2,
        dtype=torch.float64,
    )
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lower) / (center - lower)
    falling = (upper - bin_mel[:, None]) / (upper - center)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    weights[0] = 0.0
    return weights.float()


def log_mel_spectrogram(waveform: Tensor, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """``[..., frames, 64]`` VGGish log-mel frames (25 ms window, 10 ms hop) of 16 kHz ``[..., n]`` audio."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(
            f"log-mel features expect {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; "
            f"read it with read_audio(path, sample_rate={SAMPLE_RATE}, mono=True)"
        )
    window = round(WINDOW_SEC * sample_rate)
    hop = round(HOP_SEC * sample_rate)
    n_fft = 2 ** math.ceil(math.log2(window))
    if waveform.shape[-1] < window:
        raise ValueError(f"audio has {waveform.shape[-1]} samples, fewer than one {window}-sample window")
    # VGGish frames without centring: frame i covers samples [i * hop, i * hop + window)
    frames = waveform.float().unfold(-1, window, hop)  # [..., frames, window]
    hann = torch.hann_window(window, periodic=True, dtype=frames.dtype, device=frames.device)
    magnitude = torch.fft.rfft(frames * hann, n=n_fft).abs()  # [..., frames, n_fft / 2 + 1]
    mel = magnitude @ mel_filterbank(num_fft_bins=n_fft // 2 + 1, sample_rate=sample_rate).to(magnitude)
    return torch.log(mel + LOG_OFFSET)


def _patch_samples(seconds: int, sample_rate: int) -> int:
    """Samples that ``seconds`` patches read: the last patch's start, 95 hops and one window."""
    return (
        (seconds - 1) * sample_rate
        + (PATCH_FRAMES - 1) * round(HOP_SEC * sample_rate)
        + round(WINDOW_SEC * sample_rate)
    )


def _patches(frames: Tensor, seconds: int) -> Tensor:
    """``[seconds, 96, 64]`` patches of ``[frames, 64]`` log-mel frames, patch ``i`` from second ``i``."""
    starts = torch.arange(seconds) * round(1 / HOP_SEC)
    index = starts[:, None] + torch.arange(PATCH_FRAMES)  # [seconds, 96]
    return frames[index]


def _onset_strength(mel: Tensor) -> Tensor:
    """Positive log-mel flux, averaged over bands, per frame (frame 0 is 0): ``[..., frames]``."""
    flux = (mel[..., 1:, :] - mel[..., :-1, :]).clamp_min(0.0).mean(-1)
    return torch.nn.functional.pad(flux, (1, 0))


def _whole_seconds(waveform: Tensor, sample_rate: int, num_seconds: int | None) -> int:
    if waveform.ndim != 1:
        raise ValueError(f"log-mel patches take mono audio [n], got shape {tuple(waveform.shape)}")
    return num_seconds if num_seconds is not None else max(1, waveform.shape[-1] // sample_rate)


def log_mel_patches(
    waveform: Tensor, sample_rate: int = SAMPLE_RATE, num_seconds: int | None = None
) -> Tensor:
    """One ``[96, 64]`` log-mel patch per second of 1-D audio: ``[seconds, 96, 64]``.

    Patch ``i`` holds the 96 frames starting at second ``i``. ``num_seconds`` fixes the count
    (AVE and LLP: 10), padding a short signal with silence; by default it is the number of whole
    seconds (at least one).
    """
    seconds = _whole_seconds(waveform, sample_rate, num_seconds)
    needed = _patch_samples(seconds, sample_rate)
    if waveform.shape[-1] < needed:
        waveform = torch.nn.functional.pad(waveform, (0, needed - waveform.shape[-1]))
    return _patches(log_mel_spectrogram(waveform[:needed], sample_rate), seconds)


def onset_envelope(waveform: Tensor, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """Onset strength per 10 ms frame: positive log-mel flux summed over bands (librosa's ``onset_strength``).

    Peaks mark sound-intensity onsets (beats, hits); the music-rhythm side of music-dance models.
    """
    return _onset_strength(log_mel_spectrogram(waveform, sample_rate))


def onset_envelope_and_patches(
    waveform: Tensor, sample_rate: int = SAMPLE_RATE, num_seconds: int | None = None
) -> tuple[Tensor, Tensor]:
    """``(onset_envelope(waveform), log_mel_patches(waveform))`` from ONE log-mel spectrogram.

    A music-dance loader needs both of every track (rhythm and timbre); the STFT dominates their
    cost, and both read the same uncentred 10 ms frames, so the spectrogram of the whole track
    (padded with silence to the last patch, if short) serves both: the envelope is cut back to
    the frames of the unpadded track.

    Returns:
        ``(envelope [frames], patches [seconds, 96, 64])``, equal to the two functions' outputs.
    """
    seconds = _whole_seconds(waveform, sample_rate, num_seconds)
    window = round(WINDOW_SEC * sample_rate)
    if waveform.shape[-1] < window:
        raise ValueError(f"audio has {waveform.shape[-1]} samples, fewer than one {window}-sample window")
    num_frames = (waveform.shape[-1] - window) // round(HOP_SEC * sample_rate) + 1
    needed = _patch_samples(seconds, sample_rate)
    if waveform.shape[-1] < needed:
        waveform = torch.nn.functional.pad(waveform, (0, needed - waveform.shape[-1]))
    mel = log_mel_spectrogram(waveform, sample_rate)  # [frames, 64]
    return _onset_strength(mel[:num_frames]), _patches(mel, seconds)


class AudioEncoder(nn.Module):
    """VGGish-shaped CNN: ``[B, S, 96, 64]`` log-mel patches to ``[B, S, embed_dim]`` per-second embeddings.

    Args:
        widths: channels of the conv stages; each stage is ``convs_per_stage`` 3x3 convs + ReLU and
            a 2x2 max-pool (VGGish: 64, 128, 256, 512 with 1, 1, 2, 2 convs).
        convs_per_stage: convs in each stage.
        hidden: widths of the fully connected layers before the embedding (VGGish: 4096, 4096).
        embed_dim: output size (VGGish: 128).
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256, 512),
        convs_per_stage: Sequence[int] = (1, 1, 2, 2),
        hidden: Sequence[int] = (4096, 4096),
        embed_dim: int = 128,
    ) -> None:
        super().__init__()
        if len(widths) != len(convs_per_stage):
            raise ValueError(
                f"widths {tuple(widths)} and convs_per_stage {tuple(convs_per_stage)} differ in length"
            )
        layers: list[nn.Module] = []
        channels = 1
        for width, convs in zip(widths, convs_per_stage):
            for _ in range(convs):
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        pooled = (PATCH_FRAMES >> len(widths)) * (NUM_MEL_BANDS >> len(widths))
        if pooled == 0:
            raise ValueError(f"{len(widths)} pooling stages shrink a 96 x 64 patch to nothing")
        dims = [channels * pooled, *hidden]
        mlp: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            mlp += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        mlp.append(nn.Linear(dims[-1], embed_dim))
        self.embed = nn.Sequential(*mlp)
        self.embed_dim = embed_dim

    def forward(self, patches: Tensor) -> Tensor:
        if patches.shape[-2:] != (PATCH_FRAMES, NUM_MEL_BANDS):
            raise ValueError(
                f"expected [..., {PATCH_FRAMES}, {NUM_MEL_BANDS}] patches, got {tuple(patches.shape)}"
            )
        lead = patches.shape[:-2]
        x = rearrange(patches, "... f m -> (...) 1 f m")
        x = self.features(x).flatten(1)
        return self.embed(x).reshape(*lead, self.embed_dim)


AUDIO_ENCODERS = {
    "vggish": {},
    "audio_test": {"widths": (8, 16), "convs_per_stage": (1, 1), "hidden": (64,), "embed_dim": 128},
}


def create_audio_encoder(name: str = "vggish", **overrides) -> AudioEncoder:
    """A named :class:`AudioEncoder` size (``"vggish"``, ``"audio_test"``) with keyword overrides."""
    if name not in AUDIO_ENCODERS:
        raise ValueError(f"unknown audio encoder {name!r}; known: {', '.join(AUDIO_ENCODERS)}")
    return AudioEncoder(**{**AUDIO_ENCODERS[name], **overrides})
