"""Small file helpers shared by the data readers: atomic JSON writes, JSON reads with located errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json_atomic(document: Any, path: str | Path) -> Path:
    """Write ``document`` as JSON through a temporary file and a rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document))
    tmp.replace(path)
    return path


def read_json(path: str | Path, what: str = "annotation file") -> Any:
    """Load a JSON file; a missing file or invalid JSON raises with the path (and line, column).

    Raises:
        FileNotFoundError: ``{path}: {what} not found``.
        ValueError: ``{path}: line L column C: invalid JSON: ...``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno} column {e.colno}: invalid JSON: {e.msg}") from None


def require(obj: Any, key: str, where: str, path: str | Path) -> Any:
    """``obj[key]``, or a ValueError naming the file and the place (``{path}: {where}: missing key``)."""
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{path}: {where}: missing key {key!r}")
    return obj[key]
