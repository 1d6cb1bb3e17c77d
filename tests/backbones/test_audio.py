"""Audio front end: VGGish log-mel (checked against VGGish's numpy mel_features) and the encoder."""

import numpy as np
import pytest
import torch

from vidlit.backbones.audio import (
    create_audio_encoder,
    log_mel_patches,
    log_mel_spectrogram,
    mel_filterbank,
    onset_envelope,
    onset_envelope_and_patches,
)


def _vggish_log_mel(data: np.ndarray, rate: int = 16000) -> np.ndarray:
    """VGGish's mel_features.log_mel_spectrogram (window 25 ms, hop 10 ms, 64 bands, 125-7500 Hz)."""
    window, hop = int(round(rate * 0.025)), int(round(rate * 0.010))
    fft_length = 2 ** int(np.ceil(np.log(window) / np.log(2.0)))
    num_frames = 1 + int(np.floor((len(data) - window) / hop))
    frames = np.lib.stride_tricks.as_strided(
        data, shape=(num_frames, window), strides=(data.strides[0] * hop, data.strides[0])
    )
    hann = 0.5 - 0.5 * np.cos(2 * np.pi / window * np.arange(window))
    spectrogram = np.abs(np.fft.rfft(frames * hann, fft_length))

    def mel(hz):
        return 1127.0 * np.log(1.0 + hz / 700.0)

    bins = spectrogram.shape[1]
    bins_mel = mel(np.linspace(0.0, rate / 2, bins))
    edges = np.linspace(mel(125.0), mel(7500.0), 66)
    matrix = np.empty((bins, 64))
    for i in range(64):
        lower, center, upper = edges[i : i + 3]
        matrix[:, i] = np.maximum(
            0.0, np.minimum((bins_mel - lower) / (center - lower), (upper - bins_mel) / (upper - center))
        )
    matrix[0, :] = 0.0
    return np.log(spectrogram @ matrix + 0.01)


def test_log_mel_matches_vggish_reference():
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    wave = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(t.shape)
    ours = log_mel_spectrogram(torch.from_numpy(wave).double().float()).numpy()
    ref = _vggish_log_mel(wave.astype(np.float32).astype(np.float64))
    assert ours.shape == ref.shape == (198, 64)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_filterbank_peaks_and_dc():
    fb = mel_filterbank()
    assert fb.shape == (257, 64)
    assert torch.all(fb[0] == 0) and fb.max() <= 1.0
    # band centres rise monotonically with frequency
    assert torch.all(fb.argmax(0).diff() >= 0)


def test_patches_one_per_second_and_padding():
    wave = torch.randn(16000 * 3 + 500)
    assert log_mel_patches(wave).shape == (3, 96, 64)
    assert log_mel_patches(wave, num_seconds=10).shape == (10, 96, 64)
    # patch 1 starts at frame 100: the same frames as the full spectrogram
    full = log_mel_spectrogram(torch.nn.functional.pad(wave, (0, 20000)))
    torch.testing.assert_close(log_mel_patches(wave)[1], full[100:196])


def test_wrong_rate_or_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="sample_rate=16000"):
        log_mel_spectrogram(torch.randn(44100), 44100)
    with pytest.raises(ValueError, match="mono"):
        log_mel_patches(torch.randn(2, 16000))


def test_onset_envelope_finds_clicks():
    wave = torch.zeros(16000 * 2)
    clicks = [4000, 12000, 20000, 28000]
    for c in clicks:
        wave[c : c + 80] = 1.0
    env = onset_envelope(wave)
    peaks = torch.topk(env, len(clicks)).indices.sort().values
    expected = torch.tensor([c // 160 for c in clicks])
    assert torch.all((peaks - expected).abs() <= 2)


def test_encoder_shapes_and_backward():
    encoder = create_audio_encoder("audio_test")
    patches = torch.randn(2, 10, 96, 64, requires_grad=True)
    out = encoder(patches)
    assert out.shape == (2, 10, 128)
    out.sum().backward()
    assert patches.grad is not None and torch.isfinite(patches.grad).all()
    with pytest.raises(ValueError, match="96, 64"):
        encoder(torch.randn(1, 95, 64))
    with pytest.raises(ValueError, match="unknown audio encoder"):
        create_audio_encoder("nope")


def test_vggish_sized_encoder_has_vggish_shape():
    encoder = create_audio_encoder("vggish")
    convs = [m for m in encoder.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512]
    assert encoder.embed[0].in_features == 512 * 6 * 4 and encoder.embed_dim == 128


def _old_log_mel_patches(waveform, rate=16000, num_seconds=None):
    """log_mel_patches as it was before it shared its spectrogram (session 2), for the parity test."""
    seconds = num_seconds if num_seconds is not None else max(1, waveform.shape[-1] // rate)
    needed = (seconds - 1) * rate + 95 * 160 + 400
    if waveform.shape[-1] < needed:
        waveform = torch.nn.functional.pad(waveform, (0, needed - waveform.shape[-1]))
    frames = log_mel_spectrogram(waveform[:needed], rate)
    index = (torch.arange(seconds) * 100)[:, None] + torch.arange(96)
    return frames[index]


def _old_onset_envelope(waveform, rate=16000):
    mel = log_mel_spectrogram(waveform, rate)
    flux = (mel[..., 1:, :] - mel[..., :-1, :]).clamp_min(0.0).mean(-1)
    return torch.nn.functional.pad(flux, (1, 0))


@pytest.mark.parametrize(
    ("samples", "num_seconds"), [(16000 * 5 + 123, None), (16000 * 2, None), (9000, None), (40000, 4)]
)
def test_onset_envelope_and_patches_equals_the_two_separate_passes(samples, num_seconds):
    # a 5-s track (+ a partial second), whole seconds, shorter than one patch, padded to 4 s
    wave = torch.randn(samples, generator=torch.Generator().manual_seed(samples)) * 0.3
    envelope, patches = onset_envelope_and_patches(wave, 16000, num_seconds)
    assert torch.equal(envelope, _old_onset_envelope(wave))
    assert torch.equal(patches, _old_log_mel_patches(wave, num_seconds=num_seconds))
    assert torch.equal(envelope, onset_envelope(wave)) and torch.equal(
        patches, log_mel_patches(wave, 16000, num_seconds)
    )
