"""BeatAlignment against LORIS's protocol on hand-built click tracks with known onset seconds."""

import numpy as np
import pytest
import torch

from vidlit.metrics.beat_alignment import BeatAlignment, beat_bins, beat_scores, detect_onsets

RATE = 22050


def clicks(times: list[float], seconds: float, rate: int = RATE) -> torch.Tensor:
    """A waveform of ``seconds`` with a 5-ms decaying noise click at each time."""
    wave = np.zeros(int(seconds * rate), dtype=np.float32)
    n = int(0.005 * rate)
    burst = np.random.default_rng(0).uniform(-1, 1, n) * np.exp(-np.arange(n) / (0.001 * rate))
    for t in times:
        start = int(t * rate)
        wave[start : start + n] += burst[: len(wave) - start]
    return torch.from_numpy(wave)


def test_detector_finds_the_clicks():
    onsets, length = detect_onsets(clicks([0.3, 1.6, 3.2], 4.0))
    assert length == 4 * RATE
    assert len(onsets) == 3 and np.abs(onsets - [0.3, 1.6, 3.2]).max() < 0.03


def test_bins_and_scores_by_the_protocol():
    # 4.5 s: ceil -> 5 bins; a time's bin is int(time)
    np.testing.assert_array_equal(beat_bins([0.2, 0.9, 3.99, 4.2], int(4.5 * RATE)), [1, 0, 0, 1, 1])
    # hits 2 of 3 generated and 2 of 3 reference bins
    assert beat_scores(np.array([1, 0, 1, 1]), np.array([1, 1, 1, 0])) == (2 / 3, 2 / 3)
    # the reference is cut to the generated length: its last bin does not count
    assert beat_scores(np.array([1, 0]), np.array([1, 0, 1])) == (1.0, 1.0)
    # zero denominators score 0
    assert beat_scores(np.array([0, 0, 0]), np.array([1, 0, 1])) == (0.0, 0.0)
    assert beat_scores(np.array([1, 1, 0]), np.array([0, 0, 0])) == (0.0, 0.0)


def test_metric_on_click_tracks():
    cases = [  # (generated clicks, reference clicks): per-clip (BCS, BHS)
        ([0.5, 2.5, 3.5], [0.5, 1.5, 2.5]),  # bins 1011 vs 1110: (2/3, 2/3)
        ([0.4, 1.4, 2.4, 3.4], [1.5]),  # (1/4, 1)
        ([], [0.5, 2.5]),  # nothing generated: (0, 0)
        ([1.2, 2.2], []),  # silent reference: (0, 0)
    ]
    metric = BeatAlignment()
    preds = [
        {"video_id": str(i), "waveform": clicks(g, 4.0), "sample_rate": RATE}
        for i, (g, _) in enumerate(cases)
    ]
    # references 6 s long: cut to the generated 4 s (a click at 5.5 s would not count)
    targets = [{"audio": clicks([*r, 5.5], 6.0), "sample_rate": RATE} for _, r in cases[:3]]
    targets.append({"audio": clicks([], 6.0), "sample_rate": RATE})
    metric.update(preds[:2], targets[:2])
    metric.update(preds[2:], targets[2:])
    out = metric.compute()
    bcs = np.array([2 / 3, 1 / 4, 0.0, 0.0])
    bhs = np.array([2 / 3, 1.0, 0.0, 0.0])
    assert out["BCS"].item() == pytest.approx(bcs.mean(), abs=1e-6)
    assert out["BHS"].item() == pytest.approx(bhs.mean(), abs=1e-6)
    assert out["CSD"].item() == pytest.approx(bcs.std(ddof=1), abs=1e-6)
    assert out["HSD"].item() == pytest.approx(bhs.std(ddof=1), abs=1e-6)
    f1 = 2 * bcs.mean() * bhs.mean() / (bcs.mean() + bhs.mean())
    assert out["F1"].item() == pytest.approx(f1, abs=1e-6)


def test_other_rates_are_resampled_and_empty_metric_is_zero():
    metric = BeatAlignment(sample_rate=8000)
    metric.update([clicks([0.5, 2.5], 3.0, 8000)], [clicks([0.5, 1.5], 3.0, 8000)])
    out = metric.compute()
    assert out["BCS"].item() == pytest.approx(0.5) and out["BHS"].item() == pytest.approx(0.5)
    assert out["CSD"].item() == 0.0  # one clip: no spread
    assert BeatAlignment().compute()["F1"].item() == 0.0
    with pytest.raises(ValueError, match="2 generated clips but 1 references"):
        metric.update([clicks([], 1.0)] * 2, [clicks([], 1.0)])
