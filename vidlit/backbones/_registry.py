"""Backbone name registry, after timm's ``register_model`` / ``create_model``.

A registered function takes only keyword overrides and returns a model; its name is the
backbone's name. Sizes are what users pick by name, so every size is one tiny function. A function
declares the width of the features it provides as the default of its ``embed_dim`` keyword, so
:func:`backbone_width` knows it without building the model (the CLI sizes heads with it).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
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


def _lookup(name: str) -> Callable[..., nn.Module]:
    if name not in _BACKBONES:
        close = difflib.get_close_matches(name, _BACKBONES, n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"registered: {', '.join(list_backbones())}"
        raise ValueError(f"unknown backbone {name!r}; {hint}")
    return _BACKBONES[name]


def declared_width(builder: Callable[..., Any]) -> int | None:
    """The feature width a backbone class or model function declares without being built.

    Read from the default of its ``embed_dim`` argument (``VideoViT``: 768; a registered size:
    its own width), else from an integer ``embed_dim`` attribute of the class or function.

    Returns:
        the width, or ``None`` if the builder declares none.
    """
    try:
        param = inspect.signature(builder).parameters.get("embed_dim")
    except (TypeError, ValueError):  # a builtin or a C extension without a signature
        param = None
    if param is not None and isinstance(param.default, int):
        return param.default
    width = getattr(builder, "embed_dim", None)
    return width if isinstance(width, int) else None


def backbone_width(name: str, **overrides: Any) -> int:
    """Width of the features a registered backbone provides, without building it.

    Args:
        name: a name from :func:`list_backbones`.
        **overrides: the arguments :func:`create_backbone` would get; an ``embed_dim`` among them
            is the width.

    Raises:
        ValueError: for an unknown name, or a model function that declares no width (give its
            ``embed_dim`` keyword a default).
    """
    builder = _lookup(name)
    if overrides.get("embed_dim") is not None:
        return int(overrides["embed_dim"])
    width = declared_width(builder)
    if width is None:
        raise ValueError(
            f"backbone {name!r} ({builder.__module__}.{builder.__qualname__}) declares no width: give "
            f"its embed_dim keyword a default, or pass embed_dim"
        )
    return width


def create_backbone(name: str, checkpoint_path: str | Path | None = None, **overrides: Any) -> nn.Module:
    """Build a registered backbone by name.

    Args:
        name: a name from :func:`list_backbones`, e.g. ``"vit_base_patch16_16x224"``.
        checkpoint_path: weights to load after construction, in any layout the model's
            ``load_pretrained`` reads (for :class:`~vidlit.backbones.VideoViT`: a folder its
            ``save_pretrained`` wrote, whose config must match the named size and overrides but for
            dropout / stochastic depth, a transformers
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
    model = _lookup(name)(**overrides)
    if checkpoint_path is not None:
        load = getattr(model, "load_pretrained", None)
        if load is None:
            raise ValueError(f"backbone {name!r} cannot load checkpoints (no load_pretrained method)")
        load(checkpoint_path)
    return model
