"""Write a file (or a folder of files) so that readers see either the old content or the new, never half of it.

    with atomic_path(target) as tmp:
        frame.to_parquet(tmp)          # any writer that takes a path
    # target now holds the new content; on an exception it is untouched. A symbolic link
    # at target is written through: the file it leads to gets the content, the link stays.

    with atomic_dir(folder) as tmp:    # the same for a folder: fill tmp, it is renamed onto folder
        np.save(tmp / "x.npy", x)

The temporary file sits in the target's folder (a rename across file systems
is not atomic), is flushed to disk before the rename, and gets the permissions
a plain ``open(target, "w")`` would give (``0o666`` minus the umask) instead of
``mkstemp``'s owner-only ``0o600``, so other users and services can read what
we export.
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager, suppress
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


def resolve_link(path: str | os.PathLike) -> Path:
    """``path``, or the file a symbolic link at ``path`` leads to (through every link in the chain).

    Renaming a temporary file onto a link would replace the link by a plain file, and readers of the
    link's target would never see the update; the atomic writers write to the target instead.
    A path that is not a link is returned unchanged (its folders are not resolved).
    """
    path = Path(path)
    if not path.is_symlink():
        return path
    try:
        return path.resolve(strict=False)
    except RuntimeError as exc:  # a link loop (Python < 3.13; newer raise OSError)
        raise OSError(f"cannot follow the symbolic link {path}: {exc}") from exc


def temp_name_prefix(path: Path) -> str:
    """Prefix of the temporaries :func:`atomic_path` makes for ``path`` (``.<name>.``)."""
    return f".{path.name}."


@contextmanager
def atomic_path(path: str | os.PathLike, error: type[Exception] = StoreError) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it onto ``path``.

    Any exception inside the block (or while renaming) deletes the temporary
    file and leaves ``path`` as it was. ``OSError`` is raised as ``error`` with
    a one-line message naming ``path``. A symbolic link at ``path`` is written
    through (:func:`resolve_link`): the temporary sits beside the link's target and
    replaces it, so the link stays a link.
    """
    path = Path(path)
    try:
        path = resolve_link(path)
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


@contextmanager
def atomic_dir(path: str | os.PathLike, error: type[Exception] = StoreError) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success fsync its files and rename it onto ``path``.

    An existing folder at ``path`` is replaced: renamed aside, then deleted, so a
    reader finds the old folder, the new one or (between the two renames) none,
    never a mix. Files already open or memory-mapped from the old folder stay
    valid (POSIX keeps their data until closed). On an exception the temporary
    folder is deleted and ``path`` is left as it was; ``OSError`` is raised as ``error``.
    A symbolic link at ``path`` stays a link: the folder it leads to is replaced (beside it).
    """
    try:
        path = resolve_link(path)
        tmp = Path(tempfile.mkdtemp(prefix=temp_name_prefix(path), suffix=TMP_SUFFIX, dir=path.parent))
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        yield tmp
        for item in tmp.rglob("*"):
            if item.is_file():
                with open(item, "rb+") as fh:
                    os.fsync(fh.fileno())
                os.chmod(item, 0o666 & ~_UMASK)
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp's 0o700 would hide the folder from other users
        _replace_dir(tmp, path)
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename folder ``src`` onto ``dst``; ``os.rename`` refuses a non-empty ``dst``, so move it aside first."""
    try:
        os.rename(src, dst)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    aside = dst.with_name(f"{temp_name_prefix(dst)}{secrets.token_hex(4)}.old")
    os.rename(dst, aside)
    try:
        os.rename(src, dst)
    except OSError:
        with suppress(OSError):  # put the old folder back (fails only if another writer got there first)
            os.rename(aside, dst)
        raise
    shutil.rmtree(aside, ignore_errors=True)
