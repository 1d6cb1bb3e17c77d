"""Run a trained vidlit checkpoint on one video: ``vidlit.inference`` and ``vidlit infer``.

A checkpoint written by ``vidlit fit`` holds weights; the run's ``config.yaml`` (written by the CLI
next to the ``checkpoints/`` folder) holds everything else. :func:`load` rebuilds model and data
module from that config through the same CLI machinery ``vidlit predict`` uses (head sizes linked
from the data, class lists read from the dataset), loads the weights, and then prepares one
input exactly as the recipe's validation pipeline does: the data module's own dataset class
decodes and samples frames (evaluation sampling), its collate function batches them and its
``eval_transform`` crops and normalizes. Nothing about preprocessing is typed again by the user.

>>> predictor = load("runs/video_cls/version_0/checkpoints/last.ckpt")
>>> predictor.predict("clip.mp4").submission          # the recipe's submission entry for the video
>>> text = load("runs/pretrain_viclip/version_0/checkpoints/last.ckpt")
>>> text.predict("clip.mp4", texts=["a red square", "a blue circle"]).ranking

Supported models: :class:`~vidlit.tasks.TaskModule` (any head; on raw video or on stored
features), :class:`~vidlit.tasks.video_text.VideoTextPretrain` (similarities to texts) and
:class:`~vidlit.tasks.MVMPretrain` (backbone embeddings). Supported data modules: those that
decode raw videos with a list (:class:`~vidlit.data.VideoListDataModule`), InternVid-style clips
(:class:`~vidlit.data.internvid.InternVidDataModule`), and for heads on stored features one input
builder per data module (``_FEATURE_INPUTS``): Ego4D Moment Queries (a clip's features), Ego4D
Natural Language Queries (a video's features, a clip window and the queries as ``texts``) and
XD-Violence (a video's I3D crops and its VGGish file); another data module is a clear error.

>>> nlq = load("runs/ego4d_nlq/version_0/checkpoints/last.ckpt")
>>> nlq.predict("features/<video_uid>.pt", texts=["where is the cup?"], window=(120.0, 600.0)).submission
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

__all__ = ["Clip", "InferenceResult", "Predictor", "find_config", "infer_main", "load"]

# keys of a saved run config that belong to a subcommand, not to the model / data
_RUN_KEYS = ("ckpt_path", "weights_only", "trainer", "submission")


def find_config(ckpt_path: str | Path) -> Path:
    """The ``config.yaml`` of the run that wrote ``ckpt_path``.

    ``vidlit fit`` writes it to the run folder (``version_N/config.yaml``); the checkpoint lies in
    ``version_N/checkpoints/`` (or the run folder itself).

    Raises:
        FileNotFoundError: neither place has one; pass ``config=`` (``--config``) then.
    """
    ckpt_path = Path(ckpt_path)
    for folder in (ckpt_path.parent, ckpt_path.parent.parent):
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    raise FileNotFoundError(
        f"{ckpt_path}: no config.yaml next to the checkpoint or in its run folder "
        "(pass the run's config with --config)"
    )


def _build(config_path: Path) -> tuple[L.LightningModule, L.LightningDataModule]:
    """Model and data module from a run config, instantiated by the CLI's own parser and links."""
    from vidlit.config import VidlitCLI

    class _Rebuild(VidlitCLI):
        # only the model and data are wanted: no trainer, no seeding of the caller's process
        def instantiate_trainer(self, **kwargs: Any) -> None:  # type: ignore[override]
            return None

    config = yaml.safe_load(config_path.read_text())
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(f"{config_path}: not a vidlit run config (no 'model' section)")
    config = {k: v for k, v in config.items() if k not in _RUN_KEYS}
    config["seed_everything"] = False
    with warnings.catch_warnings():
        # LightningCLI warns when args are given while sys.argv has others (`vidlit infer ...`)
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = _Rebuild(args=config, run=False)
    return cli.model, cli.datamodule


@dataclass
class Clip:
    """One input, prepared as the recipe's validation pipeline prepares it.

    Attributes:
        batch: the batch the model takes (after the data module's eval transform).
        video_id: the name predictions are keyed by.
        frame_indices: ``[v, t]`` source frames of each view (raw video only).
        num_frames: frames in the source video (raw video only).
        fps: its frame rate (raw video only).
        frame_size: ``(h, w)`` of the decoded frames (raw video only).
        crop: ``(y0, x0, h, w)`` of the model's centre crop as fractions of the frame (raw video only).
        normalization: ``(mean, std)`` per channel the eval transform applied to ``x / 255``.
        submit: writes this input's submission document from the head's predictions (a path in,
            the path out); None: the data module's ``write_submission``.
    """

    batch: dict[str, Any]
    video_id: str
    frame_indices: np.ndarray | None = None
    num_frames: int = 0
    fps: float = 0.0
    frame_size: tuple[int, int] = (0, 0)
    crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    normalization: tuple[tuple[float, ...], tuple[float, ...]] = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    submit: Callable[[list[dict[str, Any]], Path], Path] | None = None


@dataclass
class InferenceResult:
    """What :meth:`Predictor.predict` returns.

    Attributes:
        predictions: the head's ``predict`` output (one dict per view), or for a video-text model
            ``[{"video_id", "texts", "scores"}]``, for an MVM backbone ``[{"video_id", "embedding"}]``.
        submission: the data module's submission document for this one video (what
            ``vidlit predict`` writes for it), None where the data module writes none.
        ranking: video-text models: ``[(text, probability)]``, best first.
    """

    predictions: list[dict[str, Any]]
    submission: dict[str, Any] | None = None
    ranking: list[tuple[str, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (tensors become lists)."""
        return {
            "predictions": [_plain(p) for p in self.predictions],
            "submission": self.submission,
            "ranking": [{"text": t, "score": s} for t, s in self.ranking],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class Predictor:
    """A loaded checkpoint with its data module's validation preprocessing.

    Args:
        module: the LightningModule (weights loaded, eval mode).
        datamodule: the data module of the run's config.
        device: where the model runs.

    Attributes:
        kind: ``"task"``, ``"video_text"`` or ``"mvm"``.
        backbone: the video backbone (None for a head on stored features).
    """

    def __init__(self, module: L.LightningModule, datamodule: L.LightningDataModule, device: str = "cpu"):
        from vidlit.tasks import MVMPretrain, TaskModule
        from vidlit.tasks.video_text import VideoTextPretrain

        self.module = module.eval().to(device)
        self.datamodule = datamodule
        self.device = torch.device(device)
        self._text_cache: dict[tuple[str, ...], Tensor] = {}
        if isinstance(module, VideoTextPretrain):
            self.kind, self.backbone = "video_text", module.model.video
        elif isinstance(module, MVMPretrain):
            self.kind, self.backbone = "mvm", module.backbone
        elif isinstance(module, TaskModule):
            self.kind, self.backbone = "task", module.backbone
        else:
            raise ValueError(
                f"{type(module).__name__}: vidlit.inference runs TaskModule, VideoTextPretrain or MVMPretrain"
            )

    # -- input ----------------------------------------------------------------------------------

    @property
    def takes_video(self) -> bool:
        """Whether inputs are raw videos (else stored feature sequences)."""
        return self.backbone is not None

    def prepare(
        self,
        source: str | Path | Tensor,
        video_id: str | None = None,
        texts: list[str] | None = None,
        window: tuple[float, float] | None = None,
        audio: str | Path | None = None,
    ) -> Clip:
        """Decode, sample, batch and transform one input as the recipe's validation pipeline does.

        Args:
            source: a video file, a uint8 ``[t, h, w, 3]`` frame tensor, or for a head on stored
                features a ``.pt`` / ``.npy`` feature file or a float ``[T, C]`` tensor.
            video_id: name of the input in predictions; defaults to the path (or ``"tensor"``).
            texts: an NLQ head's queries, one batch row each (video-text models take their texts
                in :meth:`predict`).
            window: an NLQ head: the clip as ``(start, end)`` seconds on the feature file's clock
                (an annotation's ``video_start_sec`` / ``video_end_sec``); default the whole file.
            audio: an XD-Violence head: the video's VGGish feature file (default: found next to
                the RGB crop, or in the data module's lists).

        Raises:
            FileNotFoundError: no such file.
            ValueError: an input of the wrong kind, or one that cannot be decoded (the message
                names it and says why).
        """
        if isinstance(source, (str, Path)) and not Path(source).is_file():
            raise FileNotFoundError(f"{source}: no such file")
        video_id = video_id or (str(source) if not isinstance(source, Tensor) else "tensor")
        if self.takes_video:
            if window is not None or audio is not None:
                raise ValueError(
                    "--start / --end / --audio apply to heads on stored features, not video models"
                )
            return self._prepare_video(source, video_id)
        return self._prepare_features(source, video_id, _Given(texts, window, Path(audio) if audio else None))

    def _eval_settings(self) -> Any:
        dm = self.datamodule
        for attr in ("eval_transform", "num_frames", "short_side"):
            if not hasattr(dm, attr):
                raise ValueError(
                    f"{type(dm).__name__}: vidlit.inference needs a raw-video data module with an "
                    f"eval_transform (VideoListDataModule, InternVidDataModule); it has no {attr!r}"
                )
        return dm

    def _one_video_dataset(self, path: Path, video_id: str) -> Any:
        """The data module's own dataset class, holding just ``path``, in evaluation mode."""
        from vidlit.data.internvid import InternVidClip, InternVidDataModule, InternVidDataset
        from vidlit.data.video_list import VideoEntry, VideoListDataModule, VideoListDataset

        dm = self._eval_settings()
        if isinstance(dm, VideoListDataModule):
            entry = VideoEntry(path, video_id, None, None, None, None, 1)
            # the arguments VideoListDataModule.dataset passes, for a one-row list in eval mode
            return VideoListDataset(
                [entry],
                num_frames=dm.num_frames,
                frame_stride=dm.frame_stride,
                sampling=dm.sampling,
                num_clips=dm.num_clips,
                train=False,
                short_side=dm.short_side,
                backend=dm.backend,
                strict=True,
            )
        if isinstance(dm, InternVidDataModule):
            from vidlit.data.video import open_video

            with open_video(path, dm.backend) as reader:
                duration = reader.duration
            clip = InternVidClip(video_id, 0.0, duration, "", None, None, video_id, 1)
            dataset = InternVidDataset(
                [clip],
                path.parent,
                num_frames=dm.num_frames,
                train=False,
                short_side=dm.short_side,
                backend=dm.backend,
                strict=True,
            )
            dataset._paths[video_id] = path  # the file given, whatever its name
            return dataset
        raise ValueError(
            f"{type(dm).__name__}: vidlit.inference reads raw video through VideoListDataModule or "
            "InternVidDataModule settings"
        )

    def _prepare_video(self, source: str | Path | Tensor, video_id: str) -> Clip:
        from vidlit.data.transforms import center_boxes, three_crop_boxes
        from vidlit.data.video import VideoDecodeError, open_video

        dm = self._eval_settings()
        if isinstance(source, Tensor):
            if source.dtype != torch.uint8 or source.ndim != 4 or source.shape[-1] != 3:
                raise ValueError(
                    f"video tensor must be uint8 [t, h, w, 3], got {source.dtype} {tuple(source.shape)}"
                )
            with tempfile.TemporaryDirectory(prefix="vidlit-infer-") as tmp:
                from vidlit.data.synth.videos import write_video

                path = Path(tmp) / "input.mkv"
                write_video(path, source.numpy(), fps=30, codec="ffv1")  # lossless
                return self._prepare_video(path, video_id)
        path = Path(source)
        try:
            dataset = self._one_video_dataset(path, video_id)
            item = dataset[0]
            with open_video(path, dm.backend, resize=dm.short_side) as reader:
                num_frames, fps = len(reader), reader.fps
                row = dataset.entries[0] if hasattr(dataset, "entries") else dataset.clips[0]
                indices = dataset.frame_indices(row, num_frames, fps, 0)
        except VideoDecodeError as e:
            raise ValueError(f"{path}: cannot decode the video ({e.reason})") from e
        indices = np.asarray(indices).reshape(-1, item["video"].shape[-4])
        batch = dm._collate()([item])
        frame_size = tuple(int(s) for s in batch["frame_size"][0])
        transform = dm.eval_transform
        # the first view (the one the pointing page shows) is the first of the spatial crops
        args = (batch["frame_size"][:1], transform.size, transform.eval_short_side)
        crops = getattr(transform, "num_crops", 1)
        box = center_boxes(*args) if crops == 1 else three_crop_boxes(*args)[:, 0]
        y0, x0, h, w = box[0].tolist()
        batch = _to(batch, self.device)
        batch = dm.on_after_batch_transfer(batch, 0)
        return Clip(
            batch=batch,
            video_id=video_id,
            frame_indices=indices,
            num_frames=num_frames,
            fps=fps,
            frame_size=frame_size,
            crop=(y0 / frame_size[0], x0 / frame_size[1], h / frame_size[0], w / frame_size[1]),
            normalization=(transform.mean, transform.std),
        )

    def _prepare_features(
        self,
        source: str | Path | Tensor,
        video_id: str,
        given: _Given,
    ) -> Clip:
        dm = self.datamodule
        prepare = _feature_input(dm)
        if prepare is None:
            supported = ", ".join(sorted(_FEATURE_INPUTS))
            raise ValueError(
                f"{type(dm).__name__}: vidlit.inference runs heads on stored features of {supported}; "
                "this data module is not supported yet"
            )
        with tempfile.TemporaryDirectory(prefix="vidlit-infer-") as tmp:
            if isinstance(source, Tensor):
                path = Path(tmp) / "features.pt"
                torch.save(source.float(), path)
                uid = video_id
            else:
                path, uid = Path(source), Path(source).stem
            what = uid if isinstance(source, Tensor) else str(source)
            # the items are read inside the block: a tensor input lives in the temporary folder
            batch, submit = prepare(dm, path, uid, what, given)
        batch = _to(dict(batch), self.device)
        return Clip(batch=batch, video_id=uid, submit=submit)

    # -- running --------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(
        self,
        source: str | Path | Tensor | Clip,
        texts: list[str] | None = None,
        video_id: str | None = None,
        window: tuple[float, float] | None = None,
        audio: str | Path | None = None,
    ) -> InferenceResult:
        """Run the model on one input.

        Args:
            source: what :meth:`prepare` takes, or a prepared :class:`Clip`.
            texts: video-text models: the texts to rank (required there); NLQ heads: the queries
                (required there; each gets its top windows).
            video_id: see :meth:`prepare`.
            window: see :meth:`prepare`.
            audio: see :meth:`prepare`.
        """
        if isinstance(source, Clip):
            clip = source
        else:
            # heads on stored features may take texts (NLQ queries) as part of their input
            clip = self.prepare(source, video_id, texts if not self.takes_video else None, window, audio)
        batch = clip.batch
        if self.kind == "task":
            preds = self.module.head.predict(self.module(batch), batch)
            return InferenceResult(preds, self._submission(preds, clip.submit))
        features = self.backbone(batch["video"], output="pooled")
        if self.kind == "mvm":
            return InferenceResult([{"video_id": clip.video_id, "embedding": features.mean(0)}])
        return self._rank(features, texts, clip.video_id)

    def _rank(self, features: Tensor, texts: list[str] | None, video_id: str) -> InferenceResult:
        """Softmax over the texts of the scaled cosine similarity to the mean of the views."""
        if not texts:
            raise ValueError("a video-text model needs texts to compare the video with (--texts)")
        model = self.module.model
        video = F.normalize(model.video_proj(features).mean(0, keepdim=True), dim=-1)
        key = tuple(texts)
        text = self._text_cache.get(key)
        if text is None:
            # a page asks about the same prompts again and again: encode them once
            text = self._text_cache[key] = model.encode_text(list(texts))
            while len(self._text_cache) > 256:
                self._text_cache.pop(next(iter(self._text_cache)))
        similarity = (video @ text.T)[0]
        probs = (model.logit_scale.exp().clamp(max=model.max_logit_scale) * similarity).softmax(-1)
        order = probs.argsort(descending=True).tolist()
        pred = {"video_id": video_id, "texts": list(texts), "similarity": similarity, "scores": probs}
        return InferenceResult([pred], ranking=[(texts[i], float(probs[i])) for i in order])

    def _submission(
        self, preds: list[dict[str, Any]], write: Callable[[list[dict[str, Any]], Path], Path] | None = None
    ) -> dict[str, Any] | None:
        write = write or getattr(self.datamodule, "write_submission", None)
        if write is None:
            return None
        with tempfile.TemporaryDirectory(prefix="vidlit-infer-") as tmp:
            path = write(preds, Path(tmp) / "submission.json")
            return json.loads(Path(path).read_text())

    # -- tokens and regions (the pointing page) -------------------------------------------------

    @torch.no_grad()
    def tokens(self, clip: Clip) -> tuple[Tensor, tuple[int, int, int]]:
        """The backbone's final tokens of the first view as ``[t', h', w', d]`` and the grid."""
        if self.backbone is None:
            raise ValueError("this model has no video backbone (a head on stored features): no tokens")
        video = clip.batch["video"][:1]
        grid = tuple(self.backbone.patch_embed.grid_size(*video.shape[2:]))
        tokens = self.backbone(video, output="tokens")[0]
        # (t h w) token order, as VideoViT's patch embedding flattens its Conv3d output
        return tokens.reshape(*grid, -1), grid

    @torch.no_grad()
    def predict_region(self, clip: Clip, region: Tensor, texts: list[str] | None = None) -> InferenceResult:
        """Run the model on the tokens of a region only.

        The region's tokens are re-encoded alone: the backbone sees just them (``visible_idx``,
        the token-dropping path ViCLIP trains with), and their pooled feature feeds the text
        projection or a pooled-feature head. Masking at token level needs no fill colour for the
        rest of the frame and costs less than a full pass.

        Args:
            clip: the prepared video.
            region: bool ``[t', h', w']`` token mask (see :mod:`vidlit.serve.regions`).
            texts: video-text models: the texts to rank.
        """
        if self.backbone is None:
            raise ValueError("this model has no video backbone: region queries need one")
        keep = region.flatten().nonzero().flatten()
        if keep.numel() == 0:
            raise ValueError("the region is empty")
        video = clip.batch["video"][:1]
        visible = keep[None].to(video.device)
        if self.kind == "task":
            head = self.module.head
            if head.feature_layout != "pooled":
                raise ValueError(
                    f"{type(head).__name__} takes {head.feature_layout} features of the whole video; "
                    "region queries need a head on pooled features (e.g. LinearProbeHead)"
                )
            features = self.backbone(video, output="pooled", visible_idx=visible)
            batch = {**clip.batch, "video": video, "video_ids": [clip.video_id]}
            batch["targets"] = batch.get("targets", [])[:1]
            preds = head.predict(head(features, batch), batch)
            return InferenceResult(preds, self._submission(preds))
        features = self.backbone(video, output="pooled", visible_idx=visible)
        if self.kind == "mvm":
            return InferenceResult([{"video_id": clip.video_id, "embedding": features[0]}])
        return self._rank(features, texts, clip.video_id)


def _clips_or_none(dm: Any, split: str) -> list:
    try:
        return dm.clips(split)
    except (FileNotFoundError, ValueError, KeyError):
        return []


# -- heads on stored features: one input builder per data module ---------------------------------
#
# A builder gets the data module, the feature file (``path``, named ``uid`` by its stem), the name
# of the input for messages and what else the user gave (:class:`_Given`), and returns the batch
# of this input (items of the data module's own dataset class, batched by its own collate) and the
# writer of its submission document (None: the data module's ``write_submission``).


@dataclass
class _Given:
    """Inputs besides the feature file: NLQ ``texts`` and clip ``window``, XD-Violence ``audio``."""

    texts: list[str] | None = None
    window: tuple[float, float] | None = None
    audio: Path | None = None

    def only(self, dm: Any, *allowed: str) -> None:
        """Reject what this data module's input does not take (a flag the user gave in vain)."""
        flags = {"texts": "--texts", "window": "--start / --end", "audio": "--audio"}
        for name, flag in flags.items():
            if name not in allowed and getattr(self, name):
                raise ValueError(f"{type(dm).__name__}: {flag} does not apply to this model's input")


FeatureInput = Callable[
    [Any, Path, str, str, _Given],
    "tuple[dict[str, Any], Callable[[list[dict[str, Any]], Path], Path] | None]",
]


def _mq_input(dm: Any, path: Path, uid: str, what: str, given: _Given) -> tuple:
    """Ego4D MQ: the file is one clip's ``[T, C]`` features, named ``<clip_uid>``."""
    from vidlit.data.ego4d_mq import MomentClip, MomentQueriesDataset
    from vidlit.data.features import load_feature_file

    given.only(dm)
    steps = load_feature_file(path, dm.feature_dim, what=what).shape[0]
    # the annotated duration where the dataset knows the clip (as `vidlit predict`), else the span
    # the features cover
    known = {c.clip_uid: c.duration for split in ("predict", "val") for c in _clips_or_none(dm, split)}
    duration = known.get(uid, steps * dm.step_sec)
    dataset = MomentQueriesDataset(
        [MomentClip(uid, uid, duration, [])],
        path.parent,
        dm.class_names,
        dm.feature_dim,
        dm.step_sec,
        dm.offset_sec,
        max_steps=dm.max_steps,
        train=False,
    )
    dataset.paths = [path]
    item = dataset[0]
    item["video_id"] = uid
    return dm._collate()([item]), None


def _nlq_input(dm: Any, path: Path, uid: str, what: str, given: _Given) -> tuple:
    """Ego4D NLQ: the file is one video's ``[T, C]`` features; each text is a query on its clip.

    The clip is ``window`` (seconds on the file's clock, as an annotation's ``video_start_sec`` /
    ``video_end_sec``), by default all the file covers. Queries are answered as ``vidlit predict``
    answers an annotation's: clip ``uid``, annotation ``"texts"``, ``query_idx`` the text's index.
    """
    from vidlit.data.ego4d_nlq import NLQDataset, NLQQuery, write_nlq_submission
    from vidlit.data.features import load_feature_file

    given.only(dm, "texts", "window")
    texts, window = given.texts, given.window
    if not texts or any(not t.strip() for t in texts):
        raise ValueError(f"{type(dm).__name__}: an NLQ model needs non-empty queries (--texts)")
    if window is None:
        steps = load_feature_file(path, dm.feature_dim, what=what).shape[0]
        window = (0.0, steps * dm.step_sec)
    start, end = window
    if not 0 <= start < end:
        raise ValueError(f"{what}: the clip window needs 0 <= start < end, got [{start}, {end}] s")
    queries = [
        NLQQuery(uid, uid, "texts", i, text.strip(), float(start), float(end), where=what)
        for i, text in enumerate(texts)
    ]
    dataset = NLQDataset(queries, path.parent, dm.feature_dim, dm.step_sec, dm.max_len)
    dataset.paths = {uid: path}  # the file given, whatever folder it lies in
    by_key = {q.key: q for q in queries}
    return dm._collate()([dataset[i] for i in range(len(queries))]), lambda preds, out: write_nlq_submission(
        preds, by_key, out
    )


def _xd_violence_input(dm: Any, path: Path, uid: str, what: str, given: _Given) -> tuple:
    """XD-Violence: the file is one crop ``<video>__<k>.npy`` of a video's I3D features.

    As in the official lists, the video's other crops ``<video>__0 .. <video>__{num_crops - 1}`` lie
    next to it; its VGGish file is ``given.audio`` (``--audio``), else ``<video>__vggish`` next to
    it, else the one the data module's lists name for the video. Evaluation reads all of them, and
    so does this. The head's prediction gives a violence probability per 16-frame snippet; the printed
    document adds the frame-level scores the official evaluation scores (each snippet's score
    repeated over its frames).
    """
    from vidlit.data.xd_violence import (
        AUDIO_SUFFIX,
        XDVideo,
        XDViolenceDataset,
        collate_xd_violence,
        is_violent,
    )

    given.only(dm, "audio")
    name, sep, crop = path.stem.rpartition("__")
    if not sep or not name or not (crop.isdigit() or sep + crop == AUDIO_SUFFIX):
        raise ValueError(
            f"{what}: an XD-Violence input is one of a video's feature files, named <video>__<crop>"
            f"{path.suffix} (its other crops and <video>{AUDIO_SUFFIX}{path.suffix} next to it)"
        )
    rgb = [path.with_name(f"{name}__{k}{path.suffix}") for k in range(dm.num_crops)]
    audio = given.audio or path.with_name(f"{name}{AUDIO_SUFFIX}{path.suffix}")
    if given.audio is None and not audio.is_file():
        # the official layout keeps VGGish files in another folder: the dataset's lists know it
        listed = {v.name: v.audio for split in ("test", "train") for v in _videos_or_none(dm, split)}
        audio = listed.get(name, audio)
    missing = [str(f) for f in (*rgb, audio) if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{what}: XD-Violence reads all {dm.num_crops} crops and the VGGish file of a video "
            f"(--audio); missing {', '.join(missing)}"
        )
    dataset = XDViolenceDataset(
        [XDVideo(name, is_violent(name), rgb, audio)], dm.feature_dim, dm.audio_dim, train=False
    )

    return collate_xd_violence([dataset[0]]), dm.write_submission


_FEATURE_INPUTS: dict[str, FeatureInput] = {
    "vidlit.data.ego4d_mq.Ego4DMQ": _mq_input,
    "vidlit.data.ego4d_nlq.Ego4DNLQ": _nlq_input,
    "vidlit.data.xd_violence.XDViolence": _xd_violence_input,
}


def _feature_input(dm: Any) -> FeatureInput | None:
    """The builder of ``dm``'s class or its nearest registered base class (subclasses inherit it)."""
    for cls in type(dm).__mro__:
        builder = _FEATURE_INPUTS.get(f"{cls.__module__}.{cls.__qualname__}")
        if builder is not None:
            return builder
    return None


def _videos_or_none(dm: Any, split: str) -> list:
    try:
        return dm.videos(split)
    except (FileNotFoundError, ValueError, KeyError):
        return []


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


def load(ckpt_path: str | Path, config: str | Path | None = None, device: str = "cpu") -> Predictor:
    """Load a vidlit checkpoint for inference.

    Args:
        ckpt_path: a Lightning checkpoint written by ``vidlit fit``.
        config: the run's ``config.yaml``; by default the one next to the checkpoint
            (:func:`find_config`).
        device: where to run (``"cpu"``, ``"cuda"``).

    Raises:
        FileNotFoundError: no checkpoint or no config.
        ValueError: a checkpoint whose weights do not fit the config's model.
    """
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: checkpoint not found")
    config_path = Path(config) if config is not None else find_config(ckpt_path)
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: config not found")
    module, datamodule = _build(config_path)
    from vidlit.checkpoint_io import AtomicCheckpointIO

    state = AtomicCheckpointIO().load_checkpoint(ckpt_path)  # weights_only, on the CPU
    if "state_dict" not in state:
        raise ValueError(f"{ckpt_path}: not a Lightning checkpoint (no 'state_dict')")
    try:
        module.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ValueError(f"{ckpt_path}: weights do not fit the model of {config_path}: {first}") from e
    return Predictor(module, datamodule, device)


def infer_main(args: list[str]) -> None:
    """``vidlit infer --ckpt_path X video.mp4 [--texts ...]``: print one video's predictions as JSON."""
    parser = argparse.ArgumentParser(
        prog="vidlit infer",
        description="Run a checkpoint on one video (or one stored feature file) with the recipe's "
        "validation preprocessing and print the predictions as JSON.",
    )
    parser.add_argument("video", type=Path, help="video file (or .pt / .npy features for a head on features)")
    parser.add_argument("--ckpt_path", required=True, type=Path, help="checkpoint written by `vidlit fit`")
    parser.add_argument(
        "--config", type=Path, help="the run's config.yaml (default: found next to the checkpoint)"
    )
    parser.add_argument(
        "--texts", nargs="+", help="texts to rank (video-text models), or queries to localize (NLQ heads)"
    )
    parser.add_argument(
        "--start", type=float, help="NLQ: clip start in seconds on the feature file's clock (default 0)"
    )
    parser.add_argument("--end", type=float, help="NLQ: clip end in seconds (default: all the file covers)")
    parser.add_argument(
        "--audio", type=Path, help="XD-Violence: the video's VGGish features (default: found by name)"
    )
    parser.add_argument("--device", default="cpu")
    options = parser.parse_args(args)
    try:
        predictor = load(options.ckpt_path, options.config, options.device)
        window = None
        if options.start is not None or options.end is not None:
            if options.end is None:
                raise ValueError("--start needs --end (the clip's end in seconds)")
            window = (options.start or 0.0, options.end)
        result = predictor.predict(options.video, texts=options.texts, window=window, audio=options.audio)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    out = result.submission if result.submission is not None else result.to_json()
    if result.ranking:
        out = {"video_id": str(options.video), "ranking": result.to_json()["ranking"]}
    elif result.submission is None:
        out = result.to_json()["predictions"]
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
