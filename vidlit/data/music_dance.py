"""Music-dance pairs in the AIST++ / AIST Dance Video Database layout, with visual and music rhythm.

AIST Dance Video Database (Tsuchida et al., ISMIR 2019) and AIST++ (Li et al., "AI Choreographer",
ICCV 2021). A sequence is named ``g{genre}_s{situation}_c{camera}_d{dancer}_m{genre}{music}_ch{choreo}``,
e.g. ``gBR_sBM_c01_d04_mBR0_ch01``: genre BR (one of the ten codes in :data:`AIST_GENRES`),
basic dance (``sBM``; ``sFM`` advanced), camera 01, dancer 04, music ``mBR0``, choreography 01.
The layout read here (``aist_plusplus_final`` plus the database's videos and musics)::

    videos/<sequence with a camera>.mp4     the dance videos
    all_musics/<music id>.wav               the music tracks (``music_dir``)
    splits/crossmodal_{train,val,test}.txt  sequence names, camera ``cAll`` (AIST++'s cross-modal split)
    ignore_list.txt                         sequences to skip (also accepted under ``splits/``)

A ``cAll`` name is read from the video of camera ``camera`` (default ``c01``). Motion and music are
aligned from time 0, as in AIST++. Every sequence is cut into windows of ``clip_seconds`` (stride
``clip_stride``); a window pairs the dance over ``[s, s + clip)`` with its music over the same span.

Per window the loader computes, following MuDaR (Wang et al., "Learning Music-Dance
Representations through Explicit-Implicit Rhythm Synchronization", 2022, Sec. 3.1):

- **visual rhythm**: frames sampled at ``motion_fps``; the mean absolute frame difference is the
  motion strength and its positive flux the visual onset envelope (sudden velocity changes),
  resampled to the audio frame rate (100 Hz);
- **motion features**: the frame-difference energy pooled on a ``g x g`` grid per step
  (``feature_dim = g * g``), the dance encoder's input;
- **music rhythm**: :func:`vidlit.layers.log_mel.onset_envelope` (sound-intensity onsets, 100 Hz);
- **music content**: VGGish log-mel patches, one per second of the window.

Features of every window are computed once, at setup, and kept in memory (they are small).

Batch (:class:`MusicDanceBatch`), shape legend ``b`` windows, ``t`` motion steps
(``clip_seconds * motion_fps``), ``c`` grid cells, ``n`` envelope frames (``clip_seconds * 100``),
``s`` seconds.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor
from torch.utils.data import Dataset

from vidlit.core.io import confined_path
from vidlit.data.base import InferenceInput, VidlitDataModule, missing_files
from vidlit.data.video import VideoDecodeError, open_video, read_audio
from vidlit.formats.music_dance import (  # noqa: F401  (the family's names, re-exported)
    AIST_GENRES,
    AIST_NAME,
    ENVELOPE_RATE,
    SAMPLE_RATE,
    SPLIT_FILE,
    MusicDanceBatch,
)
from vidlit.layers.log_mel import onset_envelope_and_patches
from vidlit.layers.rhythm import max_normalize, spectral_flux

log = logging.getLogger(__name__)

_NAME = AIST_NAME


@dataclass(frozen=True)
class AISTSequence:
    """A parsed AIST sequence name.

    Attributes:
        name: the name as listed.
        genre: genre code (``"BR"``).
        situation: ``"BM"`` (basic) or ``"FM"`` (advanced), as the database has them.
        camera: ``"01"`` .. ``"09"``, or ``"All"``.
        dancer: dancer number as text (``"04"``).
        music_id: music file stem (``"mBR0"``).
        choreography: choreography number as text (``"01"``).
    """

    name: str
    genre: str
    situation: str
    camera: str
    dancer: str
    music_id: str
    choreography: str

    def with_camera(self, camera: str) -> str:
        """The sequence name with camera ``camera`` (``"c01"``) in place of its own."""
        return self.name.replace(f"_c{self.camera}_", f"_{camera}_", 1)


def parse_aist_name(name: str, where: str = "name") -> AISTSequence:
    """Parse ``gBR_sBM_c01_d04_mBR0_ch01``-style names.

    Raises:
        ValueError: a malformed name or an unknown genre; the message names ``where``.
    """
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"{where}: {name!r} is not an AIST sequence name like 'gBR_sBM_c01_d04_mBR0_ch01'")
    if m["genre"] not in AIST_GENRES:
        raise ValueError(f"{where}: {name!r} has unknown genre {m['genre']!r}; AIST genres: {AIST_GENRES}")
    return AISTSequence(
        name=name,
        genre=m["genre"],
        situation=m["situation"],
        camera=m["camera"],
        dancer=m["dancer"],
        music_id=f"m{m['music_genre']}{m['music']}",
        choreography=m["choreo"],
    )


def read_name_list(path: str | Path) -> list[tuple[int, str]]:
    """``(line number, name)`` of the non-empty lines of a split or ignore list.

    Raises:
        FileNotFoundError: the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: AIST++ name list not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(i, line.strip()) for i, line in enumerate(lines, start=1) if line.strip()]


def motion_features(frames: Tensor, grid: int) -> tuple[Tensor, Tensor]:
    """Motion from frames: per-step frame-difference energy on a grid, and the motion strength.

    Args:
        frames: uint8 or float ``[t, h, w, 3]`` frames sampled at a fixed rate.
        grid: cells per side of the pooling grid.

    Returns:
        ``(features [t, grid * grid], strength [t])``: the mean absolute grey-level difference to
        the previous step (in ``[0, 1]``) per cell and over the whole frame; step 0 is 0.
    """
    grey = frames.float().mean(-1) / 255.0  # t h w
    diff = (grey[1:] - grey[:-1]).abs()
    diff = torch.cat([torch.zeros_like(grey[:1]), diff])
    cells = F.adaptive_avg_pool2d(diff[:, None], grid)  # t 1 g g
    return rearrange(cells, "t 1 g h -> t (g h)"), diff.mean(dim=(1, 2))


def visual_onset_envelope(strength: Tensor, fps: float, num_frames: int, rate: int = ENVELOPE_RATE) -> Tensor:
    """The visual onset envelope: positive flux of motion strength, resampled to ``rate`` Hz.

    The visual counterpart of an audio onset envelope (MuDaR Sec. 3.1; Davis and Agrawala, "Visual
    Rhythm and Beat", 2018): it peaks where the motion suddenly speeds up, i.e. on dance beats.
    Step ``k`` of ``strength`` covers time ``k / fps``; output frame ``j`` is time ``j / rate``,
    linearly interpolated, ``num_frames`` long.
    """
    flux = spectral_flux(strength[:, None])  # one bin: the positive flux of the strength
    times = torch.arange(num_frames, dtype=torch.float32) / rate * fps  # position in steps
    lo = times.floor().long().clamp(0, len(flux) - 1)
    hi = (lo + 1).clamp(max=len(flux) - 1)
    w = (times - lo.float()).clamp(0.0, 1.0)
    return flux[lo] * (1 - w) + flux[hi] * w


def _normalize(envelope: Tensor) -> Tensor:
    """Scale an envelope to a maximum of 1 (all-zero stays zero)."""
    return max_normalize(envelope)


class MusicDanceDataset(Dataset):
    """Precomputed music-dance windows (dicts of tensors and ids)."""

    def __init__(self, items: list[dict[str, Any]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


def collate_music_dance(samples: list[dict[str, Any]]) -> MusicDanceBatch:
    """Stack windows into a :class:`MusicDanceBatch`."""
    return MusicDanceBatch(
        motion=torch.stack([s["motion"] for s in samples]),
        visual_envelope=torch.stack([s["visual_envelope"] for s in samples]),
        audio_envelope=torch.stack([s["audio_envelope"] for s in samples]),
        audio=torch.stack([s["audio"] for s in samples]),
        genre=torch.tensor([s["genre"] for s in samples], dtype=torch.long),
        video_ids=[s["video_id"] for s in samples],
        music_ids=[s["music_id"] for s in samples],
        targets=[
            {"video_id": s["video_id"], "music_id": s["music_id"], "label": s["genre"]} for s in samples
        ],
    )


class MusicDanceDataModule(VidlitDataModule):
    """AIST++ music-dance pairs for MuDaR-style representation learning, retrieval and genre classification.

    Args:
        root: dataset folder (layout in the module docstring).
        synthetic: write the synthetic sample dataset (``vidlit data synth music_dance``) into
            ``root`` when it has no ``splits/crossmodal_train.txt``.
        camera: camera whose video stands for a ``cAll`` sequence (``"c01"`` .. ``"c09"``).
        music_dir: folder of the ``<music id>.wav`` files, relative to ``root``.
        clip_seconds: window length in whole seconds (one log-mel patch per second).
        clip_stride: seconds between window starts (default: ``clip_seconds``).
        motion_fps: rate at which frames are sampled for motion and visual rhythm.
        feature_dim: motion features per step, a ``g x g`` grid (``g * g``; 64 is 8 x 8); the
            head's ``in_dim``.
        frame_size: short side frames are decoded at (AIST videos are 1080p).
        backend: video decode backend (:func:`vidlit.data.video.open_video`).
        strict: raise on a missing or unreadable video or music file instead of skipping its
            sequence with a warning (:attr:`skipped` lists the skipped sequences).
        batch_size: windows per batch.
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        root: str = "data/music_dance_synth",
        synthetic: bool = True,
        camera: str = "c01",
        music_dir: str = "all_musics",
        clip_seconds: int = 2,
        clip_stride: int | None = None,
        motion_fps: float = 25.0,
        feature_dim: int = 64,
        frame_size: int = 64,
        backend: str = "auto",
        strict: bool = False,
        batch_size: int = 16,
        num_workers: int = 0,
    ):
        super().__init__(batch_size, num_workers)
        if not re.fullmatch(r"c0[1-9]", camera):
            raise ValueError(f"camera must be 'c01' .. 'c09', got {camera!r}")
        if int(clip_seconds) != clip_seconds or clip_seconds < 1:
            raise ValueError(f"clip_seconds must be a whole number of seconds >= 1, got {clip_seconds}")
        grid = math.isqrt(feature_dim)
        if grid < 1 or grid * grid != feature_dim:
            raise ValueError(f"feature_dim must be a square (g * g motion grid cells), got {feature_dim}")
        if motion_fps <= 0:
            raise ValueError(f"motion_fps must be positive, got {motion_fps}")
        self.root = Path(root)
        self.synthetic = synthetic
        self.camera = camera
        self.music_dir = music_dir
        self.clip_seconds = int(clip_seconds)
        self.clip_stride = int(clip_stride) if clip_stride is not None else self.clip_seconds
        if self.clip_stride < 1:
            raise ValueError(f"clip_stride must be >= 1 second, got {clip_stride}")
        self.motion_fps = float(motion_fps)
        self.feature_dim = feature_dim
        self.grid = grid
        self.frame_size = frame_size
        self.backend = backend
        self.strict = strict
        self._datasets: dict[str, MusicDanceDataset] = {}
        self._music_cache: dict[str, tuple[float, Tensor, Tensor]] = {}
        self.skipped: list[str] = []

    @property
    def num_classes(self) -> int:
        """The ten AIST dance genres."""
        return len(AIST_GENRES)

    def prepare_data(self) -> None:
        if self.synthetic and not (self.root / SPLIT_FILE.format(split="train")).is_file():
            from vidlit.data.synth.music_dance import write_music_dance

            log.info("writing the synthetic music-dance sample dataset to %s", self.root)
            write_music_dance(self.root)

    def _ignored(self) -> set[str]:
        for path in (self.root / "ignore_list.txt", self.root / "splits" / "ignore_list.txt"):
            if path.is_file():
                return {name for _, name in read_name_list(path)}
        return set()

    def sequences(self, split: str) -> list[AISTSequence]:
        """The sequences of ``split`` (``crossmodal_<split>.txt``) minus ``ignore_list.txt``."""
        path = self.root / SPLIT_FILE.format(split=split)
        ignored = self._ignored()
        out = []
        for line, name in read_name_list(path):
            if name in ignored:
                continue
            seq = parse_aist_name(name, where=f"{path}:{line}")
            if seq.music_id[1:3] != seq.genre:
                raise ValueError(f"{path}:{line}: {name!r} dances genre {seq.genre} to music {seq.music_id}")
            out.append(seq)
        return out

    def _music(self, music_id: str, path: Path | None = None) -> tuple[float, Tensor, Tensor]:
        """``(seconds, onset envelope [frames], log-mel patches [seconds, 96, 64])`` of a track, cached.

        Patches start on whole seconds, so a window's patches are a slice of the track's. ``path``:
        the track's file (default ``<music_dir>/<music_id>.wav``).
        """
        path = path or self.root / self.music_dir / f"{music_id}.wav"
        if path not in self._music_cache:
            waveform = read_audio(path, sample_rate=SAMPLE_RATE, mono=True)[0][0]
            # one log-mel spectrogram gives both the rhythm and the timbre input
            envelope, patches = onset_envelope_and_patches(waveform, SAMPLE_RATE)
            self._music_cache[path] = (waveform.shape[0] / SAMPLE_RATE, envelope, patches)
        return self._music_cache[path]

    def _windows(
        self, seq: AISTSequence, video: Path | None = None, music: Path | None = None
    ) -> list[dict[str, Any]]:
        path = video or self._paths(seq)[0]
        with open_video(path, backend=self.backend, resize=self.frame_size) as reader:
            fps, duration = reader.fps, reader.duration
            steps = int(duration * self.motion_fps)
            indices = [min(int(k / self.motion_fps * fps + 1e-6), len(reader) - 1) for k in range(steps)]
            frames = reader.get_frames(indices)
        music_seconds, audio_env, patches = self._music(seq.music_id, music)
        length = min(duration, music_seconds)
        features, strength = motion_features(frames, self.grid)
        visual_env = visual_onset_envelope(strength, self.motion_fps, int(length * ENVELOPE_RATE))
        clip_steps = int(round(self.clip_seconds * self.motion_fps))
        clip_frames = self.clip_seconds * ENVELOPE_RATE
        windows = []
        start = 0
        while start + self.clip_seconds <= length + 1e-6:
            step0, env0 = int(round(start * self.motion_fps)), start * ENVELOPE_RATE
            motion = features[step0 : step0 + clip_steps]
            v_env, a_env = visual_env[env0 : env0 + clip_frames], audio_env[env0 : env0 + clip_frames]
            audio = patches[start : start + self.clip_seconds]
            if (
                len(motion) < clip_steps
                or min(len(v_env), len(a_env)) < clip_frames
                or len(audio) < self.clip_seconds
            ):
                break
            windows.append(
                {
                    "motion": motion,
                    "visual_envelope": _normalize(v_env),
                    "audio_envelope": _normalize(a_env),
                    "audio": audio,
                    "genre": AIST_GENRES.index(seq.genre) if seq.genre in AIST_GENRES else -1,
                    "video_id": f"{seq.name}@{start}",
                    "music_id": f"{seq.music_id}@{start}",
                }
            )
            start += self.clip_stride
        if not windows:
            raise ValueError(f"{path}: shorter ({length:.2f} s) than one {self.clip_seconds}-s window")
        return windows

    def _paths(self, seq: AISTSequence) -> tuple[Path, Path]:
        """The video (of camera ``camera`` for a ``cAll`` name) and the music file of a sequence."""
        name = seq.with_camera(self.camera) if seq.camera == "All" else seq.name
        where = f"sequence {name!r}"
        return (
            confined_path(self.root / "videos", f"{name}.mp4", where),
            confined_path(self.root / self.music_dir, f"{seq.music_id}.wav", where),
        )

    def dataset(self, split: str) -> MusicDanceDataset:
        """The windows of ``"train"``, ``"val"`` or ``"test"`` (``"predict"`` is the test split),
        computed on first use.

        Raises:
            FileNotFoundError: under ``strict``, a sequence without its video or music file.
            VideoDecodeError: under ``strict``, an unreadable video or music file.
        """
        split = "test" if split == "predict" else split
        if split not in self._datasets:
            self.prepare_data()
            sequences = self.sequences(split)
            missing = [(seq, path) for seq in sequences for path in self._paths(seq) if not path.is_file()]
            if missing:
                missing_files(
                    f"{len(missing)} video or music file(s) of the {split} split "
                    f"({self.root / SPLIT_FILE.format(split=split)}) not found, e.g. {missing[0][1]}",
                    self.strict,
                    skipping="skipping their sequences",
                )
                absent = {seq.name for seq, _ in missing}
                self.skipped += sorted(absent)
                sequences = [seq for seq in sequences if seq.name not in absent]
            items: list[dict[str, Any]] = []
            for seq in sequences:
                try:
                    items += self._windows(seq)
                except VideoDecodeError as e:
                    if self.strict:
                        raise
                    self.skipped.append(seq.name)
                    log.warning("skipping %s: %s", seq.name, e)
            if not items:
                raise ValueError(f"{self.root}: no readable window in the {split} split")
            self._datasets[split] = MusicDanceDataset(items)
        return self._datasets[split]

    def _split(self, split: str) -> MusicDanceDataset:
        # built on first use, so a loader works without setup()
        return self.dataset(split)

    def _collate(self):
        return collate_music_dance

    def inference_inputs(self, path: Path, video_id: str, music: Path | None = None) -> InferenceInput:
        """``vidlit infer``: one dance video and the music it is danced to (``music``, ``--music``).

        Cut into the windows of evaluation (``clip_seconds`` apart from time 0), each with its
        motion, visual and music rhythm and log-mel patches; the head gives per window both
        embeddings, the genre scores and the rhythm alignment. A video named like an AIST
        sequence keeps its genre as the (unused) label.
        """
        if music is None:
            raise ValueError(f"{video_id}: a music-dance model pairs the dance with its music: pass --music")
        music = Path(music)
        if not music.is_file():
            raise FileNotFoundError(f"{music}: music file not found (--music)")
        try:
            seq = parse_aist_name(path.stem)
        except ValueError:  # any video: no genre label
            seq = AISTSequence(path.stem, "", "", "", "", music.stem, "")
        seq = AISTSequence(
            seq.name, seq.genre, seq.situation, seq.camera, seq.dancer, music.stem, seq.choreography
        )
        try:
            windows = self._windows(seq, path, music)
        except VideoDecodeError as e:
            raise ValueError(f"{video_id}: cannot decode: {e}") from e
        return InferenceInput(collate_music_dance(windows), path.stem)
