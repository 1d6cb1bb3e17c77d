"""Lightning modules: :class:`TaskModule` trains a head (on a backbone or on stored features);
:class:`MVMPretrain` pretrains a backbone by masked video modeling, :class:`VideoTextPretrain` by
video-text contrastive learning (ViCLIP), optionally joint with masked video modeling."""

from vidlit.tasks.finetune import TaskModule
from vidlit.tasks.pretrain import ExportBackbone, MVMPretrain
from vidlit.tasks.schedulers import WarmupCosineLR
from vidlit.tasks.video_text import VideoTextPretrain

__all__ = ["ExportBackbone", "MVMPretrain", "TaskModule", "VideoTextPretrain", "WarmupCosineLR"]
