"""Small file helpers shared across vidlit: atomic writes, JSON / JSON Lines reads with located errors.

Every file vidlit writes for later runs to read (submissions, features, shards, manifests,
checkpoints) goes through :func:`atomic_open`: the bytes land in a temporary file next to the
target, are flushed to disk, and the file is renamed over the target, so a run killed mid-write
leaves the old file (or none), never half a file.
"""

from __future__ import annotations

import codecs
import fcntl
import json
import os
import posixpath
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "ListedFiles",
    "as_folder",
    "as_path",
    "atomic_open",
    "confined_path",
    "confined_url",
    "file_exists",
    "folder_files",
    "is_url",
    "join_path",
    "path_name",
    "path_suffix",
    "read_bytes",
    "read_json",
    "read_jsonl",
    "require",
    "url_listing",
    "write_atomic",
    "write_json_atomic",
]


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any writer thread
    # exists (a checkpoint thread racing a set-and-restore would create files with umask 0)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` when the ``with`` block ends without an error.

    The temporary file sits in ``path``'s folder (created if needed), so the final
    :func:`os.replace` is an atomic rename on the same file system; it is flushed and fsynced
    first and gets the permissions a plain ``open`` would give (``0o666`` less the umask). An
    exception inside the block removes the temporary file and leaves ``path`` untouched.

    Args:
        path: the file to write.
        mode: ``"wb"`` (binary) or ``"w"`` (text).
        encoding: text encoding for ``mode="w"`` (default UTF-8).

    Yields:
        The open temporary file.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # held until the rename: vidlit.checkpoint_io.remove_stale_temporaries removes only the
        # temporaries no live writer holds (the kernel drops the lock of a killed process)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600
        text = {} if mode == "wb" else {"encoding": encoding or "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(data: bytes | str, path: str | Path) -> Path:
    """Write bytes, or text as UTF-8, to ``path`` atomically (:func:`atomic_open`); returns ``path``."""
    with atomic_open(path, "w" if isinstance(data, str) else "wb") as f:
        f.write(data)
    return Path(path)


def write_json_atomic(document: Any, path: str | Path) -> Path:
    """Write ``document`` as JSON atomically (:func:`atomic_open`): never half a file."""
    return write_atomic(json.dumps(document), path)


def read_json(path: str | Path, what: str = "annotation file") -> Any:
    """Load a JSON file; a missing file or invalid JSON raises with the path (and line, column).

    Raises:
        FileNotFoundError: ``{path}: {what} not found``.
        ValueError: one line, :func:`parse_json`'s.
    """
    if is_url(path):
        data = read_bytes(path, what)
    else:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {what} not found")
        data = path.read_bytes()
    return parse_json(data, path, what)


def parse_json(data: bytes, path: str | Path, what: str) -> Any:
    """The JSON document in ``data`` (UTF-8, or the UTF-16 / 32 the JSON RFC allows) read from ``path``.

    Raises:
        ValueError: one line naming ``path``: ``line L column C: invalid JSON: ...``, or a file
            that is not text in those encodings (:func:`text_decode_error`).
    """
    try:
        return json.loads(data)
    except UnicodeDecodeError as e:
        raise text_decode_error(path, e, what) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno} column {e.colno}: invalid JSON: {e.msg}") from None


# longest first: UTF-32 LE's mark starts with UTF-16 LE's
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def text_decode_error(path: str | Path, error: UnicodeDecodeError, what: str) -> ValueError:
    """The one-line error for a file that failed UTF-8 decoding, by what its bytes look like.

    A UTF-16 / 32 byte-order mark (a spreadsheet's "Unicode text" export) is ``{path}: UTF-16
    text ...; save it as UTF-8``; else a NUL byte in the chunk being decoded means a binary file
    (a video passed for a list): ``{path}: not a text file (reason); expected a {what}``;
    anything else is text in another encoding (a list saved as Latin-1): ``{path}: not UTF-8
    text (reason, byte b'..'); save it as UTF-8``.
    """
    data = bytes(error.object)
    for mark, name in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            return ValueError(f"{path}: {name} text (its byte-order mark), not UTF-8; save it as UTF-8")
    if b"\0" in data:
        article = "an" if what[:1].lower() in "aeiou" else "a"
        return ValueError(f"{path}: not a text file ({error.reason}); expected {article} {what}")
    return ValueError(
        f"{path}: not UTF-8 text ({error.reason}, byte {data[error.start : error.end]!r}); save it as UTF-8"
    )


def utf8_lines(f: Any, path: str | Path, what: str) -> Iterator[str]:
    """The lines of ``f`` (a file opened as UTF-8 text); a decoding failure anywhere in it is one
    line naming ``path`` (:func:`text_decode_error`)."""
    try:
        yield from f
    except UnicodeDecodeError as e:
        raise text_decode_error(path, e, what) from None


def read_jsonl(path: str | Path, what: str = "JSON Lines file") -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSON Lines file, read lazily.

    Every line must hold one JSON object; line numbers are 1-based, as editors show them.

    Raises:
        FileNotFoundError: ``{path}: {what} not found``.
        ValueError: ``{path}:{line}: invalid JSON (column C): ...`` or
            ``{path}:{line}: expected a JSON object, got list``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    with path.open(encoding="utf-8") as f:
        for number, text in enumerate(utf8_lines(f, path, what), 1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: invalid JSON (column {e.colno}): {e.msg}") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row


def require(obj: Any, key: str, where: str, path: str | Path) -> Any:
    """``obj[key]``, or a ValueError naming the file and the place (``{path}: {where}: missing key``)."""
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{path}: {where}: missing key {key!r}")
    return obj[key]


def confined_path(root: str | Path, name: str | Path, where: str) -> Path | str:
    """``root / name``, refused when it resolves outside ``root`` (an id from a file is never a way out).

    Every id read from an annotation or list file that becomes a path (a ``clip_uid`` naming a
    feature file, a video id naming a clip) goes through here: ``../../etc/passwd``, an absolute
    path or a symlinked escape raise instead of being read.

    Args:
        root: the dataset folder the file must stay inside.
        name: the relative name built from the record (may include a suffix).
        where: the record, for the message (``"moments_val.json: videos[0].clips[3]"``).

    A ``root`` that is an fsspec URL (:func:`is_url`) is checked by :func:`confined_url`, and the
    result is a URL string.

    Raises:
        ValueError: ``{where}: {name!r} points outside {root}``.
    """
    if is_url(root):
        return confined_url(str(root), name, where)
    root = Path(root)
    path = root / name
    resolved_root = root.resolve()
    # a name with a protocol ("s3://other/x") would stand alone wherever it is joined to a root
    if is_url(str(name)) or Path(name).is_absolute() or not path.resolve().is_relative_to(resolved_root):
        raise ValueError(f"{where}: {str(name)!r} points outside {root}")
    return path


# ---- fsspec URLs: dataset folders on object storage (``s3://``, ``gs://``, ``memory://``, ``file://``)


def is_url(path: Any) -> bool:
    """Whether ``path`` is an fsspec URL (a string with a protocol, ``memory://x``, ``s3://b/k``,
    ``file:///x``) rather than a local path; :class:`~pathlib.Path` objects are always local."""
    return isinstance(path, str) and "://" in path


def as_path(path: str | Path) -> Path | str:
    """``path`` as the readers take it: a URL string (:func:`is_url`) as it is, else a ``Path``."""
    return path if is_url(path) else Path(path)


def as_folder(root: str | Path) -> Path | str:
    """A dataset folder as :func:`as_path` gives it, a URL without trailing slashes (joins add one)."""
    return root.rstrip("/") if is_url(root) else Path(root)


def path_name(path: str | Path) -> str:
    """The file name (last component) of a local path or an fsspec URL."""
    return posixpath.basename(path) if is_url(path) else Path(path).name


def path_suffix(path: str | Path) -> str:
    """The suffix (``".npy"``) of a local path or an fsspec URL, ``""`` without one."""
    return posixpath.splitext(path)[1] if is_url(path) else Path(path).suffix


def join_path(root: str | Path, name: str | Path) -> Path | str:
    """``root / name`` for a local folder or an fsspec URL; a URL or absolute path ``name`` stands alone.

    A local ``root`` keeps :class:`~pathlib.Path` semantics (the result is a ``Path``); a URL
    ``root`` gives a URL string. For names read from data files use :func:`confined_path`.
    """
    if is_url(name):
        return str(name)
    if is_url(root):
        if Path(name).is_absolute():
            return Path(name)
        return f"{str(root).rstrip('/')}/{Path(name).as_posix()}"
    return Path(root) / name


def confined_url(root: str, name: str | Path, where: str) -> str:
    """``root/name`` under an fsspec URL ``root``, refused when ``name`` could leave it.

    Object stores have no ``resolve()``: a name is refused when it is absolute, holds a
    protocol, a backslash or a ``..`` component (``a/../../b``), whatever the store would make of it.

    Raises:
        ValueError: ``{where}: {name!r} points outside {root}``.
    """
    text = str(name)
    parts = text.split("/")
    if not text or text.startswith("/") or "://" in text or "\\" in text or ".." in parts:
        raise ValueError(f"{where}: {text!r} points outside {root}")
    return f"{root.rstrip('/')}/{text}"


def file_exists(path: str | Path) -> bool:
    """Whether ``path`` (a local path or an fsspec URL) is a file."""
    if not is_url(path):
        return Path(path).is_file()
    import fsspec

    fs, inner = fsspec.core.url_to_fs(path)
    return fs.isfile(inner)


def url_listing(folder: str) -> set[str]:
    """The names of the files directly in the fsspec URL folder ``folder`` (empty without one).

    One ``ls`` (one request on an object store), not an existence query per file. Everything
    but a folder counts as a file (a symbolic link in a ``file://`` folder too).
    """
    import fsspec

    return folder_files(*fsspec.core.url_to_fs(folder))


def folder_files(fs: Any, folder: str) -> set[str]:
    """The names of the files directly in ``folder`` of the fsspec file system ``fs`` (a path of
    ``fs``, without protocol); empty when there is no such folder. One ``ls`` request, no
    ``isdir`` before it; everything but a folder counts as a file."""
    inner = folder.rstrip("/") or "/"
    try:
        entries = fs.ls(inner, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return set()
    names = (entry["name"].rstrip("/") for entry in entries if entry.get("type") != "directory")
    # a file system that lists a file as itself: the folder is that file, and holds nothing
    return {name.rpartition("/")[2] for name in names if name != inner}


class ListedFiles:
    """Whether files exist, each fsspec URL folder listed once and its names kept.

    For the many files of a few folders (a dataset's feature files): on an object store one
    listing request per folder replaces one existence request per file. Local paths are asked
    one by one (a ``stat`` is cheap, and a huge local folder is not listed for a few files).
    A folder that lists empty or refuses to be listed (an HTTP root without an index page, a
    bucket that grants reads but not listings) is asked file by file, as without this class.
    The listings are kept as long as this object: files added to a URL folder afterwards are
    not seen.
    """

    def __init__(self) -> None:
        self._listed: dict[str, set[str] | None] = {}  # None: ask file by file

    def exists(self, path: str | Path) -> bool:
        """Whether ``path`` (a local path or an fsspec URL) is a file."""
        if not is_url(path):
            return Path(path).is_file()
        folder, _, name = path.rpartition("/")
        if "://" not in folder or folder.endswith("://"):  # the store's root: nothing to list it in
            return file_exists(path)
        if folder not in self._listed:
            try:
                self._listed[folder] = url_listing(folder) or None
            except PermissionError:
                self._listed[folder] = None
        names = self._listed[folder]
        return file_exists(path) if names is None else name in names


def read_bytes(path: str | Path, what: str = "file") -> bytes:
    """The bytes of a local file or an fsspec URL (read with :func:`fsspec.open`).

    Raises:
        FileNotFoundError: ``{path}: {what} not found``.
    """
    try:
        if not is_url(path):
            return Path(path).read_bytes()
        import fsspec

        with fsspec.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} not found") from None
