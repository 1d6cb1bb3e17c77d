"""Error types the command line reports as one line (``vidlit: error: ...``) instead of a traceback."""

from __future__ import annotations

__all__ = ["ConfigurationError"]


class ConfigurationError(ValueError):
    """Settings that cannot work together, named by their config keys (e.g. a head that needs classes
    over a data module read without labels). Raised where the conflict is found, which may be
    inside a jsonargparse link; ``vidlit.cli`` unwraps it to its one line."""
