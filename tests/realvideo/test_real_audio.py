"""``read_audio`` on the real 5.1 AAC track of bigbuckbunny.mp4 (48 kHz, 249 AAC frames, 5.312 s)."""

from __future__ import annotations

import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from real_media import ffprobe_stream

from vidlit.data.video import VideoDecodeError, read_audio
from vidlit.layers.log_mel import SAMPLE_RATE, log_mel_spectrogram

AAC_FRAME = 1024  # samples per AAC frame: "within one frame of audio"


def _ffprobe_audio(path) -> tuple[int, float]:
    stream = ffprobe_stream(path, "a:0", "sample_rate,duration_ts,time_base")
    return int(stream["sample_rate"]), float(stream["duration_ts"] * Fraction(stream["time_base"]))


def _ffmpeg_pcm(path, *args: str) -> np.ndarray:
    """float32 PCM from the ffmpeg command line, interleaved."""
    command = ["ffmpeg", "-v", "error", "-i", str(path), "-vn", *args, "-f", "f32le", "-"]
    out = subprocess.run(command, check=True, capture_output=True).stdout
    return np.frombuffer(out, dtype=np.float32)


@pytest.fixture(scope="module")
def bunny(real_videos):
    return real_videos["bigbuckbunny"]


def test_native_rate_has_the_streams_length_and_pyavs_samples(bunny):
    rate, seconds = _ffprobe_audio(bunny)
    waveform, got_rate = read_audio(bunny)
    assert got_rate == rate == 48000
    assert waveform.dtype == torch.float32 and waveform.shape[0] == 6  # 5.1
    # the stream lasts 5.312 s: 254976 samples, within one AAC frame
    assert abs(waveform.shape[1] - seconds * rate) <= AAC_FRAME, (waveform.shape, seconds)
    # PyAV's own decode, frame by frame (the AAC decoder's planar float output): identical
    with av.open(str(bunny)) as container:
        frames = [f.to_ndarray() for f in container.decode(container.streams.audio[0])]
    reference = np.concatenate(frames, axis=1)
    assert waveform.shape == reference.shape
    assert np.array_equal(waveform.numpy(), reference)
    # and ffmpeg's command line, which decodes through the same decoder (within float rounding)
    cli = _ffmpeg_pcm(bunny).reshape(-1, 6).T
    assert cli.shape == reference.shape and np.abs(cli - waveform.numpy()).max() < 1e-6
    assert 0.01 < waveform.abs().max() <= 1.0  # real sound, not silence


def test_a_video_without_audio_says_so(real_videos):
    with pytest.raises(VideoDecodeError, match=r"bikes\.mp4: no audio stream"):
        read_audio(real_videos["bikes"])


def test_mono_16k_matches_ffmpegs_downmix_and_resampling(bunny):
    _, seconds = _ffprobe_audio(bunny)
    waveform, rate = read_audio(bunny, sample_rate=SAMPLE_RATE, mono=True)
    assert rate == SAMPLE_RATE and waveform.shape[0] == 1
    assert abs(waveform.shape[1] - seconds * SAMPLE_RATE) <= AAC_FRAME * SAMPLE_RATE / 48000
    # measured: the same length as `ffmpeg -ac 1 -ar 16000` and max abs difference 3e-8
    cli = _ffmpeg_pcm(bunny, "-ac", "1", "-ar", str(SAMPLE_RATE))
    assert len(cli) == waveform.shape[1]
    assert np.abs(cli - waveform[0].numpy()).max() < 1e-5

    # the VGGish front end on it: one 10 ms frame per hop, and its energy follows the waveform's
    mel = log_mel_spectrogram(waveform[0])
    assert mel.shape == (1 + (waveform.shape[1] - 400) // 160, 64) and torch.isfinite(mel).all()
    assert abs(mel.shape[0] * 0.010 - seconds) < 0.025  # 529 frames for 5.312 s
    rms = waveform[0].unfold(0, 400, 160).pow(2).mean(-1).sqrt()
    energy = torch.logsumexp(mel, dim=-1)  # log of the summed mel magnitudes
    assert np.corrcoef(energy.numpy(), torch.log(rms + 1e-4).numpy())[0, 1] > 0.8  # measured 0.92
