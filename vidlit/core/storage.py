"""An output folder on any fsspec file system: local paths, ``file://``, ``s3://``, ``gs://``, ``memory://``.

``vidlit curate`` and ``vidlit extract`` write through :class:`OutputFolder`, so their shards,
feature files, manifests and done markers land on object storage as they land on a local disk.
Every write is atomic where the file system allows it:

- local folders: a temporary file next to the target, fsync, rename (:func:`~vidlit.core.io.atomic_open`);
- object stores (S3, GCS, Azure, ``memory://``): one PUT (``pipe_file``); an object store
  publishes an object only once it is complete, so a reader never sees half a file;
- other file systems (SFTP, HDFS, ...): a temporary name in the same folder, then a rename.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from vidlit.core.io import atomic_open, folder_files, parse_json

__all__ = ["OutputFolder"]

# protocols whose PUT publishes a whole object at once (no rename needed, and rename would be a copy)
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "memory", "hf"}


class OutputFolder:
    """A folder given as a local path or an fsspec URL; names inside it are ``/``-separated.

    Args:
        url: ``data/curated``, ``file:///data/curated``, ``s3://bucket/curated``, ``memory://x``.
    """

    def __init__(self, url: str | os.PathLike[str]):
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        self.url = os.fspath(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.root = self.root.rstrip("/") or "/"
        self.local = isinstance(self.fs, LocalFileSystem)
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        self.object_store = protocol in _OBJECT_STORES

    def __repr__(self) -> str:
        return f"OutputFolder({self.url!r})"

    def __str__(self) -> str:
        return self.url

    def path(self, name: str) -> str:
        """The file system path of ``name`` (a local path, or the URL's path without protocol)."""
        return f"{self.root}/{name}"

    def url_of(self, name: str) -> str:
        """``name`` as a URL fsspec opens anywhere (a local path stays a plain path)."""
        return self.path(name) if self.local else f"{self.url.rstrip('/')}/{name}"

    def local_path(self, name: str = "") -> Path:
        """``name`` as a local :class:`~pathlib.Path`; only for local folders."""
        if not self.local:
            raise ValueError(f"{self.url}: not a local folder")
        return Path(self.path(name)) if name else Path(self.root)

    def makedirs(self, name: str = "") -> None:
        """Create the folder (and ``name`` inside it); object stores need no folders."""
        if not self.object_store:
            self.fs.makedirs(self.path(name) if name else self.root, exist_ok=True)

    def exists(self, name: str) -> bool:
        return self.fs.isfile(self.path(name))

    def read_bytes(self, name: str) -> bytes:
        """The bytes of ``name``.

        Raises:
            FileNotFoundError: naming the file.
        """
        try:  # one request: cat_file raises for a missing file
            return self.fs.cat_file(self.path(name))
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url_of(name)}: not found") from None

    def read_json(self, name: str, what: str) -> Any:
        """A JSON file; invalid JSON raises one line with its URL, line and column."""
        try:
            data = self.read_bytes(name)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url_of(name)}: {what} not found") from None
        return parse_json(data, self.url_of(name), what)

    def write(self, name: str, data: bytes | str) -> str:
        """Write ``data`` (text as UTF-8) to ``name`` atomically (module docstring); returns its URL."""
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if self.local:
            with atomic_open(self.path(name)) as f:
                f.write(payload)
        elif self.object_store:
            self.fs.pipe_file(self.path(name), payload)
        else:
            folder, _, base = self.path(name).rpartition("/")
            tmp = f"{folder}/.{base}.{uuid.uuid4().hex}.tmp"
            self.fs.pipe_file(tmp, payload)
            self.fs.mv(tmp, self.path(name))
        return self.url_of(name)

    def write_json(self, name: str, document: Any) -> str:
        """Write ``document`` as JSON atomically; returns its URL."""
        return self.write(name, json.dumps(document))

    def remove(self, name: str) -> None:
        """Delete ``name`` if it exists."""
        try:  # one request, not an existence check first
            self.fs.rm_file(self.path(name))
        except FileNotFoundError:
            pass

    def list(self, folder: str = "") -> list[str]:
        """Names (relative to this folder) of the files directly in ``folder``, sorted."""
        prefix = f"{folder}/" if folder else ""
        # one listing with each entry's type (an object store answers it in one request)
        return sorted(prefix + n for n in folder_files(self.fs, self.path(folder) if folder else self.root))
