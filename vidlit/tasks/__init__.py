"""Lightning modules: :class:`TaskModule` trains a head (on a backbone or on stored features);
:class:`MVMPretrain` pretrains a backbone by masked video modeling."""

from vidlit.tasks.finetune import TaskModule
from vidlit.tasks.pretrain import ExportBackbone, MVMPretrain
from vidlit.tasks.schedulers import WarmupCosineLR

__all__ = ["ExportBackbone", "MVMPretrain", "TaskModule", "WarmupCosineLR"]
