"""Video backbones behind a timm-style name registry.

``create_backbone("vit_base_patch16_16x224", drop_path_rate=0.1)`` builds a named size;
``list_backbones()`` lists the names; ``backbone_width(name)`` gives a size's feature width
without building it; ``VideoViT.from_pretrained(path)`` loads transformers'
VideoMAE folders and original VideoMAE / InternVideo checkpoints; ``CLIPVideoViT`` (``viclip_*`` names)
is ViCLIP's CLIP-style video tower and reads ViCLIP / open_clip checkpoints; ``save_pretrained(dir)`` /
``from_pretrained(dir)`` write and read vidlit's own folders (``config.json`` + ``model.safetensors``,
:mod:`vidlit.backbones._pretrained`) for VideoViT and VideoTextModel. :mod:`vidlit.backbones.mvm`
holds the masked-video-modeling pieces (tube masking, pixel targets, the VideoMAE decoder).
"""

from vidlit.backbones._pretrained import PretrainedMixin
from vidlit.backbones._registry import backbone_width, create_backbone, list_backbones, register_backbone
from vidlit.backbones.audio import AudioEncoder, create_audio_encoder
from vidlit.backbones.clip_video import CLIPLoadReport, CLIPVideoViT
from vidlit.backbones.mvm import MaskedVideoModel, MVMDecoder, patchify, pixel_targets, tube_mask
from vidlit.backbones.text import TextEncoder, create_text_encoder
from vidlit.backbones.viclip import load_clip_weights, load_viclip_checkpoint
from vidlit.backbones.video_text import VideoTextModel
from vidlit.backbones.vit import Block, VideoViT, checkpoint_filter_fn

__all__ = [
    "AudioEncoder",
    "Block",
    "CLIPLoadReport",
    "CLIPVideoViT",
    "MVMDecoder",
    "MaskedVideoModel",
    "PretrainedMixin",
    "TextEncoder",
    "VideoTextModel",
    "VideoViT",
    "backbone_width",
    "checkpoint_filter_fn",
    "create_audio_encoder",
    "create_backbone",
    "create_text_encoder",
    "list_backbones",
    "load_clip_weights",
    "load_viclip_checkpoint",
    "patchify",
    "pixel_targets",
    "register_backbone",
    "tube_mask",
]
