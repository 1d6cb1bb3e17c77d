"""LORIS's beat metrics: Beat Coverage and Beat Hit Scores of generated soundtracks.

Protocol (Yu et al., ICML 2023, Sec. 5; ``beats_scores.py`` of the released code), per clip:

1. onsets of the generated and of the reference waveform with ``librosa.onset.onset_detect`` on
   22,050 Hz audio (``wait=1, delta=0.2, pre_avg=3, post_avg=3, pre_max=3, post_max=3``, times in
   seconds; audio at another rate is resampled to 22,050 Hz first);
2. each onset list quantized to 1-second bins: ``ceil(len / 22050)`` bins, bin ``int(time)`` is 1
   when any onset falls in it;
3. the reference bins cut to the generated length (zero-padded where the reference is shorter);
4. ``hits`` = bins that are 1 in both; ``BCS = hits / generated beat bins``,
   ``BHS = hits / reference beat bins``; a zero denominator scores 0.

Reported over clips: the means ``BCS`` and ``BHS``, their sample standard deviations ``CSD`` and
``HSD`` (ddof 1; 0 for a single clip) and ``F1 = 2 BCS BHS / (BCS + BHS)`` of the two means (0 when
both are 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["BeatAlignment", "beat_bins", "beat_scores", "detect_onsets"]

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


class BeatAlignment(Metric):
    """BCS, BHS, CSD, HSD and F1 of generated soundtracks against their references (see the module).

    ``update(preds, targets)`` takes :class:`~vidlit.formats.loris.LorisPrediction` and
    :class:`~vidlit.formats.loris.LorisTarget` lists (dicts with ``waveform`` / ``audio`` and
    ``sample_rate``), or two lists of 1-D waveforms at ``sample_rate``.

    Args:
        sample_rate: rate of bare waveforms given to ``update``.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, sample_rate: int = METRIC_RATE, **kwargs: Any):
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.add_state("bcs", default=[], dist_reduce_fx="cat")
        self.add_state("bhs", default=[], dist_reduce_fx="cat")

    def _audio(self, item: Any, key: str) -> tuple[Any, int]:
        if isinstance(item, dict):
            return item[key], int(item.get("sample_rate", self.sample_rate))
        return item, self.sample_rate

    def update(self, preds: Sequence[Any], targets: Sequence[Any]) -> None:
        if len(preds) != len(targets):
            raise ValueError(f"BeatAlignment: {len(preds)} generated clips but {len(targets)} references")
        bcs, bhs = [], []
        for pred, target in zip(preds, targets):
            gen_onsets, gen_len = detect_onsets(*self._audio(pred, "waveform"))
            ref_onsets, ref_len = detect_onsets(*self._audio(target, "audio"))
            c, h = beat_scores(beat_bins(gen_onsets, gen_len), beat_bins(ref_onsets, ref_len))
            bcs.append(c)
            bhs.append(h)
        if bcs:
            self.bcs.append(torch.tensor(bcs, dtype=torch.float64, device=self.device))
            self.bhs.append(torch.tensor(bhs, dtype=torch.float64, device=self.device))

    def compute(self) -> dict[str, Tensor]:
        bcs = dim_zero_cat(self.bcs) if self.bcs else torch.zeros(0, dtype=torch.float64)
        bhs = dim_zero_cat(self.bhs) if self.bhs else torch.zeros(0, dtype=torch.float64)
        n = len(bcs)
        mean_c = bcs.mean() if n else bcs.new_zeros(())
        mean_h = bhs.mean() if n else bhs.new_zeros(())
        std_c = bcs.std(correction=1) if n > 1 else bcs.new_zeros(())
        std_h = bhs.std(correction=1) if n > 1 else bhs.new_zeros(())
        total = mean_c + mean_h
        f1 = 2 * mean_c * mean_h / total if total > 0 else total.new_zeros(())
        return {
            "BCS": mean_c.float(),
            "BHS": mean_h.float(),
            "CSD": std_c.float(),
            "HSD": std_h.float(),
            "F1": f1.float(),
        }
