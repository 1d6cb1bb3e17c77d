"""CLIP vision-tower key layouts: ViCLIP's ``vision_encoder.*`` and open_clip's ``visual.*``.

Pure state-dict functions, no model: which keys of a checkpoint are the vision tower
(:func:`clip_vision_weights`), which layout a checkpoint is in (:func:`detect_clip_source`), the
renaming to :class:`~vidlit.backbones.clip_video.CLIPVideoViT`'s names and back
(:func:`convert_clip_vision`, :func:`export_clip_vision`), and the constructor arguments a tower's
weights imply (:func:`clip_vision_config`). Resampling the position tables to a model's grid needs
the model and lives in :meth:`CLIPVideoViT.load_clip_state_dict`.

The two layouts (InternVideo's ``viclip_vision.VisionTransformer`` and open_clip's
``transformer.VisionTransformer``) name the same tensors::

    conv1.weight                                [d, 3, 1, p, p] (ViCLIP Conv3d) / [d, 3, p, p] (CLIP Conv2d)
    class_embedding                             [d]
    positional_embedding                        [1 + h*w, d]
    temporal_positional_embedding               [1, t, d]  (ViCLIP only)
    ln_pre.{weight,bias}
    transformer.resblocks.N.ln_1.{weight,bias}
    transformer.resblocks.N.attn.in_proj_weight [3d, d]  (q, k, v stacked)
    transformer.resblocks.N.attn.in_proj_bias   [3d]
    transformer.resblocks.N.attn.out_proj.{weight,bias}
    transformer.resblocks.N.ln_2.{weight,bias}
    transformer.resblocks.N.mlp.c_fc.{weight,bias}
    transformer.resblocks.N.mlp.c_proj.{weight,bias}
    ln_post.{weight,bias}
    proj                                        [d, embed]  (returned apart: VideoTextModel.video_proj)

The key part of ``in_proj_bias`` is dropped: it adds ``q . b_k`` to every logit of a query, which
the softmax cancels exactly (see :class:`vidlit.layers.attention.Attention`); exporting writes zeros.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from vidlit.backbones._builder import _HEADS_BY_WIDTH, _strip_wrappers, _unwrap

__all__ = [
    "CLIP_PREFIXES",
    "CLIPLoadReport",
    "ClipSource",
    "clip_vision_config",
    "clip_vision_weights",
    "convert_clip_vision",
    "detect_clip_source",
    "export_clip_vision",
    "official_key",
]

ClipSource = Literal["viclip", "openclip"]
#: where each layout keeps its vision tower inside a whole-model checkpoint
CLIP_PREFIXES: dict[str, str] = {"viclip": "vision_encoder.", "openclip": "visual."}

_BLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")
_BLOCK_RENAMES = {
    "ln_1.weight": "norm1.weight",
    "ln_1.bias": "norm1.bias",
    "ln_2.weight": "norm2.weight",
    "ln_2.bias": "norm2.bias",
    "attn.in_proj_weight": "attn.qkv.weight",
    "attn.out_proj.weight": "attn.proj.weight",
    "attn.out_proj.bias": "attn.proj.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
    "ls_1.gamma": "ls1.gamma",  # open_clip's LayerScale (ls_init_value), vidlit Block's
    "ls_2.gamma": "ls2.gamma",
}
_TOP_RENAMES = {
    "ln_pre.weight": "norm_pre.weight",
    "ln_pre.bias": "norm_pre.bias",
    "ln_post.weight": "norm_post.weight",
    "ln_post.bias": "norm_post.bias",
}


class CLIPLoadReport(NamedTuple):
    """What :meth:`CLIPVideoViT.load_clip_state_dict` found (unpacks as a 3-tuple).

    Attributes:
        missing: tensors the model has and the checkpoint lacks (left at their values), sorted, in
            the file's own names: official ones under the prefix the tower's keys had in it
            (``vision_encoder.ln_post.weight`` in a ViCLIP checkpoint, ``visual.ln_post.weight`` in an
            open_clip one, ``ln_post.weight`` in a bare tower).
        unexpected: checkpoint keys the model has no place for, sorted, named as ``missing``.
        proj: the tower's ``proj`` ``[width, embed]``, or ``None``; ``VideoTextModel.video_proj.weight``
            is its transpose.
    """

    missing: list[str]
    unexpected: list[str]
    proj: Tensor | None


def detect_clip_source(state_dict: Mapping[str, Any]) -> ClipSource:
    """The layout of a CLIP-family checkpoint: ``"viclip"`` or ``"openclip"``.

    Whole-model checkpoints are told apart by their prefix (``vision_encoder.`` / ``visual.``); a bare
    vision tower by its patch embedding (a Conv3d or a temporal embedding: ViCLIP; a Conv2d: CLIP).

    Raises:
        ValueError: for a checkpoint in neither layout, listing some of its keys.
    """
    keys = [_strip_wrappers(k, ("module.", "_orig_mod.")) for k in _unwrap(state_dict)]
    for source, prefix in CLIP_PREFIXES.items():
        if any(k.startswith(prefix) for k in keys):
            return source  # type: ignore[return-value]
    state = _unwrap(state_dict)
    conv = next((v for k, v in state.items() if k.endswith("conv1.weight") and isinstance(v, Tensor)), None)
    if any(k.endswith("temporal_positional_embedding") for k in keys) or (
        conv is not None and conv.ndim == 5
    ):
        return "viclip"
    if conv is not None and conv.ndim == 4:
        return "openclip"
    raise ValueError(
        "not a ViCLIP or CLIP vision checkpoint: no 'vision_encoder.*' or 'visual.*' keys and no "
        f"'conv1.weight'; keys start {sorted(keys)[:8]}"
    )


def clip_vision_weights(
    state_dict: Mapping[str, Any], source: ClipSource, where: str = "checkpoint"
) -> tuple[dict[str, Tensor], str]:
    """The vision tower's tensors of a CLIP-family checkpoint, under the tower's own (official) names.

    Unwraps ``{"model": ...}`` / ``{"state_dict": ...}`` nesting and ``module.`` / ``_orig_mod.``
    wrappers. With keys under the source's prefix (``vision_encoder.`` for ViCLIP, ``visual.`` for
    open_clip) only those are returned, prefix removed (the text tower and temperature are the text
    side's); without any, the checkpoint is taken to be a bare vision tower.

    Returns:
        the tensors, and the prefix removed from their keys (``""`` for a bare tower): put back, it
        names a key as the file does, for messages.

    Raises:
        ValueError: for an unknown ``source``, or a bare dict without ``conv1.weight``.
    """
    if source not in CLIP_PREFIXES:
        raise ValueError(f"source must be one of {sorted(CLIP_PREFIXES)}, got {source!r}")
    prefix = CLIP_PREFIXES[source]
    state = {
        _strip_wrappers(k, ("module.", "_orig_mod.")): v
        for k, v in _unwrap(state_dict).items()
        if isinstance(v, Tensor)
    }
    tower = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if tower:
        return tower, prefix
    if "conv1.weight" not in state:
        raise ValueError(
            f"{where}: no '{prefix}*' keys and no 'conv1.weight': not a {source} vision tower; "
            f"keys start {sorted(state)[:8]}"
        )
    return state, ""


def convert_clip_vision(
    tower: Mapping[str, Tensor], where: str = "checkpoint", prefix: str = ""
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Rename a vision tower's official keys to :class:`CLIPVideoViT`'s.

    A Conv2d patch weight ``[d, c, p, p]`` (image CLIP) is inflated to the Conv3d kernel
    ``[d, c, 1, p, p]``: with temporal kernel 1 each frame is embedded as the image model embeds an
    image. Keys of no known meaning are kept under their official name, so the caller reports them.

    Args:
        tower: the tensors :func:`clip_vision_weights` returns.
        where: the file, for messages.
        prefix: the prefix :func:`clip_vision_weights` returns, so that messages name keys as the
            file does.

    Returns:
        the renamed tensors (``cls_token`` ``[1, 1, d]``, ``pos_embed`` ``[1, 1 + h*w, d]``,
        ``temporal_embed`` ``[1, t, d]`` when present, ``patch_embed.proj.weight``, ``blocks.N.*``,
        ``norm_pre`` / ``norm_post``) and ``proj`` (``None`` when absent).

    Raises:
        ValueError: for a Conv3d patch kernel with more than one frame (ViCLIP's towers use 1).
    """
    out: dict[str, Tensor] = {}
    proj = None
    for key, value in tower.items():
        if key == "proj":
            proj = value
        elif key == "conv1.weight":
            if value.ndim == 4:
                value = value.unsqueeze(2)  # d c h w -> d c 1 h w
            elif value.ndim != 5 or value.shape[2] != 1:
                raise ValueError(
                    f"{where}: key '{prefix}conv1.weight': shape {tuple(value.shape)}; expected "
                    "[d, c, p, p] or [d, c, 1, p, p] (temporal kernel 1)"
                )
            out["patch_embed.proj.weight"] = value
        elif key == "class_embedding":
            out["cls_token"] = value.reshape(1, 1, -1)
        elif key == "positional_embedding":
            out["pos_embed"] = value.reshape(1, -1, value.shape[-1])
        elif key == "temporal_positional_embedding":
            out["temporal_embed"] = value.reshape(1, -1, value.shape[-1])
        elif key in _TOP_RENAMES:
            out[_TOP_RENAMES[key]] = value
        elif (match := _BLOCK.match(key)) is not None:
            index, rest = match.groups()
            if rest == "attn.in_proj_bias":
                q_bias, _, v_bias = value.chunk(3)  # softmax cancels the key bias
                out[f"blocks.{index}.attn.q_bias"] = q_bias
                out[f"blocks.{index}.attn.v_bias"] = v_bias
            elif rest in _BLOCK_RENAMES:
                out[f"blocks.{index}.{_BLOCK_RENAMES[rest]}"] = value
            else:
                out[key] = value
        else:
            out[key] = value
    return out, proj


def export_clip_vision(
    state_dict: Mapping[str, Tensor], proj: Tensor | None = None, prefix: str = "vision_encoder."
) -> dict[str, Tensor]:
    """The inverse of :func:`convert_clip_vision`: a CLIPVideoViT state dict in ViCLIP's layout.

    Args:
        state_dict: ``CLIPVideoViT.state_dict()``.
        proj: the ``[width, embed]`` projection to add as ``proj`` (``video_proj.weight.T``).
        prefix: put before every key (``"vision_encoder."``; ``""`` for a bare tower).

    Returns:
        official keys; ``in_proj_bias`` has a zero key part.
    """
    top = {v: k for k, v in _TOP_RENAMES.items()}
    block = {v: k for k, v in _BLOCK_RENAMES.items()}
    out: dict[str, Tensor] = {}
    q_biases: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key == "patch_embed.proj.weight":
            out["conv1.weight"] = value
        elif key == "cls_token":
            out["class_embedding"] = value.reshape(-1)
        elif key == "pos_embed":
            out["positional_embedding"] = value.reshape(-1, value.shape[-1])
        elif key == "temporal_embed":
            out["temporal_positional_embedding"] = value
        elif key in top:
            out[top[key]] = value
        elif (match := re.match(r"^blocks\.(\d+)\.(.+)$", key)) is not None:
            index, rest = match.groups()
            if rest == "attn.q_bias":
                q_biases[index] = value
            elif rest == "attn.v_bias":
                continue
            else:
                out[f"transformer.resblocks.{index}.{block[rest]}"] = value
        else:
            out[key] = value
    for index, q_bias in q_biases.items():
        v_bias = state_dict[f"blocks.{index}.attn.v_bias"]
        out[f"transformer.resblocks.{index}.attn.in_proj_bias"] = torch.cat(
            (q_bias, torch.zeros_like(q_bias), v_bias)
        )
    if proj is not None:
        out["proj"] = proj
    return {prefix + k: v for k, v in out.items()}


def official_key(name: str) -> str:
    """The official (ViCLIP / CLIP) name of a CLIPVideoViT key, for messages: ``norm_post.weight`` ->
    ``ln_post.weight``, ``blocks.3.attn.q_bias`` -> ``transformer.resblocks.3.attn.in_proj_bias``."""
    top = {v: k for k, v in _TOP_RENAMES.items()} | {
        "patch_embed.proj.weight": "conv1.weight",
        "cls_token": "class_embedding",
        "pos_embed": "positional_embedding",
        "temporal_embed": "temporal_positional_embedding",
    }
    if name in top:
        return top[name]
    if (match := re.match(r"^blocks\.(\d+)\.(.+)$", name)) is not None:
        index, rest = match.groups()
        block = {v: k for k, v in _BLOCK_RENAMES.items()}
        if rest in ("attn.q_bias", "attn.v_bias"):
            return f"transformer.resblocks.{index}.attn.in_proj_bias"
        if rest in block:
            return f"transformer.resblocks.{index}.{block[rest]}"
    return name


def clip_vision_config(
    tower: Mapping[str, Tensor], where: str = "checkpoint", num_heads: int | None = None, prefix: str = ""
) -> dict[str, Any]:
    """:class:`CLIPVideoViT` arguments that a vision tower's official weights imply.

    Width, patch, depth, MLP ratio, the configured resolution (square position grid times patch) and
    frame count (the temporal table's length; ViCLIP's 8 without one) come from the shapes. The head
    count is not in the weights: ``None`` takes the standard one of the width (B 12, L / H 16).
    ``prefix`` (:func:`clip_vision_weights`'s) puts the file's names on the keys in messages.

    Raises:
        ValueError: without ``conv1.weight`` / ``positional_embedding``, a non-square grid, or a width of
            no standard head count (pass ``num_heads``).
    """
    for key in ("conv1.weight", "positional_embedding"):
        if key not in tower:
            raise ValueError(
                f"{where}: missing key '{prefix}{key}'; keys start {sorted(prefix + k for k in tower)[:8]}"
            )
    conv = tower["conv1.weight"]
    embed_dim, in_chans, patch = conv.shape[0], conv.shape[1], conv.shape[-1]
    side = _square_side(tower["positional_embedding"].reshape(-1, embed_dim).shape[0] - 1, where, prefix)
    depth = len({int(m.group(1)) for k in tower if (m := _BLOCK.match(k))})
    if num_heads is None:
        if embed_dim not in _HEADS_BY_WIDTH:
            raise ValueError(f"{where}: cannot infer num_heads for width {embed_dim}; pass num_heads=...")
        num_heads = _HEADS_BY_WIDTH[embed_dim]
    config: dict[str, Any] = {
        "img_size": side * patch,
        "patch_size": patch,
        "in_chans": in_chans,
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": num_heads,
    }
    if "temporal_positional_embedding" in tower:
        config["num_frames"] = tower["temporal_positional_embedding"].shape[-2]
    fc = tower.get("transformer.resblocks.0.mlp.c_fc.weight")
    if fc is not None:
        config["mlp_ratio"] = fc.shape[0] / embed_dim
    if "transformer.resblocks.0.ls_1.gamma" in tower:
        config["init_values"] = 1.0  # any value creates LayerScale; the weights replace it
    return config


def _square_side(num_positions: int, where: str, prefix: str = "") -> int:
    side = round(num_positions**0.5)
    if side * side != num_positions:
        raise ValueError(
            f"{where}: key '{prefix}positional_embedding': {num_positions} patch positions are not a "
            "square grid"
        )
    return side
