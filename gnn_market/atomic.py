"""Write a file so that readers see either the old content or the new, never half of it.

    with atomic_path(target) as tmp:
        frame.to_parquet(tmp)          # any writer that takes a path
    # target now holds the new content; on an exception it is untouched

The temporary file sits in the target's folder (a rename across file systems
is not atomic), is flushed to disk before the rename, and gets the permissions
a plain ``open(target, "w")`` would give (``0o666`` minus the umask) instead of
``mkstemp``'s owner-only ``0o600``, so other users and services can read what
we export.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import StoreError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Read once at import (``os.umask`` can only be read by setting it, which is not thread-safe later).
_UMASK = _current_umask()
TMP_SUFFIX = ".tmp"


def temp_name_prefix(path: Path) -> str:
    """Prefix of the temporaries :func:`atomic_path` makes for ``path`` (``.<name>.``)."""
    return f".{path.name}."


@contextmanager
def atomic_path(path: str | os.PathLike, error: type[Exception] = StoreError) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it onto ``path``.

    Any exception inside the block (or while renaming) deletes the temporary
    file and leaves ``path`` as it was. ``OSError`` is raised as ``error`` with
    a one-line message naming ``path``.
    """
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=temp_name_prefix(path), suffix=TMP_SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror or exc}") from exc
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, error: type[Exception] = StoreError) -> Path:
    """``Path(path).write_bytes(data)``, atomically."""
    with atomic_path(path, error) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, error: type[Exception] = StoreError) -> Path:
    """``Path(path).write_text(text)``, atomically (UTF-8)."""
    return write_bytes_atomic(path, text.encode("utf-8"), error)
