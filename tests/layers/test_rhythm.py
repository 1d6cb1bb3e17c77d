"""Visual rhythm (directogram, flux, peaks) and the onset envelopes it shares with music-dance."""

import math

import librosa
import numpy as np
import pytest
import torch

from vidlit.data.music_dance import visual_onset_envelope
from vidlit.layers.log_mel import log_mel_spectrogram, onset_envelope
from vidlit.layers.rhythm import directogram, max_normalize, pick_peaks, spectral_flux, visual_beats


def test_directogram_bins_displacement_by_angle_modulo_180():
    pose = torch.zeros(3, 2, 3)
    pose[..., 2] = 1.0
    pose[1, 0, :2] = torch.tensor([3.0, 0.0])  # joint 0 moves right: 0 degrees, bin 0
    pose[1, 1, :2] = torch.tensor([0.0, -2.0])  # joint 1 moves up (-90 = 90 mod 180): bin 5
    pose[2, 0, :2] = torch.tensor([3.0 - 1.0, 1.0])  # joint 0 then moves left-down: 135 degrees, bin 7
    pose[2, 1, :2] = torch.tensor([0.0, -2.0])  # joint 1 stays
    pose[2, 1, 2] = 0.5
    d = directogram(pose, bins=10)
    assert d.shape == (3, 10) and d[0].sum() == 0
    assert d[1, 0] == 3.0 and d[1, 5] == 2.0 and d[1].sum() == 5.0
    assert math.isclose(d[2, 7].item(), math.sqrt(2.0), rel_tol=1e-6) and d[2].sum() == d[2, 7]


def test_flux_and_normalization():
    spectrum = torch.tensor([[1.0, 0.0], [2.0, 3.0], [0.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(spectral_flux(spectrum), torch.tensor([0.0, 4.0, 1.0, 0.0]))
    torch.testing.assert_close(max_normalize(torch.tensor([0.0, 2.0, 1.0])), torch.tensor([0.0, 1.0, 0.5]))
    assert max_normalize(torch.zeros(3)).sum() == 0


def test_spectral_flux_is_bit_for_bit_the_two_formulas_it_replaced():
    # motion flux (rhythm.spectral_flux, summed, [t, k]) and the audio onset strength
    # (log_mel._onset_strength, averaged over bands, batched): the old code, inline
    x = torch.randn(3, 50, 64, generator=torch.Generator().manual_seed(0))
    old_mean = torch.nn.functional.pad((x[..., 1:, :] - x[..., :-1, :]).clamp_min(0.0).mean(-1), (1, 0))
    assert torch.equal(spectral_flux(x, reduce="mean"), old_mean)
    for spectrum in (x[0], x[1, :, :1], x[2, :1], x[2, :0]):
        old_sum = torch.cat([spectrum.new_zeros(1), (spectrum[1:] - spectrum[:-1]).clamp_min(0.0).sum(-1)])
        assert torch.equal(spectral_flux(spectrum), old_sum)
    with pytest.raises(ValueError, match="reduce must be 'sum' or 'mean'"):
        spectral_flux(x, reduce="max")


def test_visual_beats_mark_the_jerks():
    rng = np.random.default_rng(0)
    t = 64
    pose = np.zeros((t, 17, 3), dtype=np.float32)
    pose[..., :2] = rng.normal(0, 0.3, size=(t, 17, 2))  # jitter
    pose[..., 2] = 1.0
    for beat in (10, 30, 50):
        pose[beat : beat + 8, :6, 0] += 40.0 * (1 - np.arange(8) / 8)[:, None]  # jerk, then drift back
    beats = visual_beats(torch.from_numpy(pose))
    assert beats.shape == (t,) and torch.nonzero(beats).flatten().tolist() == [10, 30, 50]
    assert pick_peaks(torch.zeros(10)).numel() == 0


def test_music_dance_visual_envelope_uses_the_shared_flux():
    strength = torch.tensor([0.0, 1.0, 0.5, 2.0])
    env = visual_onset_envelope(strength, fps=1.0, num_frames=4, rate=1)
    torch.testing.assert_close(env, spectral_flux(strength[:, None]))


def test_music_dance_audio_envelope_is_librosas_onset_strength():
    # the hand-written audio onset flux equals librosa's onset_strength on the same log-mel frames
    # (lag 1, no centring) up to float rounding; librosa's own front end (power dB mel, 512 hop) differs
    wave = torch.randn(16000 * 2, generator=torch.Generator().manual_seed(0)) * 0.1
    mel = log_mel_spectrogram(wave, 16000)
    ours = spectral_flux(mel, reduce="mean").numpy()
    assert torch.equal(onset_envelope(wave, 16000), spectral_flux(mel, reduce="mean"))
    theirs = librosa.onset.onset_strength(S=mel.T.double().numpy(), center=False)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
