"""VGGish log-mel front end and onset envelope: audio features shared by backbones and data readers.

VGGish's ``mel_features.py`` / ``vggish_input.py`` (Hershey et al., ICASSP 2017): 25 ms
periodic-Hann frames every 10 ms, a 512-point FFT magnitude, 64 HTK-mel bands over 125-7500 Hz,
``log(mel + 0.01)``, and 96-frame (0.96 s) patches starting on whole seconds. The audio encoder
(:mod:`vidlit.backbones.audio`) and the music-dance reader (:mod:`vidlit.data.music_dance`) both
use them, so they live here, below both layers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vidlit.layers.rhythm import spectral_flux

__all__ = [
    "SAMPLE_RATE",
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
    """Onset strength per 10 ms frame: positive log-mel flux, mean over bands (librosa's ``onset_strength``).

    Peaks mark sound-intensity onsets (beats, hits); the music-rhythm side of music-dance models.
    """
    return spectral_flux(log_mel_spectrogram(waveform, sample_rate), reduce="mean")


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
    return spectral_flux(mel[:num_frames], reduce="mean"), _patches(mel, seconds)
