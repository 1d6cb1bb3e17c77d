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

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from vidlit.layers.rhythm import (  # noqa: F401  (the protocol steps, re-exported)
    METRIC_RATE,
    beat_bins,
    beat_scores,
    beat_summary,
    clip_beat_scores,
    detect_onsets,
)

__all__ = ["BeatAlignment", "beat_bins", "beat_scores", "detect_onsets"]


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
            c, h = clip_beat_scores(*self._audio(pred, "waveform"), *self._audio(target, "audio"))
            bcs.append(c)
            bhs.append(h)
        if bcs:
            self.bcs.append(torch.tensor(bcs, dtype=torch.float64, device=self.device))
            self.bhs.append(torch.tensor(bhs, dtype=torch.float64, device=self.device))

    def compute(self) -> dict[str, Tensor]:
        bcs = dim_zero_cat(self.bcs) if self.bcs else torch.zeros(0, dtype=torch.float64)
        bhs = dim_zero_cat(self.bhs) if self.bhs else torch.zeros(0, dtype=torch.float64)
        return {k: v.float() for k, v in beat_summary(bcs, bhs).items()}
