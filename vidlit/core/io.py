"""Small file-writing helpers shared by the data readers."""

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
