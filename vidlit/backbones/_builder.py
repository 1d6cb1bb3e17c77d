"""Backbone builder: checkpoint reading and foreign-layout remapping (timm's ``_builder.py``).

Everything a backbone needs to read weights it did not write itself, kept out of the model
files: one weights file or a transformers folder read with ``weights_only=True``
(:func:`load_checkpoint_file`); the backbone cut out of a Lightning checkpoint of a vidlit
module (:func:`lightning_backbone_weights`, at the prefix the module declares); VideoMAE /
InternVideo / transformers key layouts renamed to VideoViT's (:func:`remap_checkpoint_keys`); and
the sizes a checkpoint implies (:func:`config_from_hf`, :func:`config_from_state_dict`). A model
file keeps only its own ``checkpoint_filter_fn``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

from vidlit.layers.tubelet import to_pair

__all__ = [
    "BACKBONE_PREFIX_KEY",
    "config_from_hf",
    "config_from_state_dict",
    "is_lightning_checkpoint",
    "lightning_backbone_prefixes",
    "lightning_backbone_weights",
    "load_checkpoint_file",
    "register_backbone_prefix",
    "remap_checkpoint_keys",
]

# -- foreign key layouts -------------------------------------------------------------------------

# Keys of heads, decoders and wrappers that a backbone never loads.
_DROP_PREFIXES = ("head.", "cls_head.", "classifier.", "decoder.", "encoder_to_decoder.", "fc_dropout.")
_DROP_KEYS = {"mask_token", "embeddings.position_embeddings", "position_embeddings"}
# Wrappers around the backbone's keys: DDP, torch.compile, mmaction / Lightning, transformers' task models.
_STRIP_PREFIXES = ("module.", "_orig_mod.", "backbone.", "videomae.")

_HF_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_HF_BLOCK_RENAMES = {
    "attention.attention.q_bias": "attn.q_bias",
    "attention.attention.v_bias": "attn.v_bias",
    "attention.attention.query.bias": "attn.q_bias",
    "attention.attention.value.bias": "attn.v_bias",
    "attention.output.dense.weight": "attn.proj.weight",
    "attention.output.dense.bias": "attn.proj.bias",
    "intermediate.dense.weight": "mlp.fc1.weight",
    "intermediate.dense.bias": "mlp.fc1.bias",
    "output.dense.weight": "mlp.fc2.weight",
    "output.dense.bias": "mlp.fc2.bias",
    "layernorm_before.weight": "norm1.weight",
    "layernorm_before.bias": "norm1.bias",
    "layernorm_after.weight": "norm2.weight",
    "layernorm_after.bias": "norm2.bias",
}
_HF_TOP_RENAMES = {
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_ORIGINAL_RENAMES = {"gamma_1": "ls1.gamma", "gamma_2": "ls2.gamma"}


def _unwrap(checkpoint: Mapping[str, Any]) -> Mapping[str, Tensor]:
    # Training scripts nest the weights: {"model": ...} (VideoMAE), {"module": ...} (DeepSpeed),
    # {"state_dict": ...} (Lightning); the first such entry holding tensors wins.
    while not any(isinstance(v, Tensor) for v in checkpoint.values()):
        for key in ("model", "module", "state_dict", "model_state"):
            if isinstance(checkpoint.get(key), Mapping):
                checkpoint = checkpoint[key]
                break
        else:
            raise ValueError(f"no tensors in checkpoint; top-level keys: {sorted(checkpoint)[:20]}")
    return checkpoint


def _strip_wrappers(key: str, prefixes: tuple[str, ...] | None = None) -> str:
    # Wrappers nest in any order: a Lightning module's "backbone." around a torch.compile'd
    # backbone's "_orig_mod.", or "_orig_mod." of a compiled task module around "backbone.".
    prefixes = _STRIP_PREFIXES if prefixes is None else prefixes
    while prefix := next((p for p in prefixes if key.startswith(p)), None):
        key = key[len(prefix) :]
    return key


def remap_checkpoint_keys(state_dict: Mapping[str, Any]) -> dict[str, Tensor]:
    """Rename a foreign state dict to VideoViT's keys, without looking at a model.

    Handles transformers' ``VideoMAEModel`` / ``VideoMAEForVideoClassification`` /
    ``VideoMAEForPreTraining`` layout (separate ``query``/``key``/``value`` weights are fused
    into ``qkv``) and the original VideoMAE / InternVideo layout (``encoder.`` prefixes of
    pretraining checkpoints, ``gamma_1``/``gamma_2`` LayerScale, timm-style ``qkv.bias``), nested
    under ``model``/``module``/``state_dict`` or not. Heads, decoders and mask tokens are dropped.
    vidlit's own files load too: the plain ``backbone.pt`` that
    :class:`~vidlit.tasks.ExportBackbone` writes, and ``backbone.``-prefixed keys (also around a
    compiled backbone's ``_orig_mod.``). :func:`load_checkpoint_file` first cuts the backbone out
    of a Lightning checkpoint of any vidlit module (:func:`lightning_backbone_weights`).

    Args:
        state_dict: the loaded checkpoint.

    Returns:
        a new dict with VideoViT key names.

    Raises:
        ValueError: if a block's query, key and value weights are incomplete.
    """
    out: dict[str, Tensor] = {}
    qkv: dict[int, dict[str, Tensor]] = {}
    for key, value in _unwrap(state_dict).items():
        if not isinstance(value, Tensor):
            continue
        key = _strip_wrappers(key)
        if key in _DROP_KEYS or key.startswith(_DROP_PREFIXES):
            continue
        if key in _HF_TOP_RENAMES:
            out[_HF_TOP_RENAMES[key]] = value
            continue
        if match := _HF_LAYER.match(key):
            index, rest = int(match.group(1)), match.group(2)
            if rest in _HF_BLOCK_RENAMES:
                out[f"blocks.{index}.{_HF_BLOCK_RENAMES[rest]}"] = value
            elif (part := re.fullmatch(r"attention\.attention\.(query|key|value)\.weight", rest)) is not None:
                qkv.setdefault(index, {})[part.group(1)] = value
            elif rest != "attention.attention.key.bias":  # softmax cancels a key bias
                out[key] = value  # left for the key check to report
            continue
        if key.startswith("encoder."):  # VideoMAE pretraining: encoder.blocks..., encoder.norm, ...
            key = key[len("encoder.") :]
        name, _, leaf = key.rpartition(".")
        if leaf in _ORIGINAL_RENAMES:
            key = f"{name}.{_ORIGINAL_RENAMES[leaf]}"
        if key.endswith(".attn.qkv.bias"):  # timm layout: one bias; keep q and v, drop k
            q_bias, _, v_bias = value.chunk(3)
            out[key.replace("qkv.bias", "q_bias")] = q_bias
            out[key.replace("qkv.bias", "v_bias")] = v_bias
            continue
        out[key] = value
    for index, parts in sorted(qkv.items()):
        if set(parts) != {"query", "key", "value"}:
            raise ValueError(f"block {index}: found only {sorted(parts)} of the query/key/value weights")
        out[f"blocks.{index}.attn.qkv.weight"] = torch.cat((parts["query"], parts["key"], parts["value"]))
    return out


def _read_weights(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    # VideoMAE's training script pickles its argparse Namespace next to the weights.
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises UnpicklingError or RuntimeError, depending on version
            raise ValueError(
                f"{path}: cannot be read with torch.load(weights_only=True) ({err}); re-save only "
                f"the weights, e.g. torch.save(checkpoint['model'], 'weights.pth')"
            ) from err


# Where vidlit's Lightning modules keep the video backbone. Each module declares it (a
# ``backbone_prefix`` class attribute: TaskModule and MVMPretrain ``backbone.``, VideoTextPretrain
# its video tower ``model.video.``), registers it here when vidlit.tasks is imported, and records it
# in the checkpoints it writes, under BACKBONE_PREFIX_KEY, so that a file names its own prefix.
_LIGHTNING_PREFIXES: dict[str, str] = {}
BACKBONE_PREFIX_KEY = "vidlit_backbone_prefix"

LightningModuleType = TypeVar("LightningModuleType", bound=type)


def register_backbone_prefix(cls: LightningModuleType) -> LightningModuleType:
    """Register a Lightning module class's ``backbone_prefix`` (class decorator).

    :func:`lightning_backbone_weights` tries the registered prefixes on checkpoints that do not
    record their own (those written before modules recorded it).

    Raises:
        ValueError: if the class declares no ``backbone_prefix`` string ending in ``"."``.
    """
    prefix = getattr(cls, "backbone_prefix", None)
    if not isinstance(prefix, str) or not prefix.endswith("."):
        raise ValueError(
            f"{cls.__qualname__}.backbone_prefix must be a key prefix ending in '.', got {prefix!r}"
        )
    _LIGHTNING_PREFIXES[f"{cls.__module__}.{cls.__qualname__}"] = prefix
    return cls


def lightning_backbone_prefixes() -> tuple[str, ...]:
    """The backbone prefixes that registered Lightning modules declare, in registration order, distinct."""
    return tuple(dict.fromkeys(_LIGHTNING_PREFIXES.values()))


# wrappers around a whole module's keys: DDP / DeepSpeed, torch.compile of the task module
_OUTER_WRAPPERS = ("module.", "_orig_mod.")


def is_lightning_checkpoint(checkpoint: Mapping[str, Any]) -> bool:
    """Whether a loaded file is a Lightning checkpoint (``trainer.save_checkpoint``, ``last.ckpt``)."""
    return "pytorch-lightning_version" in checkpoint and isinstance(checkpoint.get("state_dict"), Mapping)


def lightning_backbone_weights(
    checkpoint: Mapping[str, Any], source: str = "checkpoint"
) -> dict[str, Tensor]:
    """The video backbone's weights in a Lightning checkpoint of a vidlit module, prefix stripped.

    Takes the prefix the checkpoint records (``BACKBONE_PREFIX_KEY``, written by the module that
    saved it) or else the first of :func:`lightning_backbone_prefixes` that its ``state_dict`` uses
    (``backbone.`` of :class:`~vidlit.tasks.TaskModule` / :class:`~vidlit.tasks.MVMPretrain`,
    ``model.video.`` of :class:`~vidlit.tasks.VideoTextPretrain`), after removing DDP / compile
    wrappers around the whole module, and returns those weights under the backbone's own names.
    Heads, decoders and the text tower are left out.

    Args:
        checkpoint: the loaded Lightning checkpoint.
        source: the file, for error messages.

    Raises:
        ValueError: if no key has a backbone prefix, listing the prefixes the checkpoint has.
    """
    state: dict[str, Tensor] = {}
    for key, value in checkpoint["state_dict"].items():
        state[_strip_wrappers(key, _OUTER_WRAPPERS)] = value
    recorded = checkpoint.get(BACKBONE_PREFIX_KEY)
    candidates = (recorded,) if isinstance(recorded, str) else lightning_backbone_prefixes()
    if not candidates:
        raise ValueError(
            f"{source}: a Lightning checkpoint that does not record its backbone's key prefix; import "
            f"vidlit.tasks first, so that its modules declare theirs"
        )
    for prefix in candidates:
        found = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if found:
            return found
    # the module's own submodules, two levels deep ("head.cls_head", "model.text", "decoder.blocks")
    prefixes = sorted({".".join(k.split(".")[: min(2, k.count("."))]) + "." for k in state if "." in k})
    raise ValueError(
        f"{source}: a Lightning checkpoint without video backbone weights: no key starts with "
        f"{' or '.join(map(repr, candidates))}; its keys start with {prefixes} "
        f"(top-level keys: {sorted(k for k in state if '.' not in k)})"
    )


def load_checkpoint_file(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Read a transformers folder or one weights file.

    Args:
        path: a folder with ``config.json`` and (possibly sharded) ``model.safetensors`` or
            ``pytorch_model.bin``, or a ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` file,
            including a Lightning checkpoint of a vidlit module (``.ckpt``), from which only the
            backbone's weights are returned (:func:`lightning_backbone_weights`).

    Returns:
        the raw state dict and the folder's parsed ``config.json`` (``None`` for a file).

    Raises:
        FileNotFoundError: if the path, the config or the weights are missing.
        ValueError: a file that ``torch.load(weights_only=True)`` cannot read, or a Lightning
            checkpoint without backbone weights.
    """
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_file():
        weights = _read_weights(path)
        if is_lightning_checkpoint(weights):
            weights = lightning_backbone_weights(weights, str(path))
        return weights, None
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} is a folder without config.json: not a transformers checkpoint")
    config = json.loads(config_file.read_text())
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return _read_weights(path / name), config
        index = path / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state_dict: dict[str, Any] = {}
            for shard in shards:
                state_dict.update(_read_weights(path / shard))
            return state_dict, config
    raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin (or their .index.json)")


def config_from_hf(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """VideoViT arguments from a transformers ``VideoMAEConfig`` (a folder's parsed ``config.json``).

    Dropout and ``norm_pix_loss`` are training choices of the original run, not architecture, so
    they are not carried over.

    Raises:
        ValueError: for another ``model_type`` or an activation VideoViT does not have.
    """
    if config.get("model_type", "videomae") != "videomae":
        raise ValueError(f"{path}/config.json: model_type {config['model_type']!r} is not 'videomae'")
    act = config.get("hidden_act", "gelu")
    if act != "gelu":
        raise ValueError(
            f"{path}/config.json: hidden_act {act!r} is not supported (VideoViT uses exact GELU)"
        )
    hidden = config.get("hidden_size", 768)
    return {
        "img_size": to_pair(config.get("image_size", 224)),
        "patch_size": to_pair(config.get("patch_size", 16)),
        "num_frames": config.get("num_frames", 16),
        "tubelet_size": config.get("tubelet_size", 2),
        "in_chans": config.get("num_channels", 3),
        "embed_dim": hidden,
        "depth": config.get("num_hidden_layers", 12),
        "num_heads": config.get("num_attention_heads", 12),
        "mlp_ratio": config.get("intermediate_size", 4 * hidden) / hidden,
        # transformers 4.x wrote "qkv_bias", 5.x writes "qv_bias"; both mean q and v biases.
        "qkv_bias": config.get("qv_bias", config.get("qkv_bias", True)),
        "use_mean_pooling": config.get("use_mean_pooling", True),
        "norm_eps": config.get("layer_norm_eps", 1e-12),
        # VideoMAEForVideoClassification builds fc_norm as nn.LayerNorm(hidden_size): eps 1e-5.
        "fc_norm_eps": 1e-5,
        "pos_embed_type": "sincos",
    }


# Heads of the standard widths (VideoMAE / InternVideo ViT-S/B/L/H, ViT-g); head count is not in the weights.
_HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16}


def config_from_state_dict(
    state_dict: Mapping[str, Tensor], path: Path, num_heads: int | None
) -> dict[str, Any]:
    """VideoViT arguments implied by a state dict in VideoViT's key layout (after remapping).

    Args:
        state_dict: the remapped weights.
        path: the file, for error messages.
        num_heads: the head count, which weights do not show; ``None`` takes the standard one
            of the width (ViT-S 6, ViT-B 12, ViT-L / H / g 16).

    Raises:
        ValueError: without a Conv3d tubelet embedding, or for a width of no standard head count.
    """
    weight = state_dict.get("patch_embed.proj.weight")
    if weight is None or weight.ndim != 5:
        raise ValueError(
            f"{path}: no Conv3d 'patch_embed.proj.weight' found; keys: {sorted(state_dict)[:10]}..."
        )
    embed_dim, in_chans, tubelet, patch_h, patch_w = weight.shape
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))}
    if num_heads is None:
        if embed_dim not in _HEADS_BY_WIDTH:
            raise ValueError(f"{path}: cannot infer num_heads for width {embed_dim}; pass num_heads=...")
        num_heads = _HEADS_BY_WIDTH[embed_dim]
    config: dict[str, Any] = {
        "patch_size": (patch_h, patch_w),
        "tubelet_size": tubelet,
        "in_chans": in_chans,
        "embed_dim": embed_dim,
        "depth": max(blocks) + 1 if blocks else 0,
        "num_heads": num_heads,
        "qkv_bias": "blocks.0.attn.q_bias" in state_dict,
        "use_mean_pooling": "fc_norm.weight" in state_dict and "norm.weight" not in state_dict,
        "pos_embed_type": "learned" if "pos_embed" in state_dict else "sincos",
    }
    if "blocks.0.mlp.fc1.weight" in state_dict:
        config["mlp_ratio"] = state_dict["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim
    if "blocks.0.ls1.gamma" in state_dict:
        config["init_values"] = 1.0  # any non-zero value creates LayerScale; the weights replace it
    return config
