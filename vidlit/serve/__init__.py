"""``vidlit serve``: an HTTP API and a pointing page on top of :mod:`vidlit.inference`.

Needs the ``serve`` extra (``pip install "vidlit[serve]"``: fastapi, uvicorn, python-multipart).
"""

from __future__ import annotations


def serve_main(args: list[str]) -> None:
    """``vidlit serve``: see :func:`vidlit.serve.app.serve_main`."""
    from vidlit.serve.app import serve_main as main

    main(args)
