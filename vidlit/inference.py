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
:class:`~vidlit.tasks.MVMPretrain` (backbone embeddings). Inputs are prepared by the data module
of the run: one that defines :meth:`~vidlit.data.base.VidlitDataModule.inference_inputs` (every
task family: Ego4D MQ / NLQ / FHP / SCOD / STA, AVE, LLP, XD-Violence, music-dance, LORIS) builds
the batch of one input with its own dataset class and collate, taking the other inputs its model
needs as keyword arguments (``texts``, ``window``, ``audio``, ``motion``, ``music``, ``pose``,
``frame``, ``detections``); the raw-video lists (:class:`~vidlit.data.VideoListDataModule`,
:class:`~vidlit.data.internvid.InternVidDataModule`) decode one video here, with the crop geometry
the pointing page draws on. Another data module is a clear error.

>>> nlq = load("runs/ego4d_nlq/version_0/checkpoints/last.ckpt")
>>> nlq.predict("features/<video_uid>.pt", texts=["where is the cup?"], window=(120.0, 600.0)).submission
>>> ave = load("runs/ave_mpn/version_0/checkpoints/last.ckpt")
>>> ave.predict("visual/<video>.npy", audio="audio/<video>.npy").predictions
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import re
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

from vidlit.core.io import read_json

__all__ = ["Clip", "InferenceResult", "Predictor", "find_config", "infer_main", "load"]


def find_config(ckpt_path: str | Path) -> Path:
    """The ``config.yaml`` of the run that wrote ``ckpt_path``.

    ``vidlit fit`` writes it to the run folder (``version_N/config.yaml``); the checkpoint lies in
    ``version_N/checkpoints/`` (or the run folder itself): the run is found as ``--ckpt_path
    last`` finds it (:func:`vidlit.checkpoint_io.run_folder`), looking no higher than that.

    Raises:
        FileNotFoundError: neither place has one; pass ``config=`` (``--config``) then.
    """
    from vidlit.checkpoint_io import run_folder

    ckpt_path = Path(ckpt_path)
    run = run_folder(ckpt_path, ckpt_path.parent.parent)
    if run is None:
        raise FileNotFoundError(
            f"{ckpt_path}: no config.yaml next to the checkpoint or in its run folder "
            "(pass the run's config with --config)"
        )
    return run / "config.yaml"


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
    # what was trained is the model and its data; every other section controls a run (trainer,
    # checkpoint, submission), which rebuilding the two must not repeat
    config = {k: config[k] for k in ("model", "data") if k in config}
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
    def input_options(self) -> tuple[str, ...]:
        """What the data module's one-input path takes besides the file (NLQ: ``texts``, AVE: ``audio``)."""
        if not _defines_inputs(self.datamodule):
            return ()
        parameters = inspect.signature(self.datamodule.inference_inputs).parameters
        return tuple(name for name in parameters if name not in ("path", "video_id"))

    @property
    def takes_video(self) -> bool:
        """Whether inputs are raw videos (else stored feature sequences)."""
        return self.backbone is not None

    def prepare(self, source: str | Path | Tensor, video_id: str | None = None, **inputs: Any) -> Clip:
        """Decode, sample, batch and transform one input as the recipe's validation pipeline does.

        Args:
            source: a video file, a uint8 ``[t, h, w, 3]`` frame tensor, or for a head on stored
                features a ``.pt`` / ``.npy`` feature file or a float tensor.
            video_id: name of the input in predictions; defaults to the path (or ``"tensor"``).
            inputs: what else the data module's input takes (None values are left out), e.g.
                ``texts`` (an NLQ head's queries, one batch row each; video-text models take their
                texts in :meth:`predict`), ``window`` (NLQ: the clip as ``(start, end)`` seconds),
                ``audio`` (AVE, LLP, XD-Violence: the audio features), ``motion`` (LLP), ``music``
                (music-dance, LORIS), ``pose`` (LORIS), ``frame`` (FHP, SCOD, STA: the key frame),
                ``detections`` (STA). See the data module's ``inference_inputs``.

        Raises:
            FileNotFoundError: no such file.
            ValueError: an input of the wrong kind, an option this model's input does not take, or
                an input that cannot be decoded (the message names it and says why).
        """
        if isinstance(source, (str, Path)) and not Path(source).is_file():
            # a folder is a common slip (`infer` takes one file): say so, not "no such file"
            what = (
                "a folder, not a file (infer takes one video or feature file)"
                if Path(source).is_dir()
                else "no such file"
            )
            raise FileNotFoundError(f"{source}: {what}")
        video_id = video_id or (str(source) if not isinstance(source, Tensor) else "tensor")
        inputs = {k: v for k, v in inputs.items() if v is not None}
        dm = self.datamodule
        if _defines_inputs(dm):
            return self._prepare_input(source, video_id, inputs)
        if self.takes_video:
            if inputs:
                raise ValueError(_not_taken(dm, inputs))
            return self._prepare_video(source, video_id)
        raise ValueError(
            f"{type(dm).__name__}: vidlit.inference prepares inputs through a data module's "
            "inference_inputs (every vidlit task family has one) or a raw-video list; this one has neither"
        )

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
                return self._prepare_video(_tensor_file(source, Path(tmp), video_id), video_id)
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

    def _prepare_input(self, source: str | Path | Tensor, video_id: str, inputs: dict[str, Any]) -> Clip:
        """The data module's own ``inference_inputs`` batch, moved to the device and transformed there."""
        dm = self.datamodule
        parameters = inspect.signature(dm.inference_inputs).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            extra = {k: v for k, v in inputs.items() if k not in parameters}
            if extra:
                raise ValueError(_not_taken(dm, extra))
        with tempfile.TemporaryDirectory(prefix="vidlit-infer-") as tmp:
            if isinstance(source, Tensor):
                path = _tensor_file(source, Path(tmp), video_id)
            else:
                path = Path(source)
            # the batch is built inside the block: a tensor input lives in the temporary folder
            prepared = dm.inference_inputs(path, video_id, **inputs)
        batch = dm.on_after_batch_transfer(_to(dict(prepared.batch), self.device), 0)
        return Clip(batch=batch, video_id=prepared.video_id, submit=prepared.submit)

    # -- running --------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(
        self,
        source: str | Path | Tensor | Clip,
        texts: list[str] | None = None,
        video_id: str | None = None,
        out: str | Path | None = None,
        **inputs: Any,
    ) -> InferenceResult:
        """Run the model on one input.

        Args:
            source: what :meth:`prepare` takes, or a prepared :class:`Clip`.
            texts: video-text models: the texts to rank (required there); a task head: part of
                its input (an NLQ head's queries, each gets its top windows).
            video_id: see :meth:`prepare`.
            out: also write the submission document there (what ``vidlit predict
                --submission.path`` writes for this input, with any files it names beside it, e.g.
                LORIS's generated ``.wav``); None keeps it in memory only.
            inputs: see :meth:`prepare`.
        """
        if isinstance(source, Clip):
            clip = source
        else:
            # a task head may take texts (NLQ queries) as part of its input; video-text models rank them
            given = {**inputs, "texts": texts} if self.kind == "task" else inputs
            clip = self.prepare(source, video_id, **given)
        batch = clip.batch
        if self.kind == "task":
            preds = self.module.head.predict(self.module(batch), batch)
            return InferenceResult(preds, self._submission(preds, clip.submit, out))
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
        self,
        preds: list[dict[str, Any]],
        write: Callable[[list[dict[str, Any]], Path], Path] | None = None,
        out: str | Path | None = None,
    ) -> dict[str, Any] | None:
        write = write or getattr(self.datamodule, "write_submission", None)
        if write is None:
            if out is not None:
                raise ValueError(f"{type(self.datamodule).__name__} writes no submission document (--out)")
            return None
        if out is not None:
            return read_json(write(preds, Path(out)))
        with tempfile.TemporaryDirectory(prefix="vidlit-infer-") as tmp:
            return read_json(write(preds, Path(tmp) / "submission.json"))

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


def _defines_inputs(dm: Any) -> bool:
    """Whether ``dm``'s class defines its own one-input path (``inference_inputs``)."""
    from vidlit.data.base import VidlitDataModule

    method = getattr(type(dm), "inference_inputs", None)
    return method is not None and method is not VidlitDataModule.inference_inputs


# the `vidlit infer` option of each input, where its name is not the input's
_FLAGS = {"window": "--start / --end"}


def _not_taken(dm: Any, inputs: dict[str, Any]) -> str:
    """The message for options that ``dm``'s input does not take."""
    flags = ", ".join(_FLAGS.get(name, f"--{name}") for name in inputs)
    return (
        f"{type(dm).__name__}: {flags} {'does' if len(inputs) == 1 else 'do'} not apply to this model's input"
    )


def _tensor_file(source: Tensor, folder: Path, video_id: str) -> Path:
    """A tensor input as the file a data module reads: uint8 ``[t, h, w, 3]`` frames a lossless video,
    anything else a ``.pt`` feature file named by ``video_id`` (its predictions' key)."""
    name = re.sub(r"[^\w.-]", "_", video_id) or "tensor"
    if source.dtype == torch.uint8 and source.ndim == 4 and source.shape[-1] == 3:
        from vidlit.data.synth.videos import write_video

        path = folder / f"{name}.mkv"
        write_video(path, source.numpy(), fps=30, codec="ffv1")
        return path
    path = folder / f"{name}.pt"
    torch.save(source.float(), path)
    return path


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
        "--audio",
        type=Path,
        help="the audio features: AVE and XD-Violence (VGGish; XD-Violence finds it by name by default), "
        "LLP (default: the same name in the data module's audio_dir)",
    )
    parser.add_argument("--motion", type=Path, help="LLP: R(2+1)D features (default: found by name)")
    parser.add_argument("--music", type=Path, help="music-dance: the music; LORIS: the reference music")
    parser.add_argument("--pose", type=Path, help="LORIS: the dancer's pose, [frames, 17, 3] .npy at 16 Hz")
    parser.add_argument(
        "--frame", type=int, help="FHP: the pre_45 frame; SCOD: the PNR frame; STA: the last observed frame"
    )
    parser.add_argument(
        "--detections", type=Path, help='STA: boxes to label, {uid: [{"box": [x1, y1, x2, y2], "score"}]}'
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="also write the submission document there (LORIS: the generated .wav beside it)",
    )
    parser.add_argument("--device", default="cpu")
    options = parser.parse_args(args)
    stdout = sys.stdout
    try:
        # stdout carries the JSON alone: whatever the model reports on the way (a sampler's
        # progress bar) goes to stderr
        window = None
        if options.start is not None or options.end is not None:
            if options.end is None:
                raise ValueError("--start needs --end (the clip's end in seconds)")
            window = (options.start or 0.0, options.end)
        names = ("audio", "motion", "music", "pose", "frame", "detections")
        inputs = {name: getattr(options, name) for name in names}
        with contextlib.redirect_stdout(sys.stderr):
            predictor = load(options.ckpt_path, options.config, options.device)
            result = predictor.predict(
                options.video, texts=options.texts, out=options.out, window=window, **inputs
            )
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    out = result.submission if result.submission is not None else result.to_json()
    if result.ranking:
        out = {"video_id": str(options.video), "ranking": result.to_json()["ranking"]}
    elif result.submission is None:
        out = result.to_json()["predictions"]
    json.dump(out, stdout, indent=1)
    stdout.write("\n")
