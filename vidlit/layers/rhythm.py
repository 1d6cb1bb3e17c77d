"""Visual rhythm: onset envelopes and beats from motion (Davis and Agrawala, "Visual Rhythm and Beat", 2018).

One implementation for every family that reads rhythm off motion:

- :func:`spectral_flux`: positive temporal difference summed (or averaged) over bins, the onset
  strength of a ``[t, bins]`` motion spectrum (music-dance: one bin, the frame-difference strength;
  LORIS: the directogram's ten angle bins) or of log-mel frames (the audio onset envelope);
- :func:`max_normalize`: an envelope scaled to a maximum of 1;
- :func:`directogram`: frame-to-frame joint displacement binned by angle (LORIS's visual rhythm);
- :func:`pick_peaks` and :func:`visual_beats`: the envelope's peaks as a binary beat sequence
  (LORIS's rhythm condition).

Shape legend: ``t`` frames, ``j`` joints, ``k`` angle bins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "beat_bins",
    "beat_scores",
    "beat_summary",
    "detect_onsets",
    "directogram",
    "max_normalize",
    "pick_peaks",
    "spectral_flux",
    "visual_beats",
]


def spectral_flux(spectrum: Tensor, reduce: Literal["sum", "mean"] = "sum") -> Tensor:
    """Onset strength of a ``[..., t, k]`` spectrum: ``sum_k max(x[t, k] - x[t - 1, k], 0)``; frame 0 is 0.

    The one positive-flux implementation of vidlit: motion spectra (music-dance's strength, LORIS's
    directogram) sum over their bins, the audio onset envelope
    (:func:`vidlit.layers.log_mel.onset_envelope`) averages over its mel bands as librosa's
    ``onset_strength`` does.

    Args:
        spectrum: ``[..., t, k]`` frames of ``k`` bins; leading dimensions are batch.
        reduce: ``"sum"`` or ``"mean"`` over the ``k`` bins.

    Returns:
        ``[..., t]`` envelope.
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    rise = (spectrum[..., 1:, :] - spectrum[..., :-1, :]).clamp_min(0.0)  # ... t-1 k
    flux = rise.sum(-1) if reduce == "sum" else rise.mean(-1)
    return torch.nn.functional.pad(flux, (1, 0))


def max_normalize(envelope: Tensor) -> Tensor:
    """Scale an envelope to a maximum of 1 (all-zero stays zero)."""
    return envelope / envelope.max().clamp_min(1e-6)


def directogram(pose: Tensor, bins: int = 10, min_confidence: float = 0.0) -> Tensor:
    """Joint displacement between consecutive frames, binned by its angle over ``[0, 180)`` degrees.

    Each joint adds its displacement's length to the bin of its direction modulo 180 degrees (a
    move and the opposite move share a bin, as in Davis and Agrawala's directogram), weighted by
    the smaller of its two confidences; frame 0 is zero.

    Args:
        pose: ``[t, j, 3]`` key points ``(x, y, confidence)`` (``[t, j, 2]``: all confident).
        bins: angle bins (LORIS: 10).
        min_confidence: joints below it in either frame add nothing.

    Returns:
        ``[t, bins]`` float directogram.
    """
    pose = pose.float()
    xy = pose[..., :2]
    conf = pose[..., 2] if pose.shape[-1] > 2 else torch.ones_like(pose[..., 0])
    step = xy[1:] - xy[:-1]  # t-1 j 2
    weight = torch.minimum(conf[1:], conf[:-1])
    weight = torch.where(weight >= min_confidence, weight, torch.zeros_like(weight))
    length = step.norm(dim=-1) * weight  # t-1 j
    angle = torch.atan2(step[..., 1], step[..., 0]).remainder(math.pi)  # [0, pi)
    index = (angle / math.pi * bins).long().clamp(0, bins - 1)
    out = torch.zeros(pose.shape[0], bins)
    out[1:].scatter_add_(1, index, length)
    return out


def pick_peaks(
    envelope: Tensor,
    pre_max: int = 2,
    post_max: int = 2,
    pre_avg: int = 4,
    post_avg: int = 4,
    delta: float = 0.1,
    wait: int = 4,
) -> Tensor:
    """Indices of an envelope's peaks (``librosa.util.peak_pick``'s rule, in frames).

    A frame is a peak when it is the maximum of ``[n - pre_max, n + post_max]``, exceeds the mean of
    ``[n - pre_avg, n + post_avg]`` by ``delta``, and is at least ``wait`` frames after the last peak.
    """
    import librosa

    values = envelope.detach().double().cpu().numpy()
    # librosa needs post_max / post_avg >= 1; the window is centred on the frame
    peaks = librosa.util.peak_pick(
        values, pre_max=pre_max, post_max=post_max, pre_avg=pre_avg, post_avg=post_avg, delta=delta, wait=wait
    )
    return torch.as_tensor(np.asarray(peaks, dtype=np.int64))


def visual_beats(pose: Tensor, bins: int = 10, **peak_options: int | float) -> Tensor:
    """LORIS's rhythm condition: the binary visual-beat sequence of a ``[t, j, 3]`` pose sequence.

    Directogram (:func:`directogram`, ``bins`` angle bins over 0-180 degrees, summed over
    joints) -> spectral flux -> max-normalized onset envelope -> peak picking
    (:func:`pick_peaks`, ``peak_options``) -> ``[t]`` float, 1 on a beat frame.
    """
    envelope = max_normalize(spectral_flux(directogram(pose, bins)))
    beats = torch.zeros(pose.shape[0])
    peaks = pick_peaks(envelope, **peak_options)
    if len(peaks):
        beats[peaks] = 1.0
    return beats


# LORIS's beat metric protocol (vidlit.metrics.beat_alignment): onsets, 1-second bins, scores
METRIC_RATE = 22050
ONSET_OPTIONS = {"wait": 1, "delta": 0.2, "pre_avg": 3, "post_avg": 3, "pre_max": 3, "post_max": 3}


def _numpy(waveform: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(waveform, Tensor):
        waveform = waveform.detach().float().cpu().numpy()
    array = np.asarray(waveform, dtype=np.float32)
    if array.ndim > 1:  # [channels, n]: LORIS scores mono audio
        array = array.reshape(-1, array.shape[-1]).mean(0)
    return array


def detect_onsets(waveform: Tensor | np.ndarray, sample_rate: int = METRIC_RATE) -> tuple[np.ndarray, int]:
    """Onset times in seconds by the protocol's detector, and the length in 22,050 Hz samples."""
    import librosa

    audio = _numpy(waveform)
    if sample_rate != METRIC_RATE:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=METRIC_RATE)
    onsets = librosa.onset.onset_detect(y=audio, sr=METRIC_RATE, units="time", **ONSET_OPTIONS)
    return np.asarray(onsets, dtype=np.float64), len(audio)


def beat_bins(
    onset_times: Sequence[float] | np.ndarray, num_samples: int, sample_rate: int = METRIC_RATE
) -> np.ndarray:
    """``ceil(num_samples / sample_rate)`` one-second bins, 1 where an onset falls (``int(time)``)."""
    bins = np.zeros(math.ceil(num_samples / sample_rate), dtype=np.int64)
    for time in onset_times:
        index = int(math.trunc(time))
        if 0 <= index < len(bins):
            bins[index] = 1
    return bins


def beat_scores(generated: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """``(BCS, BHS)`` of two bin sequences; the reference is cut (or zero-padded) to the generated length."""
    reference = np.asarray(reference)[: len(generated)]
    reference = np.pad(reference, (0, len(generated) - len(reference)))
    hits = int(np.sum((generated > 0) & (reference > 0)))
    covered, total = int(np.sum(generated > 0)), int(np.sum(reference > 0))
    return (hits / covered if covered else 0.0), (hits / total if total else 0.0)


def clip_beat_scores(
    generated: Tensor | np.ndarray, generated_rate: int, reference: Tensor | np.ndarray, reference_rate: int
) -> tuple[float, float]:
    """``(BCS, BHS)`` of one generated clip against its reference audio, by LORIS's protocol: onsets
    on each whole waveform, one-second bins, the reference's bins cut to the generated length."""
    generated_bins = beat_bins(*detect_onsets(generated, generated_rate))
    return beat_scores(generated_bins, beat_bins(*detect_onsets(reference, reference_rate)))


def beat_summary(bcs: Tensor, bhs: Tensor) -> dict[str, Tensor]:
    """LORIS's report over clips: means ``BCS`` / ``BHS``, sample stds ``CSD`` / ``HSD`` (ddof 1; 0 for
    one clip) and ``F1`` of the two means (0 when both are 0)."""
    n = len(bcs)
    mean_c = bcs.mean() if n else bcs.new_zeros(())
    mean_h = bhs.mean() if n else bhs.new_zeros(())
    std_c = bcs.std(correction=1) if n > 1 else bcs.new_zeros(())
    std_h = bhs.std(correction=1) if n > 1 else bhs.new_zeros(())
    total = mean_c + mean_h
    f1 = 2 * mean_c * mean_h / total if total > 0 else total.new_zeros(())
    return {"BCS": mean_c, "BHS": mean_h, "CSD": std_c, "HSD": std_h, "F1": f1}
