"""Released ViCLIP checkpoints as a :class:`~vidlit.backbones.VideoTextModel`; CLIP checkpoints as its start.

ViCLIP (Wang et al., 2023, "InternVid: A Large-scale Video-Text Dataset for Multimodal
Understanding and Generation", Sec. 4.1) releases one ``.pth`` per model, e.g.
``ViClip-InternVid-10M-FLT.pth`` (ViCLIP-L/14, Hugging Face ``OpenGVLab/ViCLIP``) and
``ViCLIP-B_InternVid-FLT-10M.pth`` (ViCLIP-B/16). Its layout, that of the official ``ViCLIP``
module's ``state_dict()`` under ``{"model": ...}``::

    vision_encoder.{conv1, class_embedding, positional_embedding, temporal_positional_embedding,
                    ln_pre, transformer.resblocks.{i}.*, ln_post, proj}
    text_encoder.{token_embedding, positional_embedding, transformer.resblocks.{i}.*, ln_final,
                  text_projection}
    temp                                  the softmax temperature (similarity / temp), >= 0.01

:func:`load_viclip_checkpoint` builds both towers from it (``vision_encoder.*`` through
:meth:`~vidlit.backbones.clip_video.CLIPVideoViT.load_clip_state_dict`, with its frame-count and
resolution adaptation; ``text_encoder.*`` through
:meth:`~vidlit.backbones.clip_text.CLIPTextEncoder.load_clip_state_dict`), puts ``proj`` and
``text_projection`` in the model's ``video_proj`` / ``text_proj`` (transposed) and ``temp`` in its
``logit_scale`` (``log(1 / temp)``). ViCLIP's text context is 32 tokens: the first 32 rows of CLIP's
positional table, so the built text tower has ``max_length=32``.

:func:`load_clip_weights` starts a built model from an image CLIP checkpoint instead (open_clip's
``open_clip_pytorch_model.bin`` / ``.safetensors`` layout: ``visual.*``, the text keys at the top,
``logit_scale``), as ViCLIP initializes from CLIP: the Conv2d patch weight becomes the one-frame
Conv3d kernel, the temporal table starts at zero, the text positional table is cut to the context.

Every file is read with ``torch.load(weights_only=True)`` (or safetensors); missing and unexpected
keys are named in the file's own names.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vidlit.backbones._builder import _read_weights, _strip_wrappers, _unwrap
from vidlit.backbones._clip_interop import clip_vision_config, clip_vision_weights
from vidlit.backbones._pretrained import warn_caller
from vidlit.backbones._registry import create_backbone
from vidlit.backbones.clip_text import CLIPTextEncoder, clip_text_size_for_width
from vidlit.backbones.clip_video import CLIPVideoViT, TemporalAdapt
from vidlit.backbones.text import create_text_encoder
from vidlit.backbones.video_text import VideoTextModel

__all__ = [
    "VICLIP_RELEASES",
    "load_clip_weights",
    "load_viclip_checkpoint",
    "read_clip_checkpoint",
]

log = logging.getLogger(__name__)

VISION_PREFIX = "vision_encoder."
TEXT_PREFIX = "text_encoder."
TEMPERATURE_KEY = "temp"

# Released files and their towers (InternVideo's ViCLIP README, "Pretrained Data & Model").
VICLIP_RELEASES: dict[str, dict[str, str]] = {
    "ViClip-InternVid-10M-FLT.pth": {"video": "viclip_large_patch14", "text": "clip_l14"},
    "ViCLIP-L_InternVid-FLT-10M.pth": {"video": "viclip_large_patch14", "text": "clip_l14"},
    "ViCLIP-L_InternVid-DIV-10M.pth": {"video": "viclip_large_patch14", "text": "clip_l14"},
    "ViCLIP-L_InternVid-10M.pth": {"video": "viclip_large_patch14", "text": "clip_l14"},
    "ViCLIP-L_InternVid-50M.pth": {"video": "viclip_large_patch14", "text": "clip_l14"},
    "ViCLIP-L_InternVid-200M.pth": {"video": "viclip_large_patch14", "text": "clip_l14"},
    "ViCLIP-L_WebVid-10M.pth": {"video": "viclip_large_patch14", "text": "clip_l14"},
    "ViCLIP-B_InternVid-FLT-10M.pth": {"video": "viclip_base_patch16", "text": "clip_b16"},
    "ViCLIP-B_InternVid-200M.pth": {"video": "viclip_base_patch16", "text": "clip_b16"},
}


def read_clip_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a ViCLIP / CLIP weights file, unwrapped (``{"model": ...}``, ``module.``).

    Raises:
        FileNotFoundError: a missing file.
        ValueError: a file that ``torch.load(weights_only=True)`` cannot read (a TorchScript archive
            such as OpenAI's ``ViT-B-16.pt``: load it in open_clip and save its ``state_dict()``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    raw = _read_weights(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a dict of tensors, got {type(raw).__name__}")
    try:
        state = _unwrap(raw)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return {
        _strip_wrappers(k, ("module.", "_orig_mod.")): v for k, v in state.items() if isinstance(v, Tensor)
    }


def _under(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _required(state: dict[str, Tensor], key: str, where: str, prefix: str = "") -> Tensor:
    if key not in state:
        raise ValueError(f"{where}: missing key '{prefix}{key}'")
    return state[key]


def load_viclip_checkpoint(
    path: str | Path,
    video: str | None = None,
    text: str | None = None,
    num_frames: int = 8,
    img_size: int | tuple[int, int] = 224,
    temporal_adapt: TemporalAdapt = "interpolate",
    strict: bool = True,
    video_overrides: dict[str, Any] | None = None,
    **model_kwargs: Any,
) -> VideoTextModel:
    """Build a :class:`~vidlit.backbones.VideoTextModel` from a released ViCLIP ``.pth``.

    Args:
        path: the file (``{"model": {...}}`` as released, or the bare state dict).
        video: the video tower's registered name, e.g. ``viclip_large_patch14``; ``None``: the
            release's (:data:`VICLIP_RELEASES`, by file name), else sized from the weights (width,
            depth, patch; the head count CLIP's for the width).
        text: the text tower's size; ``None``: the release's, else picked by the width of
            ``text_encoder.ln_final`` (512: ``clip_b16``, 768: ``clip_l14``).
        num_frames: frames per clip of the built model; the temporal table is adapted from the
            checkpoint's (8) by ``temporal_adapt``.
        img_size: input resolution; the spatial table is resampled bicubically from the checkpoint's.
        temporal_adapt: ``"interpolate"`` (linear) or ``"zero_pad"`` (ViCLIP's two choices) for more
            frames than the checkpoint's; fewer keep its first frames in both.
        strict: missing or unexpected keys raise; otherwise they warn and the rest loads.
        video_overrides: more constructor arguments of the video tower (e.g. ``drop_path_rate``).
        **model_kwargs: arguments of :class:`~vidlit.backbones.VideoTextModel` (``drop_ratio``,
            ``freeze_text``, ...); ``proj_dim`` and ``text_max_length`` come from the file.

    Returns:
        the model in eval mode, its ``scale()`` the checkpoint's ``1 / temp``.

    Raises:
        FileNotFoundError: a missing file.
        ValueError: one line naming the missing / unexpected keys (in the file's names), shapes that
            do not fit, or a file that is not a ViCLIP checkpoint.
    """
    where = str(path)
    release = VICLIP_RELEASES.get(Path(path).name, {})  # a released file: its named sizes
    video = video or release.get("video")
    text = text or release.get("text")
    state = read_clip_checkpoint(path)
    vision_state, text_state = _under(state, VISION_PREFIX), _under(state, TEXT_PREFIX)
    if not vision_state or not text_state:
        raise ValueError(
            f"{where}: not a ViCLIP checkpoint: no '{VISION_PREFIX}*' or '{TEXT_PREFIX}*' keys; keys start "
            f"{sorted(state)[:8]}"
        )
    unexpected = sorted(
        k for k in state if not k.startswith((VISION_PREFIX, TEXT_PREFIX)) and k != TEMPERATURE_KEY
    )
    missing = [TEMPERATURE_KEY] if TEMPERATURE_KEY not in state else []
    if unexpected or missing:
        message = f"{where}: missing keys {missing}, unexpected keys {unexpected}"
        if strict:
            raise ValueError(message)
        warn_caller(message)

    # text tower: its size from the widths, its context from the positional table (ViCLIP: 32)
    width = _required(text_state, "ln_final.weight", where, TEXT_PREFIX).shape[0]
    context = _required(text_state, "positional_embedding", where, TEXT_PREFIX).shape[0]
    text_tower = create_text_encoder(text or clip_text_size_for_width(width), max_length=context)
    if not isinstance(text_tower, CLIPTextEncoder):
        raise ValueError(
            f"text={text!r}: a ViCLIP checkpoint needs a CLIP text tower (clip_b16, clip_l14, ...)"
        )
    text_projection = text_tower.load_clip_state_dict(text_state, where, TEXT_PREFIX, strict)

    # video tower: CLIPVideoViT's own loader (tables adapted to num_frames / img_size)
    overrides = {"num_frames": num_frames, "img_size": img_size, **(video_overrides or {})}
    if video is None:  # sized from the weights, as CLIPVideoViT.from_clip_state_dict does
        config = clip_vision_config(vision_state, where, overrides.get("num_heads"), VISION_PREFIX)
        video_tower = CLIPVideoViT(**{**config, **overrides})
    else:
        video_tower = create_backbone(video, **overrides)
        if not isinstance(video_tower, CLIPVideoViT):
            raise ValueError(f"video={video!r}: a ViCLIP checkpoint needs a viclip_* video tower")
    # the tower reports its missing / unexpected keys in the file's names (vision_encoder.*); proj is
    # not the tower's: a missing one is reported below, with the text side's projection
    proj = video_tower.load_clip_state_dict(state, "viclip", strict, temporal_adapt, where).proj

    if proj is None or text_projection is None:
        absent = [
            k
            for k, v in ((VISION_PREFIX + "proj", proj), (TEXT_PREFIX + "text_projection", text_projection))
            if v is None
        ]
        raise ValueError(f"{where}: missing keys {absent}: the projections into the shared space")
    if proj.shape[1] != text_projection.shape[1]:
        raise ValueError(
            f"{where}: key '{VISION_PREFIX}proj' projects to {proj.shape[1]} but "
            f"'{TEXT_PREFIX}text_projection' to {text_projection.shape[1]}"
        )
    model = VideoTextModel(
        video_tower, text_tower, proj_dim=proj.shape[1], text_max_length=context, **model_kwargs
    )
    with torch.no_grad():
        model.video_proj.weight.copy_(proj.T)
        model.text_proj.weight.copy_(text_projection.T)
        if TEMPERATURE_KEY in state:
            model.logit_scale.fill_(_logit_scale(state[TEMPERATURE_KEY], where))
    return model.eval()


def _logit_scale(temperature: Tensor, where: str) -> float:
    if temperature.numel() != 1:
        raise ValueError(
            f"{where}: key '{TEMPERATURE_KEY}': expected a scalar, got shape {tuple(temperature.shape)}"
        )
    value = float(temperature)
    if not value > 0:
        raise ValueError(f"{where}: key '{TEMPERATURE_KEY}': the temperature must be positive, got {value}")
    return math.log(1 / value)


def load_clip_weights(
    model: VideoTextModel,
    path: str | Path,
    video: bool = True,
    strict: bool = True,
    temporal_adapt: TemporalAdapt = "interpolate",
) -> None:
    """Initialize a built model from an image CLIP checkpoint (open_clip / OpenAI layout), as ViCLIP does.

    The text keys (``token_embedding``, ``positional_embedding``, ``transformer.resblocks.*``,
    ``ln_final``; ``text.``-prefixed ones too) go to the CLIP text tower, ``text_projection`` to
    ``text_proj`` (transposed), ``logit_scale`` to the logit scale; with ``video``, ``visual.*`` goes
    to the CLIP-style video tower through
    :meth:`~vidlit.backbones.clip_video.CLIPVideoViT.load_clip_state_dict` (Conv2d inflated, temporal
    table zero) and ``visual.proj`` to ``video_proj``. open_clip's LAION models use GELU, OpenAI's
    QuickGELU: build the towers to match (``quick_gelu`` / ``act_layer``), the weights cannot tell.

    Args:
        model: a model with a :class:`~vidlit.backbones.clip_text.CLIPTextEncoder` (and, with
            ``video``, a :class:`~vidlit.backbones.clip_video.CLIPVideoViT`) of the checkpoint's sizes.
        path: the weights file (``.bin`` / ``.pt`` / ``.pth`` / ``.safetensors`` state dict).
        video: also load the video tower from ``visual.*``; ``False`` loads the text side only.
        strict: missing or unexpected keys raise; otherwise they warn and the rest loads.
        temporal_adapt: passed to the video tower's loader.

    Raises:
        ValueError: one line naming the missing / unexpected keys or the shapes that do not fit.
    """
    where = str(path)
    if not isinstance(model.text, CLIPTextEncoder):
        raise ValueError(
            f"{where}: loading CLIP weights needs a CLIP text tower; the model's is a "
            f"{type(model.text).__name__}"
        )
    if video and not isinstance(model.video, CLIPVideoViT):
        raise ValueError(
            f"{where}: the model's video tower is a {type(model.video).__name__}, not a CLIPVideoViT; pass "
            "video=False to load the text side only"
        )
    state = read_clip_checkpoint(path)
    prefix = "text." if any(k.startswith("text.") for k in state) else ""
    text_keys = {k for k in state if k.startswith(prefix) and not k.startswith("visual.")}
    text_keys -= {"logit_scale", "logit_bias"}
    text_state = {k[len(prefix) :]: state[k] for k in text_keys}
    projection = text_state.get("text_projection")
    if projection is not None and projection.shape[1:] != (model.proj_dim,):
        raise ValueError(
            f"{where}: key '{prefix}text_projection': shape {tuple(projection.shape)}, but the model's "
            f"proj_dim is {model.proj_dim}"
        )
    # both sides checked before either loads: an error leaves the model as it was
    text_loadable, projection = model.text.check_clip_state_dict(text_state, where, prefix, strict)
    report = None
    if video:
        video_loadable, report = model.video.check_clip_state_dict(
            state, "openclip", strict, temporal_adapt, where
        )
        if report.proj is not None and report.proj.shape != (model.video.embed_dim, model.proj_dim):
            _, vision_prefix = clip_vision_weights(state, "openclip", where)  # the key as the file names it
            raise ValueError(
                f"{where}: key '{vision_prefix}proj': shape {tuple(report.proj.shape)}, expected "
                f"({model.video.embed_dim}, {model.proj_dim})"
            )
        model.video.load_checked(video_loadable)
    model.text.load_checked(text_loadable)
    with torch.no_grad():
        if projection is not None:
            model.text_proj.weight.copy_(projection.T)
        if report is not None and report.proj is not None:
            model.video_proj.weight.copy_(report.proj.T)
        if "logit_scale" in state:
            model.logit_scale.fill_(float(state["logit_scale"]))
    absent = [
        k
        for k, v in (("text_projection", projection), ("logit_scale", state.get("logit_scale")))
        if v is None
    ]
    if absent:
        log.info("%s: no %s; the model keeps its own", where, " / ".join(absent))
