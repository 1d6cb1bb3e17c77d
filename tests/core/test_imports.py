"""vidlit.core.imports.import_path: the one importer of dotted paths from configs."""

from __future__ import annotations

import pytest

from vidlit.core.constants import IMAGENET_DEFAULT_MEAN
from vidlit.core.imports import import_path


def test_dotted_and_colon_paths():
    assert import_path("vidlit.core.constants.IMAGENET_DEFAULT_MEAN") is IMAGENET_DEFAULT_MEAN
    assert import_path("vidlit.core.constants:IMAGENET_DEFAULT_MEAN") is IMAGENET_DEFAULT_MEAN


def test_bare_names_resolve_in_the_search_modules():
    assert import_path("IMAGENET_DEFAULT_MEAN", search=("vidlit.core.imports", "vidlit.core.constants")) == (
        IMAGENET_DEFAULT_MEAN
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("Block", r"^block_classes: 'Block' is not an import path like 'package\.module\.Class'$"),
        ("nopackage.layers.Block", r"^block_classes: cannot import 'nopackage\.layers\.Block': .*nopackage"),
        (
            "vidlit.core.constants.NOPE",
            r"^block_classes: cannot import .*'vidlit\.core\.constants' has no 'NOPE'$",
        ),
    ],
)
def test_errors_are_one_line_naming_the_key(path, message):
    with pytest.raises(ValueError, match=message):
        import_path(path, "block_classes")


def test_every_caller_uses_it():
    """No second importer: cli, extract, strategies and the synth registry all call import_path."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "vidlit"
    importers = []
    for file in root.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "import_module":
                importers.append(file.relative_to(root).as_posix())
    assert set(importers) == {"core/imports.py"}
