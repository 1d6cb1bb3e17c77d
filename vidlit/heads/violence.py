"""Old name of :mod:`vidlit.heads.xd_violence`, kept so configs and checkpoints saved before it load."""

from vidlit.heads.xd_violence import *  # noqa: F403
from vidlit.heads.xd_violence import MACILSDHead, info_nce, topk_mil_logits  # noqa: F401
