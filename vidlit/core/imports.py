"""The one importer of dotted paths from configs (``class_path``, ``block_classes``, generator tables),
and of optional packages (:func:`importable`)."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from typing import Any

__all__ = ["import_path", "importable"]


@functools.cache
def importable(module: str) -> bool:
    """Whether ``module`` imports (tried once per process). Installed is not enough: torchcodec
    without FFmpeg's shared libraries is found but fails to import (``OSError`` / ``RuntimeError``)."""
    try:
        importlib.import_module(module)
    except (ImportError, OSError, RuntimeError):
        return False
    return True


def import_path(path: str, what: str = "class_path", search: Sequence[str] = ()) -> Any:
    """The object an import path names: ``"package.module.Name"`` or ``"package.module:Name"``.

    Args:
        path: the path.
        what: the config key the path came from, for error messages.
        search: modules in which a bare name (no module part) is looked up, in order, e.g.
            ``("vidlit.backbones",)`` so that ``create_backbone`` resolves as in YAML.

    Raises:
        ValueError: one line naming ``what`` and the path: a bare name found in no ``search``
            module, a module that does not import, or a module without the attribute.
    """
    path = str(path)
    module_name, sep, attribute = path.rpartition(":") if ":" in path else path.rpartition(".")
    if not sep:
        for module_name in search:
            module = importlib.import_module(module_name)
            if hasattr(module, path):
                return getattr(module, path)
        example = f"{search[0]}.{path}" if search else "package.module.Class"
        raise ValueError(f"{what}: {path!r} is not an import path like {example!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{what}: cannot import {path!r}: {err}") from None
    if not hasattr(module, attribute):
        raise ValueError(f"{what}: cannot import {path!r}: {module_name!r} has no {attribute!r}")
    return getattr(module, attribute)
