"""Convert a store from the one-file-per-symbol layout (formats 1-2) to the month files of format 3.

    python -m gnn_market.data migrate --store DIR [--keep-backup]

Steps, each safe to interrupt (kill -9 included) and resumed by running the command again:

1. Per old file ``klines/<market>/<SYMBOL>.parquet`` (also ``book/<market>/``, ``funding/``): read it
   (under its old write lock), write its rows into the month files of the new layout (each atomic), read
   those back and compare, then move the old file into ``DIR/migrate-backup/<same path>`` (a rename).
   A file whose rows pass the store rules is merged into what the new layout already holds (a rerun
   after a kill rewrites the same rows; a row stored in both takes the old file's values, as a later
   write would). A file breaking a rule (``info`` lists it) is copied row for row, duplicates and all,
   so ``repair`` treats it on the new layout as before; it may not meet month files it did not write.
2. Every backed-up file is compared with the new layout again, row by row (values, dtypes, times).
3. ``STORE.json`` is rewritten as format 3. A format 1 store (or one without marker) gets
   ``"book_time": "floored"``: its book stamps keep their old meaning (:mod:`gnn_market.store`).
4. The backup is deleted (renamed to a hidden folder, then removed), or with ``--keep-backup`` renamed to
   ``DIR/migrate-backup-<UTC time>/`` and left for the user to delete.

Until step 3 the store keeps its old marker, so every reader and writer still refuses it; a file that
cannot be read stops the migration with one line naming it (move it away, then run migrate again).
"""
from __future__ import annotations

import os
import secrets
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from .atomic import write_text_atomic
from .errors import StoreError
from .store import Store, marker_text
from .store_layout import (
    FILE_NAME,
    LAYOUT_VERSION,
    has_legacy_files,
    legacy_files,
    legacy_folders,
    list_months,
    month_keys,
    month_path,
    symbol_dir,
)
from .store_schema import _empty_frame, _Kind, find_problems

#: Folder under the store root holding the old files until every row of the new layout is verified.
BACKUP = "migrate-backup"
MIGRATE_LOCK = ".migrate.lock"


@dataclass
class MigrationReport:
    """What one :func:`migrate_store` run did."""

    root: Path
    version_before: int  # 1 also for a store without STORE.json
    files: int = 0  # old files moved into the new layout by this run
    rows: int = 0  # their rows
    verified_files: int = 0  # backed-up files compared with the new layout (this run's and earlier runs')
    kept_backup: Path | None = None
    book_time: str = "capture"

    def line(self) -> str:
        if self.version_before == LAYOUT_VERSION and not self.verified_files:
            return f"store {self.root} is already in format {LAYOUT_VERSION}; nothing to migrate"
        backup = f"old files kept in {self.kept_backup}" if self.kept_backup else "backup removed"
        return (f"store {self.root}: migrated {self.files} file(s), {self.rows} rows, from format "
                f"{self.version_before} to {LAYOUT_VERSION}; {self.verified_files} file(s) verified row by row "
                f"against the new layout; {backup}; book_time {self.book_time}")


#: Called after each old file is moved to the backup (tests use it to kill the process mid-way).
def after_file(path: Path) -> None:
    """Nothing; tests replace it."""


def migrate_store(root: str | os.PathLike, keep_backup: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> MigrationReport:
    """Migrate the store at ``root`` to format 3 (see module docstring); resumable, one run at a time.

    ``progress(done, total)`` is called after each old file (the CLI draws a bar with it).
    """
    store = Store(root)
    store._require_root()
    try:
        lock = FileLock(store.root / MIGRATE_LOCK, timeout=0)
        lock.acquire()
    except Timeout as exc:
        raise StoreError(f"another migrate of {store.root} is running (lock {store.root / MIGRATE_LOCK})") from exc
    except OSError as exc:
        raise StoreError(f"cannot write to store {store.root}: {exc.strerror or exc}") from exc
    try:
        return _migrate(store, keep_backup, progress or (lambda done, total: None))
    finally:
        lock.release()


def _migrate(store: Store, keep_backup: bool, progress: Callable[[int, int], None]) -> MigrationReport:
    info = store.marker()  # a damaged or newer marker stops here, nothing changed
    version = 1 if info is None else int(info["version"])
    backup = store.root / BACKUP
    book_time = "floored" if version == 1 else (info or {}).get("book_time", "capture")
    report = MigrationReport(store.root, version, book_time=book_time)
    _remove_leftovers(store.root)
    if version == LAYOUT_VERSION and not has_legacy_files(store.root):
        if backup.exists():  # killed after the marker was written: that backup was verified already
            _drop_backup(backup)
        return report
    old_files = legacy_files(store.root)
    for kind, market, symbol, path in old_files:
        report.rows += _migrate_file(store, kind, market, symbol, path, backup / path.relative_to(store.root))
        report.files += 1
        after_file(path)
        progress(report.files, len(old_files))
    report.verified_files = _verify_backup(store, backup)
    if keep_backup and backup.exists():
        report.kept_backup = backup.with_name(f"{BACKUP}-{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%SZ}")
        os.rename(backup, report.kept_backup)
    write_text_atomic(store.root / "STORE.json", marker_text(book_time))
    _tidy_old_folders(store.root)
    if backup.exists():
        _drop_backup(backup)
    return report


def _migrate_file(store: Store, kind: _Kind, market: str, symbol: str, path: Path, backup: Path) -> int:
    """Move one old file's rows into month files, verify them, move the file to ``backup``; returns its rows."""
    if backup.exists() or backup.is_symlink():
        raise StoreError(f"cannot migrate {path}: {backup} exists already (a file moved there by an earlier "
                         f"migrate, and the same file is back in the store); compare the two, keep one, run migrate again")
    with store._locked(path):  # an old cryptograph still writing this file waits, or makes us wait
        old = _read_old(store, path, kind)
        folder = symbol_dir(store.root, kind, market, symbol)
        if find_problems(old, kind):
            _copy_verbatim(store, old, kind, folder, path)
        elif len(old):
            _merge(store, old, kind, folder)
        _check_new_holds(store, old, kind, folder, path)
        backup.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, backup)
    return len(old)


def _read_old(store: Store, path: Path, kind: _Kind) -> pd.DataFrame:
    """An old file as the old reader saw it (schema applied, not validated); unreadable -> one-line StoreError."""
    try:
        old = store._load(path, kind)
    except StoreError as exc:
        raise StoreError(f"cannot migrate {path}: {exc}; move that file out of the store and run migrate "
                         f"again (files migrated so far stay migrated)") from exc
    if old.index.hasnans:
        raise StoreError(f"cannot migrate {path}: {int(old.index.isna().sum())} row(s) without a time; move that "
                         f"file out of the store and run migrate again (files migrated so far stay migrated)")
    return old


def _parts(df: pd.DataFrame) -> list[tuple[int, pd.DataFrame]]:
    """``df`` split by UTC month, ascending, each part in ``df``'s row order (duplicates keep their order)."""
    keys = month_keys(df.index)
    return [(int(k), df[keys == k]) for k in np.unique(keys)]


def _merge(store: Store, old: pd.DataFrame, kind: _Kind, folder: Path) -> None:
    """Upsert a valid old file's rows into the new layout (each month file atomic, its rows winning)."""
    parts = _parts(old.sort_index())
    with ExitStack() as stack:
        for key, _ in parts:  # ascending, as every writer takes them
            stack.enter_context(store._locked(month_path(folder, key)))
        writes = []
        for key, part in parts:
            target = month_path(folder, key)
            here = store._load(target, kind) if target.exists() else None
            if here is not None and find_problems(here, kind):
                raise StoreError(f"cannot migrate into {target}: it breaks the store rules; move it away and "
                                 f"run migrate again")
            merged = part if here is None else pd.concat([here[~here.index.isin(part.index)], part]).sort_index()
            writes.append((target, merged))
        store._write_all(writes, kind)


def _copy_verbatim(store: Store, old: pd.DataFrame, kind: _Kind, folder: Path, path: Path) -> None:
    """Write a rule-breaking old file's rows as they are into month files it alone fills."""
    parts = _parts(old)
    foreign = sorted({key for key, _ in list_months(folder)} - {key for key, _ in parts})
    if foreign:
        raise StoreError(f"cannot migrate {path}: it breaks the store rules ('info' on the old store lists "
                         f"them) and {folder} already holds other months; move one of them away, run migrate again")
    with ExitStack() as stack:
        for key, _ in parts:
            stack.enter_context(store._locked(month_path(folder, key)))
        store._write_all([(month_path(folder, key), part) for key, part in parts], kind)


def _new_rows(store: Store, kind: _Kind, folder: Path) -> pd.DataFrame:
    """Every row of a symbol's month files, not validated, in month then file order."""
    frames = [store._load(p, kind) for _, p in list_months(folder)]
    if not frames:
        return _empty_frame(kind)
    return pd.concat(frames) if len(frames) > 1 else frames[0]


def _check_new_holds(store: Store, old: pd.DataFrame, kind: _Kind, folder: Path, path: Path) -> None:
    """Raise :class:`StoreError` unless every row of ``old`` is in the new layout, same values and dtypes."""
    new = _new_rows(store, kind, folder)
    ours = new[new.index.isin(old.index)].sort_index(kind="stable")
    want = old.sort_index(kind="stable")
    same = (list(ours.dtypes.astype(str)) == list(want.dtypes.astype(str)) and ours.index.dtype == want.index.dtype
            and ours.index.equals(want.index) and ours.equals(want))
    if not same:
        raise StoreError(f"migration check failed for {path}: the month files under {folder} do not hold its "
                         f"{len(want)} rows unchanged; the old file stays in place, nothing was removed")


def _verify_backup(store: Store, backup: Path) -> int:
    """Compare every file in ``backup`` with the new layout; returns how many were checked."""
    checked = 0
    for kind, market, symbol, path in legacy_files(backup):
        old = _read_old(store, path, kind)
        _check_new_holds(store, old, kind, symbol_dir(store.root, kind, market, symbol), path)
        checked += 1
    return checked


def _tidy_old_folders(root: Path) -> None:
    """Remove the old layout's lock and temporary files, and its folders left empty."""
    for _, market, folder in legacy_folders(root):
        if not folder.is_dir():
            continue
        for item in folder.iterdir():
            if item.is_file() and item.name.startswith(".") and item.name.endswith((".lock", ".tmp")):
                item.unlink(missing_ok=True)
        if market is not None:  # klines/<market>, book/<market>; funding/ is also the new layout's kind folder
            try:
                folder.rmdir()  # only when empty: anything else a user put there stays
            except OSError:
                pass


def _drop_backup(backup: Path) -> None:
    """Delete a verified backup: renamed to a hidden name first, so a kill mid-way leaves no half backup visible."""
    aside = backup.with_name(f".{BACKUP}.{secrets.token_hex(4)}.old")
    os.rename(backup, aside)
    shutil.rmtree(aside, ignore_errors=True)


def _remove_leftovers(root: Path) -> None:
    """Hidden backups of an earlier run killed while deleting them."""
    for stale in root.glob(f".{BACKUP}.*.old"):
        shutil.rmtree(stale, ignore_errors=True)


__all__ = ["BACKUP", "FILE_NAME", "MigrationReport", "migrate_store"]
