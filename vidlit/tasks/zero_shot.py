"""Zero-shot evaluation of a video-text model: classification from class names, text-video retrieval.

Two LightningModules that evaluate a :class:`~vidlit.backbones.video_text.VideoTextModel` as it
is (no training step), through ``vidlit test`` / ``vidlit validate``:

- :class:`ZeroShotClassification`: the classifier is the text embedding of every class name in
  every prompt template, averaged (:func:`~vidlit.tasks.prompts.class_embeddings`; CLIP's prompt
  ensembling with :data:`~vidlit.tasks.prompts.KINETICS_PROMPTS` by default); a clip's class
  scores are the softmax of ``logit_scale * cos(video, class)``; reported as video-level top-1 /
  top-5 (:class:`~vidlit.metrics.classification.TopKAccuracy`, views of a video averaged), the
  protocol of ViCLIP's Kinetics zero-shot numbers. Data: any data module with ``class_names``
  and labelled batches, e.g. :class:`~vidlit.data.VideoListDataModule` on the official Kinetics
  CSV (``recipes/zeroshot_cls.yaml``).
- :class:`ZeroShotRetrieval`: text-to-video and video-to-text R@1/5/10, median and mean rank
  (:class:`~vidlit.metrics.retrieval.RetrievalRecall`) over the caption / video pairs of a
  retrieval data module (:class:`~vidlit.data.retrieval.RetrievalDataModule`: MSR-VTT 1k-A, or
  DiDeMo / ActivityNet Captions paragraphs; ``recipes/retrieval_eval.yaml``).

The model comes from ``checkpoint`` (:func:`load_video_text_model`: a ``save_pretrained`` folder
or Hub repo, a Lightning checkpoint of :class:`~vidlit.tasks.video_text.VideoTextPretrain`, or a
released ViCLIP ``.pth``),
or, without one, is the ``model`` given (in YAML a ``class_path`` of ``VideoTextModel``; with
random weights that is a smoke run at chance level)::

    vidlit test --config recipes/zeroshot_cls.yaml \\
        --model.init_args.checkpoint runs/pretrain_viclip/version_0/checkpoints/last.ckpt
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from vidlit.backbones._pretrained import is_vidlit_folder
from vidlit.backbones.viclip import load_viclip_checkpoint
from vidlit.backbones.video_text import VideoTextModel
from vidlit.metrics.classification import TopKAccuracy
from vidlit.metrics.retrieval import RetrievalRecall
from vidlit.tasks.empty_batches import EmptyBatches
from vidlit.tasks.prompts import KINETICS_PROMPTS, check_prompt_templates, class_embeddings

__all__ = ["ZeroShotClassification", "ZeroShotRetrieval", "load_video_text_model"]

log = logging.getLogger(__name__)

_LIGHTNING_SUFFIXES = (".ckpt",)
_RELEASE_SUFFIXES = (".pth", ".pt")


def load_video_text_model(checkpoint: str | Path, map_location: str | torch.device = "cpu") -> VideoTextModel:
    """A :class:`~vidlit.backbones.video_text.VideoTextModel` with its weights, from any of:

    - a folder written by ``VideoTextModel.save_pretrained`` (``config.json`` +
      ``model.safetensors``), or a Hugging Face Hub repo id of one;
    - a Lightning checkpoint (``.ckpt``) of :class:`~vidlit.tasks.video_text.VideoTextPretrain`
      written by ``vidlit fit --config recipes/pretrain_viclip.yaml`` (its architecture comes from
      the hyper-parameters saved in it; loaded with ``weights_only=True``);
    - a released ViCLIP checkpoint (``.pth``, e.g. ``ViClip-InternVid-10M-FLT.pth``), through
      :func:`vidlit.backbones.load_viclip_checkpoint` at its defaults (8 frames, 224 px); for other
      sizes build it there and ``save_pretrained`` it first.

    Returns:
        The model in eval mode.

    Raises:
        FileNotFoundError: no such file or folder (and not a Hub repo).
        ValueError: a file of another kind, naming what it is and what is accepted.
    """
    path = Path(checkpoint)
    if path.suffix in _LIGHTNING_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        from vidlit.tasks.video_text import VideoTextPretrain

        document = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if not isinstance(document, dict) or "state_dict" not in document:
            raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
        if not any(key.startswith("model.text") for key in document["state_dict"]):
            raise ValueError(
                f"{path}: a Lightning checkpoint without a video-text model (no 'model.text*' weights); "
                "zero-shot evaluation needs one written by VideoTextPretrain (recipes/pretrain_viclip.yaml)"
            )
        task = VideoTextPretrain.load_from_checkpoint(path, map_location=map_location, weights_only=True)
        return task.model.eval()
    if path.suffix in _RELEASE_SUFFIXES:
        # a released ViCLIP file: sizes from its name or its weights, 8 frames at 224 px
        return load_viclip_checkpoint(path).to(map_location).eval()
    if path.is_dir() and not is_vidlit_folder(path):
        raise ValueError(f"{path}: a folder without vidlit's config.json (save_pretrained writes one)")
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"{path}: expected a VideoTextModel.save_pretrained folder, a Hub repo id, a Lightning .ckpt "
            f"of VideoTextPretrain or a released ViCLIP file ({', '.join(_RELEASE_SUFFIXES)})"
        )
    return VideoTextModel.from_pretrained(checkpoint).to(map_location).eval()


class _ZeroShotTask(L.LightningModule):
    """What both zero-shot tasks share: the model (given, or loaded from a checkpoint), no training,
    skipped empty batches, and ``val`` / ``test`` stages that evaluate the same way."""

    evaluation_only = True  # `vidlit fit` refuses it in one line before training (VidlitCLI.before_fit)

    def __init__(self, model: VideoTextModel | None = None, checkpoint: str | None = None):
        super().__init__()
        if checkpoint is None and model is None:
            raise ValueError(
                f"{type(self).__name__} needs a checkpoint (a VideoTextPretrain .ckpt, a save_pretrained "
                "folder or a released ViCLIP .pth) or a model"
            )
        if checkpoint is not None and model is not None:
            log.info("checkpoint %s given: the model argument is not used", checkpoint)
        self.checkpoint = checkpoint
        # with a checkpoint the model is read in setup(): a bad path is then one plain error, not
        # one wrapped by the CLI's argument parser
        self.model = None if checkpoint is not None else self._checked(model)
        self.empty_batches = EmptyBatches()

    @staticmethod
    def _checked(model: VideoTextModel) -> VideoTextModel:
        for name in ("encode_video", "encode_text", "scale"):
            if not callable(getattr(model, name, None)):
                raise ValueError(f"model {type(model).__name__} has no {name}(): a VideoTextModel is needed")
        return model.eval()

    def setup(self, stage: str) -> None:
        """Load the checkpoint (once), before Lightning moves the model to its device."""
        if self.model is None:
            self.model = self._checked(load_video_text_model(self.checkpoint))

    def _refuse_training(self) -> RuntimeError:
        return RuntimeError(
            f"{type(self).__name__} evaluates a trained model and has nothing to train: use `vidlit test` "
            "or `vidlit validate` (train with recipes/pretrain_viclip.yaml)"
        )

    def configure_optimizers(self) -> None:  # the first thing `vidlit fit` asks for
        raise self._refuse_training()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        raise self._refuse_training()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self._prepare()

    def on_test_epoch_start(self) -> None:
        self._prepare()

    def on_validation_epoch_end(self) -> None:
        self.empty_batches.end_epoch(self, "val")
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.empty_batches.end_epoch(self, "test")
        self._log_metrics("test")

    def _prepare(self) -> None:
        """Reset the metric (and build what the epoch needs) before an evaluation epoch."""

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        raise NotImplementedError

    def _log_metrics(self, stage: str) -> None:
        raise NotImplementedError


class ZeroShotClassification(_ZeroShotTask):
    """Zero-shot video classification by prompt ensembling (CLIP, Radford et al., 2021, Sec. 3.1.4;
    ViCLIP's Kinetics zero-shot protocol, Wang et al., 2023).

    At the start of each evaluation epoch the class names of the data module
    (``trainer.datamodule.class_names``) are filled into every template and embedded; a class's
    embedding is the normalized mean of its templates' unit-norm embeddings. Each clip's scores
    are ``softmax(logit_scale * cos(video, classes))``; the views of a video are averaged by the
    metric. Logs ``{stage}/top1`` and ``{stage}/top5`` (top-5 only with more than 5 classes).

    Batches need ``"video"`` (normalized ``[b, 3, t, h, w]``), ``"video_ids"`` and ``"targets"``
    (``{"video_id", "label"[, "view"]}``), as :class:`~vidlit.data.VideoListDataModule` gives.

    Args:
        model: the video-text model, used when ``checkpoint`` is None.
        checkpoint: where to load the model from (:func:`load_video_text_model`); takes precedence
            over ``model``.
        prompt_templates: templates with one ``{}`` for the class name; CLIP's Kinetics set by
            default.
        top_k: the ``k`` of the reported top-k accuracies (the first is the headline).
        text_batch_size: prompts per text-tower call when building the classifier.

    Attributes:
        classifier: the ``[num_classes, dim]`` class embeddings of the current epoch.
    """

    def __init__(
        self,
        model: VideoTextModel | None = None,
        checkpoint: str | None = None,
        prompt_templates: Sequence[str] = KINETICS_PROMPTS,
        top_k: Sequence[int] = (1, 5),
        text_batch_size: int = 256,
    ):
        templates = check_prompt_templates(prompt_templates)  # before a checkpoint is read
        super().__init__(model, checkpoint)
        self.prompt_templates = templates
        self.top_k = tuple(top_k)
        self.text_batch_size = text_batch_size
        self.classifier: Tensor | None = None
        self.metric: TopKAccuracy | None = None

    def class_embeddings(self, class_names: Sequence[str]) -> Tensor:
        """``[num_classes, dim]`` class embeddings of ``class_names`` under this task's templates."""
        return class_embeddings(self.model, class_names, self.prompt_templates, self.text_batch_size)

    def _prepare(self) -> None:
        datamodule = self.trainer.datamodule
        class_names = getattr(datamodule, "class_names", None)
        if not class_names:
            raise ValueError(
                f"ZeroShotClassification needs a data module with class_names; "
                f"{type(datamodule).__name__} has none"
            )
        self.classifier = self.class_embeddings(list(class_names))
        if self.metric is None or self.metric.num_classes != len(class_names):
            self.metric = TopKAccuracy(len(class_names), top_k=self.top_k)
        self.metric = self.metric.to(self.device)
        self.metric.reset()

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        if self.empty_batches.skip(self, batch, stage):
            return
        video = self.model.encode_video(batch["video"])
        scores = (self.model.scale() * video @ self.classifier.T).softmax(dim=-1)
        predictions = [{"video_id": v, "scores": s} for v, s in zip(batch["video_ids"], scores)]
        self.metric.update(predictions, batch["targets"])

    def _log_metrics(self, stage: str) -> None:
        if self.metric is None or not self.metric.update_count:
            return
        for name, value in self.metric.compute().items():
            self.log(f"{stage}/{name}", value, prog_bar=name == f"top{self.top_k[0]}")
        self.metric.reset()


class ZeroShotRetrieval(_ZeroShotTask):
    """Zero-shot text-video retrieval (the protocol of ViCLIP / CLIP4Clip on MSR-VTT, DiDeMo and
    ActivityNet Captions).

    Every batch's captions and clips are embedded; at the epoch end the caption x video cosine
    matrix is ranked both ways (:class:`~vidlit.metrics.retrieval.RetrievalRecall`; captions that
    share a ``video_id`` are several queries of one video). Logs ``{stage}/t2v/R@1``, ``R@5``,
    ``R@10``, ``MdR``, ``MnR`` and the same for ``v2t``.

    Batches need ``"video"`` (normalized ``[b, 3, t, h, w]``), ``"captions"`` (``b`` strings,
    caption ``i`` of clip ``i``) and ``"video_ids"``, as
    :class:`~vidlit.data.retrieval.RetrievalDataModule` gives.

    Args:
        model: the video-text model, used when ``checkpoint`` is None.
        checkpoint: where to load the model from (:func:`load_video_text_model`).
        v2t: video-to-text convention for several captions per video: ``"all_captions"`` or
            ``"per_video_max"`` (CLIP4Clip); the same with one caption (or paragraph) per video.
        ks: the K of R@K.
    """

    def __init__(
        self,
        model: VideoTextModel | None = None,
        checkpoint: str | None = None,
        v2t: str = "all_captions",
        ks: Sequence[int] = (1, 5, 10),
    ):
        super().__init__(model, checkpoint)
        self.metric = RetrievalRecall(ks=ks, names=("t", "v"), v2t=v2t)

    def _prepare(self) -> None:
        self.metric.reset()

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        if self.empty_batches.skip(self, batch, stage):
            return
        captions = list(batch["captions"])
        if batch["video"].shape[0] != len(captions):
            raise ValueError(f"batch has {batch['video'].shape[0]} clips but {len(captions)} captions")
        video = self.model.encode_video(batch["video"])
        text = self.model.encode_text(captions)
        self.metric.update(text, video, list(batch["video_ids"]))

    def _log_metrics(self, stage: str) -> None:
        if not self.metric.update_count:
            return
        for name, value in self.metric.compute().items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "t2v/R@1")
        self.metric.reset()
