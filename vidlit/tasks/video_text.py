"""VideoTextPretrain: video-text contrastive learning (ViCLIP / InternVideo) with Lightning.

    vidlit fit --config recipes/pretrain_viclip.yaml

trains a :class:`~vidlit.backbones.video_text.VideoTextModel` with CLIP's symmetric InfoNCE
(:func:`~vidlit.layers.contrastive.contrastive_loss`, negatives gathered from every process),
optionally together with the masked-video reconstruction loss on the same video backbone
(InternVideo, Wang et al., 2022: its masked and contrastive objectives). Validation reports
text-to-video and video-to-text retrieval (R@1/5/10, median and mean rank, multi-caption aware;
:class:`~vidlit.metrics.retrieval.RetrievalRecall`) and, when the data module names classes and
its batches carry labels, zero-shot classification top-1/top-5 with prompt templates (CLIP,
Sec. 3.1.4). :class:`~vidlit.tasks.ExportBackbone` exports the video tower as a plain
``backbone.pt`` for :class:`~vidlit.tasks.TaskModule` fine-tuning, as after MVM pretraining.

A trained model loads for inference with::

    task = VideoTextPretrain.load_from_checkpoint("runs/pretrain_viclip/.../last.ckpt", weights_only=True)
    model = task.model.eval()             # VideoTextModel: encode_video, encode_text, similarity
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import Tensor, nn
from torch.optim import Optimizer

from vidlit.backbones._builder import register_backbone_prefix
from vidlit.backbones.mvm import (
    decoder_for,
    masked_reconstruction,
)
from vidlit.backbones.video_text import VideoTextModel
from vidlit.core.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from vidlit.layers.contrastive import contrastive_loss
from vidlit.metrics.classification import TopKAccuracy
from vidlit.metrics.retrieval import RetrievalRecall
from vidlit.tasks.empty_batches import EmptyBatches
from vidlit.tasks.finetune import check_finite_loss, record_backbone_prefix, renamed_attribute
from vidlit.tasks.optim import (
    LRSchedulerCallable,
    OptimizerCallable,
    check_interval,
    configure_optimizers,
    default_scheduler,
    weight_decay_groups,
)
from vidlit.tasks.pretrain import save_backbone
from vidlit.tasks.prompts import DEFAULT_PROMPTS, check_prompt_templates, class_embeddings

__all__ = ["DEFAULT_PROMPTS", "VideoTextPretrain"]

log = logging.getLogger(__name__)

def default_optimizer(params: Iterable) -> Optimizer:
    """AdamW with CLIP's settings: lr 5e-4, betas (0.9, 0.98), eps 1e-6, weight decay 0.2."""
    return torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)


@register_backbone_prefix
class VideoTextPretrain(L.LightningModule):
    """Video-text contrastive pretraining (ViCLIP, Wang et al., 2023; InternVideo, Wang et al., 2022).

    Batches need ``"video"`` (``[b, c, t, h, w]`` float, normalized by ``pixel_mean`` /
    ``pixel_std``), ``"captions"`` (``b`` strings, caption ``i`` describes clip ``i``) and
    ``"video_ids"`` (``b`` strings naming the clip, used for multi-caption retrieval and in error
    messages); optionally ``"labels"`` (``[b]`` int64, ``-1`` where unknown) for zero-shot
    classification against the data module's ``class_names``.

    Training loss: ``contrastive + mvm_weight * mvm``. The contrastive part drops
    ``drop_ratio`` of each clip's video tokens at random (ViCLIP's 0.9). With
    ``mvm_weight > 0`` the same backbone also reconstructs the pixels hidden by a tube mask of
    ``mvm_mask_ratio`` through an :class:`~vidlit.backbones.mvm.MVMDecoder` (a second, masked
    encoder pass, as InternVideo trains its two objectives on one backbone).

    Args:
        backbone: the video tower, e.g. ``class_path: vidlit.backbones.create_backbone`` with
            ``init_args: {name: vit_base_patch16_16x224}`` (optionally ``checkpoint_path`` of an MVM
            ``backbone.pt``: InternVideo initializes from masked pretraining).
        text: text tower name (``"minilm"``, ``"text_test"``) or a local Hugging Face folder.
        proj_dim: shared embedding width.
        drop_ratio: fraction of video tokens dropped per clip in training (ViCLIP: 0.9).
        freeze_text: keep the text tower fixed (LiT-style, Zhai et al., 2022); its projection learns.
        text_max_length: caption truncation in tokens.
        init_temperature: initial softmax temperature (CLIP: 0.07).
        learn_temperature: learn the temperature (clipped at a logit scale of 100).
        gather: negatives from every process under DDP (global batch); False uses only the
            process's own batch.
        mvm_weight: weight of the masked-video loss; 0 turns it (and its decoder) off.
        mvm_mask_ratio: tube-mask ratio of the masked-video loss.
        decoder_dim: MVM decoder width.
        decoder_depth: MVM decoder blocks.
        decoder_heads: MVM decoder attention heads.
        norm_pix_loss: MVM targets are per-tubelet normalized pixels.
        pixel_mean: per-channel mean the data module subtracted (for MVM pixel targets).
        pixel_std: per-channel standard deviation the data module divided by.
        prompt_templates: zero-shot prompts, each with one ``{}`` for the class name.
        optimizer: builds the optimizer from two parameter groups (weight decay / none, see
            :func:`~vidlit.tasks.pretrain.weight_decay_groups`); its ``lr`` is used as given.
        scheduler: builds a scheduler from the optimizer; a
            :class:`~vidlit.tasks.WarmupCosineLR` with ``total_steps: 0`` is sized to the
            trainer's estimated steps. ``null`` for a constant rate.
        scheduler_interval: step the scheduler every ``"step"`` or ``"epoch"``.
        compile: ``torch.compile`` the video tower in place in ``configure_model``.
        retrieval_v2t: video-to-text convention of the validation/test retrieval metric:
            ``"all_captions"`` (every caption is a gallery item; ALBEF/BLIP) or ``"per_video_max"``
            (CLIP4Clip); see :class:`~vidlit.metrics.retrieval.RetrievalRecall`.

    Attributes:
        model: the :class:`~vidlit.backbones.video_text.VideoTextModel`.
        backbone: the video tower (``model.video``), what ``ExportBackbone`` exports.

    Attributes:
        backbone_prefix: where the video tower's weights sit in this module's state dict, recorded in
            its checkpoints for ``create_backbone(..., checkpoint_path=)``.
        use_compile: the ``compile`` argument (``compile`` itself would hide ``nn.Module.compile``);
            ``compile_backbone``, its former name, is a deprecated alias.
    """

    backbone_prefix: ClassVar[str] = "model.video."
    compile_backbone = renamed_attribute("compile_backbone", "use_compile")

    def __init__(
        self,
        backbone: nn.Module,
        text: str = "minilm",
        proj_dim: int = 512,
        drop_ratio: float = 0.9,
        freeze_text: bool = False,
        text_max_length: int = 32,
        init_temperature: float = 0.07,
        learn_temperature: bool = True,
        gather: bool = True,
        mvm_weight: float = 0.0,
        mvm_mask_ratio: float = 0.9,
        decoder_dim: int = 384,
        decoder_depth: int = 4,
        decoder_heads: int = 6,
        norm_pix_loss: bool = True,
        pixel_mean: Sequence[float] | None = IMAGENET_DEFAULT_MEAN,
        pixel_std: Sequence[float] | None = IMAGENET_DEFAULT_STD,
        prompt_templates: Sequence[str] = DEFAULT_PROMPTS,
        optimizer: OptimizerCallable = default_optimizer,
        scheduler: LRSchedulerCallable | None = default_scheduler,
        scheduler_interval: str = "step",
        compile: bool = False,
        retrieval_v2t: str = "all_captions",
    ):
        super().__init__()
        if _given_hyperparameters.get() is not None:
            # built by LightningCLI: the hyperparameters are the config itself (plain data), which
            # load_from_checkpoint re-instantiates, also with weights_only=True
            self.save_hyperparameters()
        else:
            # built in Python: modules and callables are not plain data; pass them again to
            # load_from_checkpoint (e.g. backbone=create_backbone("vit_test"))
            self.save_hyperparameters(ignore=["backbone", "optimizer", "scheduler"])
        check_interval(scheduler_interval)
        if mvm_weight < 0:
            raise ValueError(f"mvm_weight must be >= 0, got {mvm_weight}")
        templates = check_prompt_templates(prompt_templates)
        self.model = VideoTextModel(
            backbone,
            text=text,
            proj_dim=proj_dim,
            drop_ratio=drop_ratio,
            freeze_text=freeze_text,
            text_max_length=text_max_length,
            init_temperature=init_temperature,
            learn_temperature=learn_temperature,
        )
        self.gather = gather
        self.mvm_weight = mvm_weight
        self.mvm_mask_ratio = mvm_mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.pixel_mean = tuple(pixel_mean) if pixel_mean is not None else None
        self.pixel_std = tuple(pixel_std) if pixel_std is not None else None
        self.decoder = None
        if mvm_weight > 0:  # fails now on a backbone that is not a VideoViT or on an unusable ratio
            self.decoder = decoder_for(backbone, decoder_dim, decoder_depth, decoder_heads, mvm_mask_ratio)
        self.prompt_templates = templates
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.use_compile = compile
        self._compiled = False
        self.val_retrieval = RetrievalRecall(names=("t", "v"), v2t=retrieval_v2t)
        self.test_retrieval = RetrievalRecall(names=("t", "v"), v2t=retrieval_v2t)
        self._zero_shot: TopKAccuracy | None = None
        self._class_embeddings: Tensor | None = None
        self.empty_batches = EmptyBatches()  # batches whose videos were all unreadable

    @property
    def backbone(self) -> nn.Module:
        """The video tower (``model.video``)."""
        return self.model.video

    # -- model ----------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_backbone_prefix(self, checkpoint)

    def configure_model(self) -> None:
        if self.use_compile and not self._compiled:
            self.model.video.compile()
            self._compiled = True

    def forward(self, video: Tensor, captions: Sequence[str]) -> Any:
        """Embeddings of paired clips and captions (see :meth:`VideoTextModel.forward`)."""
        return self.model(video, list(captions))

    @staticmethod
    def _inputs(batch: dict[str, Any]) -> tuple[Tensor, list[str]]:
        missing = [k for k in ("video", "captions") if k not in batch]
        if missing:
            raise KeyError(
                "VideoTextPretrain needs batch['video'] ([b, c, t, h, w]) and batch['captions'] "
                f"(b strings); "
                f"the batch has {sorted(batch)}"
            )
        video, captions = batch["video"], list(batch["captions"])
        if video.shape[0] != len(captions):
            raise ValueError(f"batch has {video.shape[0]} clips but {len(captions)} captions")
        return video, captions

    def _mvm_loss(self, video: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return masked_reconstruction(self, video, self.mvm_mask_ratio, generator).loss

    # -- steps ----------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        video, captions = self._inputs(batch)
        if self.empty_batches.skip(self, batch, "train"):
            return None  # every video unreadable: no loss (it would be NaN), no optimizer step
        out = self(video, captions)
        contrastive, _ = contrastive_loss(out.video, out.text, out.logit_scale, gather=self.gather)
        losses = {"loss": contrastive, "contrastive": contrastive.detach()}
        if self.decoder is not None:
            mvm = self._mvm_loss(video)
            losses["loss"] = contrastive + self.mvm_weight * mvm
            losses["mvm"] = mvm.detach()
        check_finite_loss(self, losses, batch, batch_idx)
        size = video.shape[0]
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=size)
        self.log("train/logit_scale", out.logit_scale.detach(), batch_size=size)
        self.log("loss", losses["loss"].detach(), prog_bar=True, logger=False, batch_size=size)
        return losses["loss"]

    def on_validation_epoch_start(self) -> None:
        self._prepare_zero_shot()

    def on_test_epoch_start(self) -> None:
        self._prepare_zero_shot()

    def _prepare_zero_shot(self) -> None:
        """Class embeddings from the prompt ensemble, when the data module names classes."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        class_names = getattr(datamodule, "class_names", None)
        self._class_embeddings = None
        if not class_names:
            return
        self._class_embeddings = self.class_embeddings(class_names)
        if self._zero_shot is None or self._zero_shot.num_classes != len(class_names):
            self._zero_shot = TopKAccuracy(len(class_names), top_k=(1, 5)).to(self.device)
        self._zero_shot.reset()

    @torch.no_grad()
    def class_embeddings(self, class_names: Sequence[str]) -> Tensor:
        """``[num_classes, proj_dim]`` zero-shot classifier: the normalized mean of each class's prompt
        embeddings (CLIP's prompt ensembling)."""
        return class_embeddings(self.model, class_names, self.prompt_templates)

    def _evaluate(
        self, batch: dict[str, Any], batch_idx: int, stage: str, retrieval: RetrievalRecall
    ) -> None:
        video, captions = self._inputs(batch)
        if self.empty_batches.skip(self, batch, stage):
            return
        out = self(video, captions)
        loss, _ = contrastive_loss(out.video, out.text, out.logit_scale, gather=False)
        size = video.shape[0]
        if self.decoder is not None:
            # the mask depends only on the batch index: comparable numbers, global RNG untouched
            mvm = self._mvm_loss(video, torch.Generator(device=video.device).manual_seed(batch_idx))
            self.log(f"{stage}/mvm", mvm, batch_size=size, sync_dist=True)
        self.log(f"{stage}/contrastive", loss, batch_size=size, sync_dist=True)
        retrieval.update(out.text, out.video, list(batch["video_ids"]))
        labels = batch.get("labels")
        if self._class_embeddings is not None and labels is not None:
            keep = (labels >= 0).nonzero().flatten().tolist()
            if keep:
                scores = (out.logit_scale * out.video @ self._class_embeddings.T).softmax(dim=-1)
                ids = batch["video_ids"]
                self._zero_shot.update(
                    [{"video_id": ids[i], "scores": scores[i]} for i in keep],
                    [{"video_id": ids[i], "label": int(labels[i])} for i in keep],
                )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val", self.val_retrieval)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test", self.test_retrieval)

    def _log_epoch(self, stage: str, retrieval: RetrievalRecall) -> None:
        if retrieval.update_count:
            for name, value in retrieval.compute().items():
                self.log(f"{stage}/{name}", value, prog_bar=name == "t2v/R@1")
        retrieval.reset()
        if (
            self._class_embeddings is not None
            and self._zero_shot is not None
            and self._zero_shot.update_count
        ):
            for name, value in self._zero_shot.compute().items():
                self.log(f"{stage}/zeroshot_{name}", value)
            self._zero_shot.reset()

    def on_train_epoch_end(self) -> None:
        self.empty_batches.end_epoch(self, "train")

    def on_validation_epoch_end(self) -> None:
        self.empty_batches.end_epoch(self, "val")
        self._log_epoch("val", self.val_retrieval)

    def on_test_epoch_end(self) -> None:
        self.empty_batches.end_epoch(self, "test")
        self._log_epoch("test", self.test_retrieval)

    # -- optimization ---------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        groups = weight_decay_groups(self)
        return configure_optimizers(self, groups, self.optimizer, self.scheduler, self.scheduler_interval)

    # -- export ---------------------------------------------------------------------------------

    def save_backbone(self, path: str | Path) -> Path:
        """Write the video tower's weights to ``path`` atomically (see :func:`save_backbone`)."""
        return save_backbone(self.backbone, path)
