"""Backbone name registry, after timm's ``register_model`` / ``create_model``.

A registered function takes only keyword overrides and returns a model; its name is the
backbone's name. Sizes are what users pick by name, so every size is one tiny function.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

ModelFn = TypeVar("ModelFn", bound=Callable[..., nn.Module])

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(fn: ModelFn) -> ModelFn:
    """Register a model function under its own name (decorator).

    Re-registering a name from the same module (a reload) replaces the entry; the same name from
    another module is a clash.

    Raises:
        ValueError: if another module already registered the name.
    """
    name = fn.__name__
    existing = _BACKBONES.get(name)
    if existing is not None and existing.__module__ != fn.__module__:
        raise ValueError(f"backbone {name!r} is already registered by {existing.__module__}")
    _BACKBONES[name] = fn
    return fn


def list_backbones(pattern: str = "*") -> list[str]:
    """Sorted names of registered backbones, optionally filtered by a shell-style ``pattern``."""
    return sorted(name for name in _BACKBONES if fnmatch.fnmatchcase(name, pattern))


def create_backbone(name: str, checkpoint_path: str | Path | None = None, **overrides: Any) -> nn.Module:
    """Build a registered backbone by name.

    Args:
        name: a name from :func:`list_backbones`, e.g. ``"vit_base_patch16_16x224"``.
        checkpoint_path: weights to load after construction, in any layout the model's
            ``load_pretrained`` reads (for :class:`~vidlit.backbones.VideoViT`: a transformers
            VideoMAE folder, an original VideoMAE / InternVideo ``.pth``, the ``backbone.pt`` of
            :class:`~vidlit.tasks.ExportBackbone`, or a Lightning ``.ckpt`` of
            :class:`~vidlit.tasks.TaskModule`, :class:`~vidlit.tasks.MVMPretrain` or
            :class:`~vidlit.tasks.VideoTextPretrain`, read with ``weights_only=True``).
        **overrides: constructor arguments replacing the named size's defaults, e.g.
            ``drop_path_rate=0.1`` or ``num_frames=8``.

    Returns:
        the model.

    Raises:
        ValueError: for an unknown name, listing the closest registered names.
    """
    if name not in _BACKBONES:
        close = difflib.get_close_matches(name, _BACKBONES, n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"registered: {', '.join(list_backbones())}"
        raise ValueError(f"unknown backbone {name!r}; {hint}")
    model = _BACKBONES[name](**overrides)
    if checkpoint_path is not None:
        load = getattr(model, "load_pretrained", None)
        if load is None:
            raise ValueError(f"backbone {name!r} cannot load checkpoints (no load_pretrained method)")
        load(checkpoint_path)
    return model
