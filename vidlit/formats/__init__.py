"""Task-family contracts: one module per family, the one place its pieces agree.

Each ``vidlit.formats.<family>`` module holds, for one task family:

- the official annotation schema as pydantic models (:class:`~vidlit.formats._schema.Record`),
  with range and cross-field rules, validated when a reader first reads a file
  (:func:`~vidlit.formats._schema.validate` raises one line naming file, record and key);
- the batch, target and prediction types that collate returns and heads, metrics and
  submission writers accept;
- the family's constants and unit conventions (fps, feature stride, seconds <-> steps).

Readers (``vidlit.data``), synthetic writers (``vidlit.data.synth``), heads and metrics import
their family's contract module and never each other.
"""

from vidlit.formats._schema import AnnotationError, validate

__all__ = ["AnnotationError", "validate"]
