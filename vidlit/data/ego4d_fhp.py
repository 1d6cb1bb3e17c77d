"""Ego4D forecasting: Future Hand Prediction annotations, clip decoding and submissions.

The official annotation files (``fho_hands_train.json``, ``fho_hands_val.json``,
``fho_hands_test_unannotated.json``) hold ``{"version", "date", "description", "manifest",
"split", "clips": [{"clip_id", "clip_uid", "video_uid", "frames": [action, ...]}]}``. Each action
has five key frames, ``pre_45``, ``pre_30``, ``pre_15``, ``pre_frame`` and ``contact_frame``, each
``{"frame": video frame, "clip_frame": clip frame, "boxes": [{"left_hand": [x, y]},
{"right_hand": [x, y]}]}`` with a hand left out when it was not annotated (or no ``boxes`` at
all). The task: from the frames before ``pre_45``, predict both hands' positions (pixels of the
original frame) at the five key frames, 20 values (Ego4D paper, Sec. I.1; the baseline
``EGO4D/forecasting``, ``Ego4D-Future-Hand-Prediction``).

Videos are the Ego4D clips, ``<video_dir>/<clip_uid>.mp4``; the observed frames are
``num_frames`` frames ``sampling_rate`` apart, the last one ``sampling_rate`` frames before the
``pre_45`` clip frame. Frames are resized to ``size x size`` without cropping, so pixel
coordinates keep their meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from vidlit.core.io import read_json, write_json_atomic
from vidlit.data.base import InferenceInput, missing_files
from vidlit.data.raw_video import RawVideoFolderDataModule
from vidlit.data.video import open_video
from vidlit.formats._ego4d import confine
from vidlit.formats._schema import validate
from vidlit.formats.ego4d_fhp import HANDS, KEY_FRAMES, FHPBatch, FHPFile, FHPPrediction


@dataclass
class HandSample:
    """One action to forecast hands for.

    Attributes:
        clip_uid: the clip's id (names the video file).
        clip_id: the clip's integer id (names the sample in the submission).
        pre45_frame: the ``pre_45`` key frame on the video clock.
        pre45_clip_frame: the ``pre_45`` key frame on the clip clock (where observation ends).
        hands: ``[5, 2, 2]`` float: key frame, hand (left, right), (x, y) pixels; 0 where missing.
        valid: ``[5, 2]`` bool: which hands are annotated.
        where: the sample's clip in its file (``fho_hands_val.json: clips[3]``), for messages.
    """

    clip_uid: str
    clip_id: int
    pre45_frame: int
    pre45_clip_frame: int
    hands: Tensor
    valid: Tensor
    where: str = ""

    @property
    def key(self) -> str:
        """The official submission key ``"<clip_id>_<pre45_frame - 1>"``."""
        return f"{self.clip_id}_{self.pre45_frame - 1}"


def read_hand_annotations(path: str | Path) -> list[HandSample]:
    """Parse and validate an official ``fho_hands_*.json`` (:class:`~vidlit.formats.ego4d_fhp.FHPFile`).

    One sample per annotated action.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid JSON (with line and column), or one line naming the record and key
            that breaks a rule of the schema.
    """
    path = Path(path)
    document = validate(FHPFile, read_json(path), path)
    samples = []
    for c, clip in enumerate(document.clips):
        for action in clip.frames:
            hands = torch.zeros(len(KEY_FRAMES), len(HANDS), 2)
            valid = torch.zeros(len(KEY_FRAMES), len(HANDS), dtype=torch.bool)
            for f, name in enumerate(KEY_FRAMES):
                key_frame = getattr(action, name)
                for box in (key_frame.boxes if key_frame is not None else None) or []:
                    for h, hand in enumerate(HANDS):
                        point = getattr(box, f"{hand}_hand")
                        if point is not None:
                            hands[f, h] = torch.tensor(point)
                            valid[f, h] = True
            samples.append(
                HandSample(
                    clip_uid=clip.clip_uid,
                    clip_id=clip.clip_id,
                    pre45_frame=action.pre_45.frame,
                    pre45_clip_frame=action.pre_45.clip_frame,
                    hands=hands,
                    valid=valid,
                    where=f"{path}: clips[{c}]",
                )
            )
    return samples


def write_hand_submission(predictions: list[FHPPrediction], path: str | Path) -> Path:
    """Write predictions as an Ego4D Future Hand Prediction submission JSON.

    The layout is the baseline's ``generate_submission.py``: ``{"<clip_id>_<pre45_frame - 1>":
    [l_x, l_y, r_x, r_y] x 5 key frames}`` (20 floats). Like that script, the views of a sample
    are *summed*; the official evaluator divides by its ``num_clips`` (the number of test views).
    Written through a temporary file and a rename.
    """
    sums: dict[str, Tensor] = {}
    for pred in predictions:
        flat = torch.as_tensor(pred["hands"]).detach().float().cpu().reshape(20)
        sums[pred["video_id"]] = sums.get(pred["video_id"], 0) + flat
    return write_json_atomic({key: [float(x) for x in value] for key, value in sums.items()}, path)


class HandForecastDataset(Dataset):
    """Observed frames before ``pre_45`` and the future hand positions, one item per (sample, view).

    Args:
        samples: parsed annotations.
        video_dir: folder of ``<clip_uid>.mp4``.
        num_frames: observed frames per view.
        sampling_rate: frames between observed frames.
        size: frames are resized to ``size x size``.
        views: temporal views per sample (shifted by ``sampling_rate / views`` frames each), for
            multi-view test averaging; the metric averages the views of a sample.
        backend: video decoding backend (see :func:`vidlit.data.video.open_video`).
        cache: keep every decoded view in memory (uint8, ``num_frames * size**2 * 3`` bytes
            each, per process), so later epochs skip decoding; for small datasets.
    """

    def __init__(
        self,
        samples: list[HandSample],
        video_dir: Path,
        num_frames: int = 8,
        sampling_rate: int = 4,
        size: int = 224,
        views: int = 1,
        backend: str = "auto",
        cache: bool = False,
    ):
        if num_frames < 1 or sampling_rate < 1 or size < 1 or views < 1:
            raise ValueError("num_frames, sampling_rate, size and views must be positive")
        self.samples = samples
        self.video_dir = video_dir
        self.num_frames = num_frames
        self.sampling_rate = sampling_rate
        self.size = size
        self.views = views
        self.backend = backend
        self.cache = cache
        self._frames: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.samples) * self.views

    def frame_indices(self, sample: HandSample, view: int = 0) -> list[int]:
        """Clip frames of one view: ``num_frames`` frames ``sampling_rate`` apart before ``pre_45``."""
        shift = view * self.sampling_rate // self.views
        last = sample.pre45_clip_frame - self.sampling_rate - shift
        return [max(0, last - self.sampling_rate * (self.num_frames - 1 - i)) for i in range(self.num_frames)]

    def video_path(self, sample: HandSample) -> Path:
        """The clip a sample's frames are decoded from."""
        return self.video_dir / f"{sample.clip_uid}.mp4"

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index // self.views]
        frames = self._frames.get(index)
        if frames is None:
            path = self.video_path(sample)
            with open_video(path, backend=self.backend, resize=(self.size, self.size)) as reader:
                indices = [min(i, len(reader) - 1) for i in self.frame_indices(sample, index % self.views)]
                frames = reader.get_frames(indices)  # t h w c uint8
            if self.cache:
                self._frames[index] = frames
        return {
            "video": frames,
            "video_id": sample.key,
            "hands": sample.hands,
            "valid": sample.valid,
        }


def collate_hands(samples: list[dict[str, Any]]) -> FHPBatch:
    """Collate views into a hand-forecasting batch (:class:`~vidlit.formats.ego4d_fhp.FHPBatch`).

    Returns:
        ``video [b, t, h, w, c]`` uint8 (the data module normalizes it on the device,
        :meth:`Ego4DFHP.on_after_batch_transfer`), ``hands [b, 5, 2, 2]`` pixels,
        ``valid [b, 5, 2]`` bool, ``video_ids`` (submission keys) and ``targets`` in
        :class:`~vidlit.metrics.hand_displacement.HandDisplacement`'s format.
    """
    return FHPBatch(
        video=torch.stack([s["video"] for s in samples]),
        hands=torch.stack([s["hands"] for s in samples]),
        valid=torch.stack([s["valid"] for s in samples]),
        video_ids=[s["video_id"] for s in samples],
        targets=[{"video_id": s["video_id"], "hands": s["hands"], "valid": s["valid"]} for s in samples],
    )


class Ego4DFHP(RawVideoFolderDataModule):
    """Ego4D Future Hand Prediction on raw clips.

    Annotation files are validated against :mod:`vidlit.formats.ego4d_fhp` in ``setup()``: one
    line names the file, the record and the key at fault.

    Batches are those of :func:`collate_hands`; after :meth:`on_after_batch_transfer`, on the
    training device, ``video`` is ImageNet-normalized float ``[b, 3, t, size, size]``. The shared
    setup (root, synthetic sample, split files read once, video folder, normalization) is
    :class:`~vidlit.data.raw_video.RawVideoFolderDataModule`'s.

    Args:
        root: dataset folder; relative file arguments below resolve against it.
        train_annotations: official train annotation JSON.
        val_annotations: official val annotation JSON (also the default test set).
        test_annotations: annotations evaluated by ``vidlit test``; defaults to ``val_annotations``.
        predict_annotations: samples ``vidlit predict`` runs on (e.g.
            ``fho_hands_test_unannotated.json``); defaults to ``val_annotations``.
        video_dir: folder of ``<clip_uid>.mp4`` clips.
        num_frames: observed frames (the backbone's clip length).
        sampling_rate: frames between observed frames.
        size: frame side after resizing (the backbone's input size).
        test_views: temporal views averaged per sample by ``vidlit test`` and ``predict``
            (validation uses one).
        backend: video decoding backend.
        synthetic: when ``root`` does not exist, generate the synthetic sample dataset there
            (``vidlit data synth ego4d_fhp``) and say so. Leave False for real data.
        strict: a missing clip raises; when False, its samples are skipped with a warning.
        batch_size: clips per batch.
        num_workers: DataLoader worker processes.
        cache: keep decoded clips in memory across epochs (small datasets, ``num_workers=0``).
    """

    synthetic_name = "Ego4D hands"

    def __init__(
        self,
        root: str = "data/ego4d_fhp",
        train_annotations: str = "fho_hands_train.json",
        val_annotations: str = "fho_hands_val.json",
        test_annotations: str | None = None,
        predict_annotations: str | None = None,
        video_dir: str = "clips",
        num_frames: int = 8,
        sampling_rate: int = 4,
        size: int = 224,
        test_views: int = 1,
        backend: str = "auto",
        synthetic: bool = False,
        strict: bool = True,
        batch_size: int = 8,
        num_workers: int = 0,
        cache: bool = False,
    ):
        super().__init__(
            root, train_annotations, val_annotations, test_annotations, predict_annotations, video_dir,
            size=size, backend=backend, synthetic=synthetic, strict=strict, batch_size=batch_size,
            num_workers=num_workers,
        )  # fmt: skip
        self.cache = cache
        self.num_frames = num_frames
        self.sampling_rate = sampling_rate
        self.test_views = test_views

    def write_synthetic(self, root: Path) -> None:
        """Write the synthetic hands sample (:func:`vidlit.data.synth.ego4d_fhp.write_ego4d_fhp`)."""
        from vidlit.data.synth.ego4d_fhp import write_ego4d_fhp

        write_ego4d_fhp(root)

    def read_annotations(self, split: str) -> list[HandSample]:
        """Read and validate the annotation file of ``split`` (read once, :meth:`annotations`).

        Raises:
            ValueError: no annotated actions, or a clip id that would leave ``video_dir``.
        """
        samples = read_hand_annotations(self.files[split])
        if not samples:
            raise ValueError(f"{self.files[split]}: no annotated actions found")
        for sample in samples:
            confine(self.video_dir, f"{sample.clip_uid}.mp4", f"{sample.where}: key 'clip_uid'")
        return samples

    def dataset(self, split: str) -> HandForecastDataset:
        """The dataset of one split, with missing clips reported before training starts."""
        samples = self.annotations(split)
        missing = sorted(
            {s.clip_uid for s in samples if not (self.video_dir / f"{s.clip_uid}.mp4").is_file()}
        )
        if missing:
            missing_files(
                f"{self.video_dir}: no video for {len(missing)} {split} clips, e.g. {missing[0]}.mp4",
                self.strict,
                "skipping their samples",
            )
            gone = set(missing)
            samples = [s for s in samples if s.clip_uid not in gone]
        views = self.test_views if split in ("test", "predict") else 1
        return HandForecastDataset(
            samples,
            self.video_dir,
            self.num_frames,
            self.sampling_rate,
            self.size,
            views,
            self.backend,
            self.cache,
        )

    def _collate(self) -> Callable:
        return collate_hands

    def inference_inputs(self, path: Path, video_id: str, frame: int | None = None) -> InferenceInput:
        """``vidlit infer``: forecast both hands at the five key frames from ``pre_45`` = ``frame`` on.

        ``frame`` (``--frame``) is the ``pre_45`` frame of the video; observation ends
        ``sampling_rate`` frames before it, as in evaluation. Default: right after the video, so
        its last frame is the last one observed. The ``test_views`` views of ``vidlit predict``
        are decoded; the submission sums them (the baseline's layout) under
        ``<file stem>_<frame - 1>``.
        """
        if frame is None:
            with open_video(path, self.backend) as reader:
                frame = len(reader) - 1 + self.sampling_rate
        empty = torch.zeros(len(KEY_FRAMES), len(HANDS), 2)
        valid = torch.zeros(empty.shape[:2], dtype=torch.bool)
        sample = HandSample(path.stem, 0, frame, frame, empty, valid)
        dataset = HandForecastDataset(
            [sample], path.parent, self.num_frames, self.sampling_rate, self.size, self.test_views,
            self.backend,
        )  # fmt: skip
        dataset.video_path = lambda _: path  # the file given, whatever its name
        key = f"{path.stem}_{frame - 1}"
        items = [{**dataset[i], "video_id": key} for i in range(len(dataset))]
        return InferenceInput(collate_hands(items), key)

    def write_submission(self, predictions: list[dict[str, Any]], path: str | Path) -> Path:
        """Write ``vidlit predict`` output as an Ego4D Future Hand Prediction submission JSON."""
        return write_hand_submission(predictions, path)
