"""LORIS soundtrack-generation data: audio, I3D features and pose from three parallel lists.

Reads the released layout (see :mod:`vidlit.formats.loris`): ``{split}_audio.txt``,
``{split}_visual.txt`` and ``{split}_pose.txt``, aligned by line, each line a path under the
dataset root (confined to it). For every clip:

- **audio**: mono at ``sample_rate`` (resampled where the file differs, once per process:
  :class:`ResampleCache`), peak-normalized to 0.95;
  at train time a random gain in ``[0.3, 1.0]`` and a random crop (or zero pad) to
  ``segment_samples``, at eval time the first ``segment_samples`` (padded);
- **rhythm**: the binary visual-beat sequence of the pose
  (:func:`vidlit.layers.rhythm.visual_beats`: directogram, spectral flux, peak picking), computed
  once per clip in ``setup()``;
- **visual**: the I3D features, 2 Hz;
- **genre**: the AIST genre code in the clip id for the ``dance`` subset, else -1.

The crop starts on a whole visual step (0.5 s), so audio, beats and features stay aligned. Files
are checked in ``setup()`` (the wav header, the ``.npy`` shapes): a missing or bad file skips its
clip and is counted in :attr:`LorisDataModule.skipped`, or raises naming the file with
``strict=True``. ``vidlit predict`` writes one generated ``.wav`` per clip and a JSON of their
beat metrics (:meth:`LorisDataModule.write_submission`).
"""

from __future__ import annotations

import io
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from vidlit.core.io import confined_path, write_atomic, write_json_atomic
from vidlit.data.base import EpochSeeded, InferenceInput, VidlitDataModule
from vidlit.formats._schema import validate
from vidlit.formats.loris import (
    GAIN_RANGE,
    LIST_KINDS,
    NUM_JOINTS,
    PEAK,
    POSE_RATE,
    SAMPLE_RATE,
    SEGMENT_SAMPLES,
    VISUAL_RATE,
    LorisBatch,
    LorisClip,
    LorisPrediction,
    condition_steps,
    list_name,
)
from vidlit.formats.music_dance import AIST_GENRES
from vidlit.layers.rhythm import beat_summary, clip_beat_scores, visual_beats

log = logging.getLogger(__name__)

SUBSETS = ("dance", "floor_exercise", "figure_skating")
_GENRE = re.compile(r"(?:^|_)g([A-Z]{2})_")


@dataclass
class LorisItem:
    """One clip as read in ``setup()``: its paths, visual beats and genre."""

    clip_id: str
    audio: Path
    visual: Path
    beats: Tensor  # [frames] binary at 16 Hz
    genre: int


def read_lists(root: Path, split: str) -> list[tuple[str, LorisClip]]:
    """The validated line triples of one split: ``(where, clip)`` per line.

    Raises:
        FileNotFoundError: a list file is missing.
        AnnotationError / ValueError: a malformed line, or lists of different lengths.
    """
    lists = {}
    for kind in LIST_KINDS:
        path = root / list_name(split, kind)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: LORIS {kind} list not found")
        lists[kind] = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        while lists[kind] and not lists[kind][-1]:
            lists[kind].pop()
    lengths = {kind: len(lines) for kind, lines in lists.items()}
    if len(set(lengths.values())) > 1:
        counts = ", ".join(f"{list_name(split, k)}: {n}" for k, n in lengths.items())
        raise ValueError(f"{root}: the {split} lists are not parallel (lines {counts})")
    clips = []
    for i in range(lengths["audio"]):
        where = f"line {i + 1}"
        document = {kind: lists[kind][i] for kind in LIST_KINDS}
        clip = validate(LorisClip, document, root / list_name(split, "audio"), where=where)
        clips.append((f"{list_name(split, 'audio')}: {where}", clip))
    return clips


class ResampleCache:
    """Waveforms :func:`read_wav` resampled, the least recently used dropped past ``max_bytes``.

    Resampling (librosa's soxr) costs far more than reading a wav, and training reads every clip
    once per epoch, so a file whose rate differs from the data's is resampled once per process.
    Keyed by the file's resolved path, size, mtime and the target rate: a file changed on disk is
    read again. Private to its process: each (persistent) DataLoader worker fills its own, and a
    pickled cache starts empty.

    Args:
        max_bytes: the most bytes of waveforms kept.
    """

    def __init__(self, max_bytes: int = 512 * 2**20):
        self.max_bytes = max_bytes
        self._waveforms: OrderedDict[tuple[str, int, int, int], Tensor] = OrderedDict()
        self._bytes = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def __len__(self) -> int:
        return len(self._waveforms)

    @staticmethod
    def key(path: Path, sample_rate: int) -> tuple[str, int, int, int]:
        status = path.stat()
        return str(path.resolve()), status.st_size, status.st_mtime_ns, sample_rate

    def get(self, key: tuple[str, int, int, int]) -> Tensor | None:
        """A copy of the cached waveform (callers may change it in place), or None."""
        waveform = self._waveforms.get(key)
        if waveform is None:
            return None
        self._waveforms.move_to_end(key)  # most recently used last
        return waveform.clone()

    def put(self, key: tuple[str, int, int, int], waveform: Tensor) -> None:
        size = waveform.numel() * waveform.element_size()
        if size > self.max_bytes:
            return
        self._waveforms[key] = waveform.clone()
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, dropped = self._waveforms.popitem(last=False)
            self._bytes -= dropped.numel() * dropped.element_size()

    def clear(self) -> None:
        self._waveforms.clear()
        self._bytes = 0


# the process's resampled waveforms (see ResampleCache); read_wav's default
RESAMPLED = ResampleCache()


def read_wav(path: Path, sample_rate: int, cache: ResampleCache | None = RESAMPLED) -> Tensor:
    """``[n]`` mono float waveform at ``sample_rate``, peak-normalized to 0.95 (silence stays 0).

    A file at another rate is resampled once and kept in ``cache`` (default: the process's
    :data:`RESAMPLED`; None resamples every time).
    """
    import soundfile

    path = Path(path)
    key = ResampleCache.key(path, sample_rate) if cache is not None else None
    if key is not None and (cached := cache.get(key)) is not None:
        return cached
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    audio = data.mean(axis=1)
    if rate != sample_rate:
        import librosa

        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate)
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak > 0:
        audio = audio / peak * PEAK
    waveform = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if key is not None and rate != sample_rate:  # a wav at the data's rate is cheap to read again
        cache.put(key, waveform)
    return waveform


def _fit(x: Tensor, length: int) -> Tensor:
    """Cut or zero-pad dim 0 to ``length``."""
    if x.shape[0] >= length:
        return x[:length]
    return F.pad(x, (0, 0) * (x.ndim - 1) + (0, length - x.shape[0]))


class LorisDataset(EpochSeeded, Dataset):
    """Clips of one split; train items draw their crop and gain from ``(seed, epoch, index)``."""

    def __init__(
        self, items: list[LorisItem], sample_rate: int, segment_samples: int, train: bool, seed: int
    ):
        super().__init__(seed)
        self.items = items
        self.sample_rate = sample_rate
        self.segment_samples = segment_samples
        self.train = train
        self.beat_frames = condition_steps(segment_samples, sample_rate, POSE_RATE)
        self.visual_steps = condition_steps(segment_samples, sample_rate, VISUAL_RATE)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        audio = read_wav(item.audio, self.sample_rate)
        visual = torch.from_numpy(np.load(item.visual).astype(np.float32))
        step = 0
        gain = 1.0
        if self.train:
            rng = self.rng(index)
            # the crop starts on a whole visual step, so all three streams stay aligned
            spare = (len(audio) - self.segment_samples) / self.sample_rate
            step = int(rng.integers(0, int(max(spare, 0.0) * VISUAL_RATE) + 1))
            gain = float(rng.uniform(*GAIN_RANGE))
        start = int(round(step / VISUAL_RATE * self.sample_rate))
        frame = int(round(step / VISUAL_RATE * POSE_RATE))
        clip = _fit(audio[start:, None], self.segment_samples)[:, 0]
        return {
            "audio": (clip * gain)[None],
            "reference": _fit(audio[:, None], self.segment_samples)[:, 0],
            "beats": _fit(item.beats[frame:, None], self.beat_frames)[:, 0],
            "visual": _fit(visual[step:], self.visual_steps),
            "genre": item.genre,
            "video_id": item.clip_id,
        }


def collate_loris(samples: list[dict[str, Any]], sample_rate: int) -> LorisBatch:
    """Stack items into a :class:`~vidlit.formats.loris.LorisBatch`."""
    return LorisBatch(
        audio=torch.stack([s["audio"] for s in samples]),
        beats=torch.stack([s["beats"] for s in samples]),
        visual=torch.stack([s["visual"] for s in samples]),
        genre=torch.tensor([s["genre"] for s in samples], dtype=torch.long),
        sample_rate=sample_rate,
        video_ids=[s["video_id"] for s in samples],
        targets=[
            {"video_id": s["video_id"], "audio": s["reference"], "sample_rate": sample_rate} for s in samples
        ],
    )


class _Collate:
    """A picklable collate function bound to the sample rate (for DataLoader workers)."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate

    def __call__(self, samples: list[dict[str, Any]]) -> LorisBatch:
        return collate_loris(samples, self.sample_rate)


class LorisDataModule(VidlitDataModule):
    """The LORIS lists of one subset (dance, floor exercise or figure skating), 25-s or 50-s clips.

    Args:
        root: dataset folder holding the lists and the files they name.
        subset: ``"dance"`` (AIST++, with genres), ``"floor_exercise"`` or ``"figure_skating"``.
        sample_rate: audio rate (LORIS: 22,050 Hz).
        segment_samples: generated length in samples (LORIS: 2^19 for the 25-s configurations).
        feature_dim: I3D feature width (1024).
        train_split: the training lists' split name.
        val_split: the validation lists' split name (test and predict read it too).
        strict: raise on a missing or bad file instead of skipping its clip.
        synthetic: write the sample dataset (:func:`vidlit.data.synth.loris.write_loris`) when
            ``root`` has no training lists.
        batch_size: clips per batch.
        num_workers: DataLoader workers.
        seed: base seed of the train-time crop and gain.
    """

    def __init__(
        self,
        root: str = "data/loris_synth",
        subset: str = "dance",
        sample_rate: int = SAMPLE_RATE,
        segment_samples: int = SEGMENT_SAMPLES,
        feature_dim: int = 1024,
        train_split: str = "train",
        val_split: str = "test",
        strict: bool = False,
        synthetic: bool = False,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
        if sample_rate <= 0 or segment_samples <= 0:
            raise ValueError(
                f"sample_rate and segment_samples must be positive, got {sample_rate}, {segment_samples}"
            )
        self.root = Path(root)
        self.subset = subset
        self.sample_rate = sample_rate
        self.segment_samples = segment_samples
        self.feature_dim = feature_dim
        self.splits = {"train": train_split, "val": val_split, "test": val_split, "predict": val_split}
        self.strict = strict
        self.synthetic = synthetic
        self.seed = seed
        self.skipped: list[str] = []
        self._items: dict[str, list[LorisItem]] = {}

    @property
    def num_classes(self) -> int:
        """Genres: the ten AIST genres for dance, none (0) for the other subsets."""
        return len(AIST_GENRES) if self.subset == "dance" else 0

    def prepare_data(self) -> None:
        if self.synthetic and not (self.root / list_name(self.splits["train"], "audio")).is_file():
            from vidlit.data.synth.loris import write_loris

            log.info("writing the synthetic LORIS sample dataset to %s", self.root)
            write_loris(self.root, sample_rate=self.sample_rate, feature_dim=self.feature_dim)

    def _genre(self, clip_id: str) -> int:
        if self.subset != "dance":
            return -1
        match = _GENRE.search(clip_id)
        return AIST_GENRES.index(match.group(1)) if match and match.group(1) in AIST_GENRES else -1

    def _check(self, where: str, clip: LorisClip) -> LorisItem:
        """The clip's item, or a ValueError / FileNotFoundError naming the file at fault."""
        paths = {kind: confined_path(self.root, getattr(clip, kind), where) for kind in LIST_KINDS}
        return self._read_item(clip.clip_id, paths, where)

    def _read_item(self, clip_id: str, paths: dict[str, Path], where: str) -> LorisItem:
        """The item of a clip's ``audio`` / ``visual`` / ``pose`` files, checked; errors name the file."""
        for kind, path in paths.items():
            if not path.is_file():
                raise FileNotFoundError(f"{path}: {kind} file not found ({where})")
        import soundfile

        try:
            info = soundfile.info(str(paths["audio"]))
        except Exception as e:  # soundfile raises its own error types for unreadable headers
            raise ValueError(f"{paths['audio']}: not a readable audio file ({where}): {e}") from None
        if info.frames == 0:
            raise ValueError(f"{paths['audio']}: empty audio file ({where})")
        try:
            visual = np.load(paths["visual"], mmap_mode="r")
            pose = np.load(paths["pose"])
        except Exception as e:  # a truncated or foreign file: numpy raises several types
            raise ValueError(f"{where}: unreadable .npy file: {e}") from None
        if visual.ndim != 2 or visual.shape[1] != self.feature_dim or visual.shape[0] == 0:
            raise ValueError(
                f"{paths['visual']}: visual features must be [steps, {self.feature_dim}], "
                f"got {visual.shape} ({where})"
            )
        if pose.ndim != 3 or pose.shape[1:] != (NUM_JOINTS, 3) or pose.shape[0] < 2:
            raise ValueError(
                f"{paths['pose']}: pose must be [frames >= 2, 17, 3], got {pose.shape} ({where})"
            )
        if not np.isfinite(pose).all():
            raise ValueError(f"{paths['pose']}: pose has non-finite values ({where})")
        beats = visual_beats(torch.from_numpy(pose.astype(np.float32)))
        return LorisItem(clip_id, paths["audio"], paths["visual"], beats, self._genre(clip_id))

    def items(self, split: str) -> list[LorisItem]:
        """The readable clips of ``split`` (read and checked once)."""
        name = self.splits[split]
        if name not in self._items:
            items = []
            for where, clip in read_lists(self.root, name):
                try:
                    items.append(self._check(where, clip))
                except (FileNotFoundError, ValueError) as e:
                    if self.strict:
                        raise
                    self.skipped.append(str(e))
                    log.warning("skipping a LORIS clip: %s (strict=False)", e)
            if not items:
                raise ValueError(
                    f"{self.root / list_name(name, 'audio')}: no readable clips ({len(self.skipped)} skipped)"
                )
            self._items[name] = items
        return self._items[name]

    def dataset(self, split: str) -> LorisDataset:
        return LorisDataset(
            self.items(split), self.sample_rate, self.segment_samples, train=split == "train", seed=self.seed
        )

    def _collate(self) -> _Collate:
        return _Collate(self.sample_rate)

    def inference_inputs(
        self, path: Path, video_id: str, pose: Path | None = None, music: Path | None = None
    ) -> InferenceInput:
        """``vidlit infer``: generate a soundtrack for one clip from its I3D features and its pose.

        ``path`` holds the I3D features (``[steps, feature_dim]`` ``.npy`` at 2 Hz), ``pose``
        (``--pose``) the pose (``[frames, 17, 3]`` ``.npy`` at 16 Hz).

        ``music`` (``--music``): the clip's own music, the reference the submission's beat scores
        (BCS, BHS) compare the generated soundtrack with; without it the submission has no
        beat scores (the batch's reference is silence, which generation never reads). The genre
        is read from the file name as in the lists (``..._gBR_...``). The submission writes
        ``<file stem>.wav`` beside it.
        """
        if pose is None:
            raise ValueError(
                f"{video_id}: a LORIS model follows the dancer's pose: pass --pose (a [frames, 17, 3] .npy)"
            )
        import tempfile

        import soundfile

        with tempfile.TemporaryDirectory(prefix="vidlit-loris-") as tmp:
            reference = Path(music) if music is not None else Path(tmp) / "silence.wav"
            if music is None:
                silence = np.zeros(self.segment_samples, np.float32)
                soundfile.write(str(reference), silence, self.sample_rate)
            paths = {"audio": reference, "visual": path, "pose": Path(pose)}
            item = self._read_item(path.stem, paths, video_id)
            dataset = LorisDataset(
                [item], self.sample_rate, self.segment_samples, train=False, seed=self.seed
            )
            batch = self._collate()([dataset[0]])
        references = {item.clip_id: reference} if music is not None else {}
        return InferenceInput(
            batch, item.clip_id, lambda preds, out: self.write_submission(preds, out, references)
        )

    def write_submission(
        self, predictions: list[LorisPrediction], path: str | Path, references: dict[str, Path] | None = None
    ) -> Path:
        """Write each generated waveform as ``<clip id>.wav`` beside ``path``, a JSON of their metrics.

        The JSON holds the beat metrics over all clips (BCS, BHS, CSD, HSD, F1) against the
        references and each clip's wav name, BCS and BHS. Every file is written atomically.

        Args:
            predictions: the head's generated soundtracks.
            path: the JSON to write.
            references: ``{clip id: reference music file}``; default the predict split's clips.
        """
        import soundfile

        path = Path(path)
        if references is None:
            references = {item.clip_id: item.audio for item in self.items("predict")}
        clips, bcs, bhs = [], [], []
        for pred in predictions:
            clip_id = pred["video_id"]
            waveform = pred["waveform"].detach().float().cpu().clamp(-1, 1).numpy()
            buffer = io.BytesIO()
            soundfile.write(buffer, waveform, int(pred["sample_rate"]), format="WAV", subtype="PCM_16")
            wav = confined_path(path.parent, f"{clip_id}.wav", f"prediction {clip_id!r}")
            write_atomic(buffer.getvalue(), wav)
            entry: dict[str, Any] = {"video_id": clip_id, "wav": wav.name}
            if clip_id in references:
                # the reference whole: its bins, not its samples, are cut to the generated length
                reference = read_wav(references[clip_id], self.sample_rate)
                c, h = clip_beat_scores(waveform, int(pred["sample_rate"]), reference, self.sample_rate)
                entry.update(BCS=c, BHS=h)
                bcs.append(c)
                bhs.append(h)
            clips.append(entry)
        metrics = {}
        if bcs:
            summary = beat_summary(
                torch.tensor(bcs, dtype=torch.float64), torch.tensor(bhs, dtype=torch.float64)
            )
            metrics = {k: float(v) for k, v in summary.items()}
        return write_json_atomic({"metrics": metrics, "clips": clips}, path)
