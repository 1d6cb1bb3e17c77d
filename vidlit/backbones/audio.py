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

from collections.abc import Sequence

from einops import rearrange
from torch import Tensor, nn

# the front end lives in layers (the music-dance reader uses it too); re-exported here
from vidlit.layers.log_mel import (  # noqa: F401
    HOP_SEC,
    LOG_OFFSET,
    MEL_MAX_HZ,
    MEL_MIN_HZ,
    NUM_MEL_BANDS,
    PATCH_FRAMES,
    SAMPLE_RATE,
    WINDOW_SEC,
    log_mel_patches,
    log_mel_spectrogram,
    mel_filterbank,
    onset_envelope,
    onset_envelope_and_patches,
)

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
