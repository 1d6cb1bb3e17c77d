"""XD-Violence: I3D RGB / VGGish feature lists, video-level labels and frame-level annotations.

The official layout (Wu et al., "Not only Look, but also Listen", ECCV 2020, ``Roc-Ng/XDVioDet``;
reused by MACIL-SD, ``JustinYuu/MACIL_SD``):

- ``list/rgb.list`` / ``list/rgb_test.list``: one ``.npy`` path per line, five per video, the
  I3D RGB features (``[T, 1024]``, one row per 16-frame snippet) of the five crops, named
  ``<video>__0.npy`` ... ``<video>__4.npy``;
- ``list/audio.list`` / ``list/audio_test.list``: one VGGish ``[T, 128]`` file per video,
  ``<video>__vggish.npy``, shared by its five crops (the official loader pairs by position,
  ``audio_list[index // 5]``; here by video name, so differently ordered lists still pair right);
- a video is normal when its name contains ``_label_A`` (e.g.
  ``A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A``), violent otherwise
  (``..._label_B2-G-0``): the only training signal (weak supervision);
- ``annotations.txt`` (test videos only): ``<video> start1 end1 start2 end2 ...`` in frames, the
  violent ranges ``[start, end)`` (the official ``make_gt.py`` sets ``gt[start:end] = 1``);
  normal videos have no line.

Frame-level ground truth: ``make_gt.py`` builds ``list/gt.npy`` from each test video's frame
count ``F`` (read with OpenCV), drops the last frame and then the ``(F - 1) % 16`` frames after the
last full snippet, so each video contributes ``16 * floor((F - 1) / 16)`` frames, which is
``16 * T`` for its ``T`` I3D snippets. Without the videos, :func:`frame_labels` builds the same
``16 * T`` frames from the features' ``T`` (ranges reaching past them are cut, as there). A
concatenated official ``gt.npy`` can be given instead (``ground_truth: list/gt.npy``); it is split
in test-list order and must have exactly ``16 * T`` frames per video.

Lengths: training sequences longer than ``max_seqlen`` (200) are resampled to it with the
official ``uniform_extract`` (``linspace(0, T - 1, 200)`` truncated to integers); shorter ones
are zero-padded with a mask. Evaluation keeps every snippet. When an audio file has one snippet
less than the RGB files, the RGB sequence loses its last snippet, as the XD-Violence loader does.

The dataset folder may be an fsspec URL (``s3://bucket/xd``, ``memory://x``): the lists, the
ground truth and the feature files are then read through :func:`fsspec.open`; the relative entries
of the lists resolve against it (and may not leave it), each feature folder is listed once.
"""

from __future__ import annotations

import functools
import io
import logging
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vidlit.core.io import (
    ListedFiles,
    as_folder,
    as_path,
    confined_path,
    file_exists,
    is_url,
    join_path,
    path_name,
    path_suffix,
    read_bytes,
    write_json_atomic,
)
from vidlit.data.base import InferenceInput, VidlitDataModule, missing_files
from vidlit.data.features import feature_steps, load_feature_file, pad_sequences
from vidlit.formats._schema import AnnotationError, validate
from vidlit.formats.xd_violence import (  # noqa: F401  (the family's names, re-exported)
    AUDIO_SUFFIX,
    CLIP_LEN,
    NORMAL_FLAG,
    AnnotationLine,
    XDViolenceBatch,
    is_violent,
)

log = logging.getLogger(__name__)


@dataclass
class XDVideo:
    """One video of a feature list: its crops' RGB files and its audio file.

    Attributes:
        name: video name (the file name without ``__<crop>.npy``).
        violent: video-level label.
        rgb: RGB feature file of each crop, in crop order.
        audio: VGGish feature file.
    """

    name: str
    violent: bool
    rgb: list[Path | str]
    audio: Path | str


def _read_text(path: Path | str, what: str) -> str:
    if is_url(path):
        return read_bytes(path, what).decode("utf-8")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    return path.read_text()


def _read_list(
    path: Path | str, root: Path | str, feature_dir: Path | str | None
) -> list[tuple[int, Path | str]]:
    """``(line number, resolved path or URL)`` of each non-empty line of a feature list."""
    entries = []
    for number, raw in enumerate(_read_text(path, "feature list").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        file: Path | str = Path(line)
        if feature_dir is not None:
            file = join_path(feature_dir, file.name)
        elif not file.is_absolute():
            # a relative entry names a file of the dataset: it may not climb out of it
            file = confined_path(root, file, f"{path}: line {number}")
        if path_suffix(file) != ".npy":
            raise ValueError(f"{path}: line {number}: expected a .npy feature file, got {line!r}")
        entries.append((number, file))
    if not entries:
        raise ValueError(f"{path}: the feature list is empty")
    return entries


def read_feature_lists(
    rgb_list: str | Path,
    audio_list: str | Path,
    root: str | Path | None = None,
    feature_dir: str | Path | None = None,
    num_crops: int = 5,
) -> list[XDVideo]:
    """Read an RGB list and its audio list into videos, crops grouped, in RGB-list order.

    Args:
        rgb_list: ``rgb.list`` / ``rgb_test.list``: ``<video>__<crop>.npy`` paths.
        audio_list: ``audio.list`` / ``audio_test.list``: ``<video>__vggish.npy`` paths.
        root: folder that relative paths in the lists resolve against (default: the list's
            parent's parent, i.e. the dataset root holding ``list/``).
        feature_dir: when set, every listed file is looked up by its file name in this folder
            (the official lists hold the absolute paths of their authors' machines).
        num_crops: crops per video; every video must list crops ``0 .. num_crops - 1``.

    Raises:
        FileNotFoundError: a missing list.
        ValueError: a malformed name, a crop listed twice or missing, or a video without audio;
            the message names the list file and line.
    """
    paths = [None if p is None else as_path(p) for p in (rgb_list, audio_list, root, feature_dir)]
    rgb_list, audio_list, root, directory = paths
    if root is None:
        root = posixpath.dirname(posixpath.dirname(rgb_list)) if is_url(rgb_list) else rgb_list.parent.parent
    crops: dict[str, dict[int, Path | str]] = {}
    first_line: dict[str, int] = {}
    for number, file in _read_list(rgb_list, root, directory):
        name, sep, crop = path_name(file).removesuffix(".npy").rpartition("__")
        if not sep or not name or not crop.isdigit():
            raise ValueError(
                f"{rgb_list}: line {number}: {path_name(file)!r} is not named <video>__<crop>.npy "
                "(e.g. ..._label_A__0.npy)"
            )
        index = int(crop)
        if index >= num_crops:
            raise ValueError(
                f"{rgb_list}: line {number}: crop {index} of {name!r} but num_crops is {num_crops}"
            )
        if index in crops.setdefault(name, {}):
            raise ValueError(f"{rgb_list}: line {number}: crop {index} of {name!r} is listed twice")
        crops[name][index] = file
        first_line.setdefault(name, number)
    audio: dict[str, Path | str] = {}
    for number, file in _read_list(audio_list, root, directory):
        name = path_name(file).removesuffix(".npy").removesuffix(AUDIO_SUFFIX)
        if name in audio:
            raise ValueError(f"{audio_list}: line {number}: audio of {name!r} is listed twice")
        audio[name] = file
    videos = []
    for name, files in crops.items():
        if sorted(files) != list(range(num_crops)):
            raise ValueError(
                f"{rgb_list}: line {first_line[name]}: video {name!r} lists crops {sorted(files)}, "
                f"expected 0..{num_crops - 1}"
            )
        if name not in audio:
            raise ValueError(
                f"{audio_list}: no audio file {name}{AUDIO_SUFFIX}.npy for video {name!r} "
                f"({rgb_list}, line {first_line[name]})"
            )
        videos.append(XDVideo(name, is_violent(name), [files[i] for i in range(num_crops)], audio[name]))
    return videos


def read_annotations(path: str | Path) -> dict[str, list[tuple[int, int]]]:
    """Parse XD-Violence's ``annotations.txt``: ``<video> start1 end1 start2 end2 ...`` in frames.

    Every line is validated against :class:`~vidlit.formats.xd_violence.AnnotationLine`.

    Returns:
        video name (without ``.mp4``) -> violent frame ranges ``[start, end)``.

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: one line naming the file, the line and the key: an odd number of frame
            numbers, a non-integer, a negative frame, an end not after its start, a video named
            normal, a video annotated twice, or a file with no annotation at all (which would
            score every violent video as normal and give AP 0.0).
    """
    path = as_path(path)
    ranges: dict[str, list[tuple[int, int]]] = {}
    for number, raw in enumerate(_read_text(path, "annotation file").splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        name = fields[0].removesuffix(".mp4")
        bounds = fields[1:]
        if len(bounds) % 2:
            raise AnnotationError(
                f"{path}: line {number} ({name}): key 'ranges': expected pairs of frame numbers "
                f"'start end ...', got {len(bounds)} numbers"
            )
        document = {"video": name, "ranges": list(zip(bounds[::2], bounds[1::2]))}
        line = validate(AnnotationLine, document, path, where=f"line {number} ({name})")
        if name in ranges:
            raise AnnotationError(f"{path}: line {number} ({name}): key 'video': {name!r} is annotated twice")
        ranges[name] = [(int(s), int(e)) for s, e in line.ranges]
    if not ranges:
        raise AnnotationError(
            f"{path}: no annotated video: the frame ground truth of the violent test videos would be all "
            "normal (AP 0.0); give one line '<video> start end ...' per violent test video"
        )
    return ranges


def frame_labels(ranges: list[tuple[int, int]], num_snippets: int, clip_len: int = CLIP_LEN) -> Tensor:
    """The ``[num_snippets * clip_len]`` 0/1 frame ground truth of one video (``make_gt.py``).

    Frames ``start <= f < end`` of each range are violent; frames past the last full snippet
    are cut off, as ``make_gt.py`` cuts ``gt.npy`` to the features' length.
    """
    labels = torch.zeros(num_snippets * clip_len, dtype=torch.uint8)
    for start, end in ranges:
        labels[start:end] = 1
    return labels


def uniform_extract(features: Tensor, length: int) -> Tensor:
    """``length`` rows at ``linspace(0, T - 1, length)`` (truncated), the official ``uniform_extract``."""
    index = np.linspace(0, len(features) - 1, length).astype(np.int64)
    return features[torch.from_numpy(index)]


class XDViolenceDataset(Dataset):
    """Samples of one split.

    Training (``train=True``): one sample per (video, crop), the crop's RGB sequence with the
    video's audio and its video-level label only; target ``{"video_id", "label"}``.
    Evaluation: one sample per video with all crops ``[k, T, C]``; target
    ``{"video_id", "frame_labels"}`` for :class:`~vidlit.metrics.frame_ap.FrameLevelAP`.

    Args:
        videos: parsed lists.
        feature_dim: RGB width.
        audio_dim: audio width.
        train: training or evaluation samples.
        max_seqlen: training sequences longer than this are resampled to it (None: never).
        ranges: violent frame ranges of each video (evaluation with ``annotations.txt``).
        gt: frame labels of each video (evaluation with an official ``gt.npy``), instead of ``ranges``.
        clip_len: frames per snippet.
    """

    def __init__(
        self,
        videos: list[XDVideo],
        feature_dim: int,
        audio_dim: int,
        train: bool,
        max_seqlen: int | None = 200,
        ranges: dict[str, list[tuple[int, int]]] | None = None,
        gt: dict[str, Tensor] | None = None,
        clip_len: int = CLIP_LEN,
    ):
        self.videos = videos
        self.feature_dim = feature_dim
        self.audio_dim = audio_dim
        self.train = train
        self.max_seqlen = max_seqlen
        self.ranges = ranges or {}
        self.gt = gt
        self.clip_len = clip_len
        self.num_crops = len(videos[0].rgb) if videos else 0
        self.items = [(v, c) for v in range(len(videos)) for c in range(self.num_crops)] if train else None

    def __len__(self) -> int:
        return len(self.items) if self.train else len(self.videos)

    def _pair(self, video: XDVideo, rgb: Tensor, rgb_path: Path | str) -> tuple[Tensor, Tensor]:
        audio = load_feature_file(video.audio, self.audio_dim, what=f"audio of {video.name}")
        if len(audio) != len(rgb):
            if abs(len(audio) - len(rgb)) > 1:
                raise ValueError(
                    f"{rgb_path} has {len(rgb)} snippets but {video.audio} has {len(audio)}: "
                    "RGB and audio features must cover the same snippets"
                )
            length = min(len(audio), len(rgb))
            rgb, audio = rgb[:length], audio[:length]
        return rgb, audio

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.train:
            v, crop = self.items[index]
            video = self.videos[v]
            path = video.rgb[crop]
            rgb, audio = self._pair(video, load_feature_file(path, self.feature_dim, what=video.name), path)
            if self.max_seqlen and len(rgb) > self.max_seqlen:
                rgb, audio = uniform_extract(rgb, self.max_seqlen), uniform_extract(audio, self.max_seqlen)
            return {
                "features": rgb,
                "audio": audio,
                "label": float(video.violent),
                "video_id": f"{video.name}__{crop}",
                "target": {"video_id": f"{video.name}__{crop}", "label": int(video.violent)},
            }
        video = self.videos[index]
        crops = [load_feature_file(p, self.feature_dim, what=video.name) for p in video.rgb]
        if len({len(c) for c in crops}) != 1:
            lengths = ", ".join(f"{path_name(p)}: {len(c)}" for p, c in zip(video.rgb, crops))
            raise ValueError(
                f"video {video.name!r}: its crops have different numbers of snippets ({lengths})"
            )
        rgb, audio = self._pair(video, torch.stack(crops, 1), video.rgb[0])  # t k c while pairing
        num_snippets = len(rgb)
        if self.gt is not None:
            labels = self.gt[video.name][: num_snippets * self.clip_len]
        else:
            labels = frame_labels(
                self.ranges.get(video.name, []) if video.violent else [], num_snippets, self.clip_len
            )
        return {
            "features": rgb.transpose(0, 1),  # k t c
            "audio": audio,
            "label": float(video.violent),
            "video_id": video.name,
            "target": {"video_id": video.name, "frame_labels": labels},
        }


def collate_xd_violence(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples: ``features`` ``[b, t, c]`` (training) or ``[b, k, t, c]`` (evaluation),
    ``audio`` ``[b, t, a]``, ``mask`` ``[b, t]``, ``labels`` ``[b]``, ``video_ids``, ``targets``.
    """
    audio, mask = pad_sequences([s["audio"] for s in samples])
    if samples[0]["features"].ndim == 3:  # k t c: pad along t
        padded, _ = pad_sequences([s["features"].transpose(0, 1).flatten(1) for s in samples])
        k = samples[0]["features"].shape[0]
        features = padded.unflatten(2, (k, -1)).transpose(1, 2)
    else:
        features, _ = pad_sequences([s["features"] for s in samples])
    return {
        "features": features,
        "audio": audio,
        "mask": mask,
        "labels": torch.tensor([s["label"] for s in samples], dtype=torch.float32),
        "video_ids": [s["video_id"] for s in samples],
        "targets": [s["target"] for s in samples],
    }


def split_official_gt(
    gt: np.ndarray, videos: list[XDVideo], lengths: list[int], path: Path | str
) -> dict[str, Tensor]:
    """Cut a concatenated official ``gt.npy`` into per-video frame labels (``16 * T`` frames each)."""
    total = sum(lengths) * CLIP_LEN
    if gt.ndim != 1 or len(gt) != total:
        raise ValueError(
            f"{path}: has {gt.size} frames but the {len(videos)} test videos have {total} "
            f"(16 per snippet); was it made from this rgb_test.list?"
        )
    parts = np.split(gt, np.cumsum([n * CLIP_LEN for n in lengths])[:-1])
    return {v.name: torch.from_numpy((p > 0).astype(np.uint8)) for v, p in zip(videos, parts)}


class XDViolence(VidlitDataModule):
    """XD-Violence on pre-extracted I3D RGB (5 crops) and VGGish features, in the official layout.

    Training reads the training lists and uses the video-level labels only (weak supervision);
    validation and testing use the test lists with the frame-level annotations (XD-Violence has
    no validation split; the official code evaluates the test set after every epoch).

    Args:
        root: dataset folder, or an fsspec URL of one (``s3://bucket/xd``, ``memory://x``); relative
            paths below (and inside the lists) resolve against it.
        rgb_list: training RGB list.
        audio_list: training audio list.
        test_rgb_list: test RGB list (validation, test and predict).
        test_audio_list: test audio list.
        ground_truth: ``annotations.txt`` (frame ranges), or an official ``gt.npy``.
        feature_dir: look every listed file up by name in this folder instead of its listed path.
        feature_dim: I3D RGB width (1024).
        audio_dim: VGGish width (128).
        num_crops: crops per video (5).
        max_seqlen: training length cap (200, the official ``max_seqlen``).
        synthetic: when ``root`` does not exist, write the synthetic sample dataset there
            (``vidlit data synth xd_violence``) and say so; local folders only (a URL root must
            hold the data already). Leave False for real data.
        strict: a listed feature file that does not exist raises :class:`FileNotFoundError`;
            False drops the videos that miss a file, with a warning naming the first one. Test
            videos scored with an official ``gt.npy`` (one array for all of them, cut by the
            videos' lengths) are always checked strictly.
        batch_size: training crops per batch (official: 128).
        eval_batch_size: videos (with all their crops) per evaluation batch.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        root: str = "data/xd_violence",
        rgb_list: str = "list/rgb.list",
        audio_list: str = "list/audio.list",
        test_rgb_list: str = "list/rgb_test.list",
        test_audio_list: str = "list/audio_test.list",
        ground_truth: str = "annotations.txt",
        feature_dir: str | None = None,
        feature_dim: int = 1024,
        audio_dim: int = 128,
        num_crops: int = 5,
        max_seqlen: int | None = 200,
        synthetic: bool = False,
        strict: bool = True,
        batch_size: int = 128,
        eval_batch_size: int = 4,
        num_workers: int = 0,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.root: Path | str = as_folder(root)
        if synthetic:
            from vidlit.data.synth import write_sample_if_missing
            from vidlit.data.synth.xd_violence import write_xd_violence

            sample = functools.partial(
                write_xd_violence, feature_dim=feature_dim, audio_dim=audio_dim, num_crops=num_crops
            )
            write_sample_if_missing(
                self.root, sample, "XD-Violence sample dataset", marker=rgb_list, task="xd_violence", log=log
            )
        self.lists = {
            "train": (join_path(self.root, rgb_list), join_path(self.root, audio_list)),
            "test": (join_path(self.root, test_rgb_list), join_path(self.root, test_audio_list)),
        }
        self.ground_truth = join_path(self.root, ground_truth)
        self.feature_dir = join_path(self.root, feature_dir) if feature_dir is not None else None
        self.feature_dim = feature_dim
        self.audio_dim = audio_dim
        self.num_crops = num_crops
        self.max_seqlen = max_seqlen
        self.eval_batch_size = eval_batch_size
        self.strict = strict
        self._videos: dict[str, list[XDVideo]] = {}
        self._files = ListedFiles()  # each URL feature folder listed once
        self.datasets: dict[str, XDViolenceDataset] = {}

    @property
    def num_classes(self) -> int:
        """1: violence vs normal (linked into the head's ``num_classes``)."""
        return 1

    def videos(self, split: str) -> list[XDVideo]:
        """Videos of ``"train"`` or ``"test"``, every listed file checked to exist (see ``strict``)."""
        if split not in self._videos:
            rgb, audio = self.lists[split]
            videos = read_feature_lists(rgb, audio, self.root, self.feature_dir, self.num_crops)
            # one is_file per listed file: a big list on network storage makes each one count
            # (a URL folder is listed once instead)
            absent = [[p for p in (*v.rgb, v.audio) if not self._files.exists(p)] for v in videos]
            incomplete = [v for v, paths in zip(videos, absent) if paths]
            if incomplete:
                missing = [p for paths in absent for p in paths]
                cut_gt = split == "test" and path_suffix(self.ground_truth) == ".npy"
                needs_all = f"; {path_name(self.ground_truth)} needs every test video" if cut_gt else ""
                missing_files(
                    f"{rgb} / {audio}: {len(missing)} listed feature files do not exist ({len(incomplete)} "
                    f"videos), e.g. {missing[0]} (set feature_dir when the lists hold another machine's "
                    f"paths{needs_all})",
                    strict=self.strict or cut_gt,
                    skipping="skipping those videos",
                )
                dropped = {v.name for v in incomplete}
                videos = [v for v in videos if v.name not in dropped]
                if not videos:
                    raise FileNotFoundError(f"{rgb} / {audio}: no video has all its feature files")
            self._videos[split] = videos
        return self._videos[split]

    def _eval_dataset(self) -> XDViolenceDataset:
        videos = self.videos("test")
        dataset = XDViolenceDataset(videos, self.feature_dim, self.audio_dim, train=False)
        if path_suffix(self.ground_truth) == ".npy":
            if not file_exists(self.ground_truth):
                raise FileNotFoundError(f"{self.ground_truth}: ground-truth file not found")
            # gt.npy follows the RGB features: 16 frames for each of their T snippets
            lengths = [feature_steps(v.rgb[0], v.name) for v in videos]
            gt = self.ground_truth
            source = io.BytesIO(read_bytes(gt, "ground-truth file")) if is_url(gt) else gt
            dataset.gt = split_official_gt(np.load(source, allow_pickle=False), videos, lengths, gt)
        else:
            ranges = read_annotations(self.ground_truth)
            unannotated = [v.name for v in videos if v.violent and v.name not in ranges]
            if unannotated:
                raise AnnotationError(
                    f"{self.ground_truth}: no line for violent test video {unannotated[0]!r} "
                    f"({len(unannotated)} of {sum(v.violent for v in videos)} violent test videos): its "
                    "frames would all count as normal"
                )
            dataset.ranges = ranges
        return dataset

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.datasets["train"] = XDViolenceDataset(
                self.videos("train"), self.feature_dim, self.audio_dim, train=True, max_seqlen=self.max_seqlen
            )
        if "test" not in self.datasets:
            self.datasets["test"] = self._eval_dataset()

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["train"], collate_xd_violence, train=True)

    def _eval_loader(self) -> DataLoader:
        return DataLoader(
            self.datasets["test"],
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_xd_violence,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def inference_inputs(self, path: Path, video_id: str, audio: Path | None = None) -> InferenceInput:
        """``vidlit infer``: ``path`` is one crop ``<video>__<k>.npy`` of a video's I3D features.

        As in the official lists, the video's other crops ``<video>__0 .. <video>__{num_crops - 1}``
        lie next to it; its VGGish file is ``audio`` (``--audio``), else ``<video>__vggish`` next to
        it, else the one this data module's lists name for the video. Evaluation reads all of them,
        and so does this. The submission gives a violence probability per 16-frame snippet and the
        frame-level scores the official evaluation scores (each snippet's repeated over its frames).
        """
        name, sep, crop = path.stem.rpartition("__")
        if not sep or not name or not (crop.isdigit() or sep + crop == AUDIO_SUFFIX):
            raise ValueError(
                f"{video_id}: an XD-Violence input is one of a video's feature files, named <video>__<crop>"
                f"{path.suffix} (its other crops and <video>{AUDIO_SUFFIX}{path.suffix} next to it)"
            )
        rgb = [path.with_name(f"{name}__{k}{path.suffix}") for k in range(self.num_crops)]
        given = Path(audio) if audio is not None else None
        audio = given or path.with_name(f"{name}{AUDIO_SUFFIX}{path.suffix}")
        if given is None and not file_exists(audio):
            # the official layout keeps VGGish files in another folder: the dataset's lists know it
            for split in ("test", "train"):
                try:
                    listed = {v.name: v.audio for v in self.videos(split)}
                except (FileNotFoundError, ValueError, KeyError):
                    continue
                if name in listed:
                    audio = listed[name]
                    break
        missing = [str(f) for f in (*rgb, audio) if not file_exists(f)]
        if missing:
            raise FileNotFoundError(
                f"{video_id}: XD-Violence reads all {self.num_crops} crops and the VGGish file of a video "
                f"(--audio); missing {', '.join(missing)}"
            )
        dataset = XDViolenceDataset(
            [XDVideo(name, is_violent(name), rgb, audio)], self.feature_dim, self.audio_dim, train=False
        )
        return InferenceInput(collate_xd_violence([dataset[0]]), name)

    def write_submission(self, predictions: list[dict[str, Any]], path: str | Path) -> Path:
        """Write ``vidlit predict`` output: per-video violence scores, atomically.

        XD-Violence has no submission server; the layout is the one the official evaluation
        scores: ``{"clip_len": 16, "results": {video: {"snippet_scores": [...],
        "frame_scores": [...]}}}``, each frame score its 16-frame snippet's (the frame-level AP
        repeats snippet scores the same way).
        """
        results = {}
        for pred in predictions:
            scores = torch.as_tensor(pred["scores"]).float().cpu()
            results[pred["video_id"]] = {
                "snippet_scores": scores.tolist(),
                "frame_scores": scores.repeat_interleave(CLIP_LEN).tolist(),
            }
        return write_json_atomic({"clip_len": CLIP_LEN, "results": results}, path)
