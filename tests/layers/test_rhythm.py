"""Visual rhythm (directogram, flux, peaks) and the onset envelopes it shares with music-dance."""

import math

import librosa
import numpy as np
import torch

from vidlit.data.music_dance import visual_onset_envelope
from vidlit.layers.log_mel import _onset_strength, log_mel_spectrogram
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
    ours = _onset_strength(mel).numpy()
    theirs = librosa.onset.onset_strength(S=mel.T.double().numpy(), center=False)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
