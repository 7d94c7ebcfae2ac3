"""The store's health: ``summary`` (``info``), ``check`` and ``repair`` of every month file, and repair's backups.

The functions take a :class:`~gnn_market.store.Store`; its methods of the same names call them.
"""
from __future__ import annotations

import os
import secrets
import shutil
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import resolve_link
from .errors import StoreError
from .store_layout import KINDS, list_months, list_symbols, markets_of, month_problems, outside_month, symbol_dir
from .store_schema import BOOK, FUNDING, KLINES, MARKETS, FileReport, _Kind, row_faults
from .timeutil import HOUR

#: A :class:`gnn_market.store.Store` (not imported: the store imports this module).
Store = Any

#: Folder under the store root where :func:`repair` keeps the original of every file it changes.
BACKUP_DIR = "repair-backup"
#: Lock file in the store root that :func:`repair` holds for its whole run.
REPAIR_LOCK = ".repair.lock"
_KINDS = KINDS


class BackupRun:
    """The backup folder of one :meth:`Store.repair` run, created on its first copy, never shared.

    Its name holds the UTC time, the process id and a random suffix, and it is created with
    ``exist_ok=False``: two runs in the same second (or on two hosts sharing the store) can
    never write into the same folder.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.folder: Path | None = None

    def _make_folder(self) -> Path:
        stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
        self.base.mkdir(parents=True, exist_ok=True)
        while True:
            folder = self.base / f"{stamp}-{os.getpid()}-{secrets.token_hex(4)}"
            try:
                folder.mkdir(exist_ok=False)
                return folder
            except FileExistsError:
                continue  # a 1-in-4e9 clash: draw another suffix

    def copy(self, source: Path, relative: Path) -> Path:
        """Copy ``source`` to ``<folder>/<relative>`` and flush it; on failure remove what was made."""
        created_folder = False
        backup: Path | None = None
        try:
            if self.folder is None:
                self.folder = self._make_folder()
                created_folder = True
            backup = self.folder / relative
            backup.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, backup)  # follows a symlinked store file: the data is backed up
            with open(backup, "rb+") as fh:
                os.fsync(fh.fileno())  # on disk before the original is rewritten
        except OSError as exc:
            self._discard(backup, created_folder)
            raise StoreError(f"cannot back up {source} before repairing it: {exc.strerror or exc}; "
                             f"that file was not changed and no partial backup was left") from exc
        return backup

    def _discard(self, backup: Path | None, created_folder: bool) -> None:
        """Remove a partial backup file and the folders this run made empty (a full disk leaves no 0-byte copy)."""
        with suppress(OSError):
            if backup is not None:
                backup.unlink(missing_ok=True)
        if self.folder is None:
            return
        if backup is not None:
            current = backup.parent
            while current != self.folder and self.folder in current.parents:
                with suppress(OSError):
                    current.rmdir()  # only if empty: another file of this run may be in it
                current = current.parent
        if created_folder:
            with suppress(OSError):
                self.folder.rmdir()
                self.folder = None


def repaired_so_far(done: list[FileReport]) -> str:
    """`` (already repaired in this run: ...)`` for a failure message; empty when nothing was."""
    if not done:
        return "; no file was repaired in this run"
    return "; already repaired in this run: " + ", ".join(
        f"{r.kind}/{r.market + '/' if r.market else ''}{r.symbol} (original in {r.backup})" for r in done)


def repaired(df: pd.DataFrame, kind: _Kind, month_key: int | None = None) -> pd.DataFrame:
    """``df`` without rows breaking a value rule (or, for a month file, outside its month ``month_key``),
    the last of repeated timestamps kept, sorted."""
    bad = np.zeros(len(df), dtype=bool)
    for mask in row_faults(df, kind).values():
        bad |= mask
    if month_key is not None:
        bad |= outside_month(df.index, month_key)
    fixed = df[~bad]
    return fixed[~fixed.index.duplicated(keep="last")].sort_index(kind="stable")


def summary(store: Store) -> pd.DataFrame:
    """One row per (market, symbol): range, rows, missing hours, funding and book rows, problems.

    A file that fails :func:`find_problems` (or cannot be read) does not
    stop the summary: its counts are left out (0 / NaT) and ``problems``
    names what is wrong (empty string when nothing is).
    """
    store._require_current()
    rows = []
    for market in MARKETS:
        for sym in store.symbols(market):
            problems: list[str] = []
            k = _read_or_note(problems, store.klines, sym, market)
            gaps = find_gaps(k.index) if k is not None else find_gaps(pd.DatetimeIndex([], tz="UTC"))
            funding = _read_or_note(problems, store.funding, sym) if market == "perp" else None
            book = _read_or_note(problems, store.book, sym, market)
            rows.append({
                "market": market,
                "symbol": sym,
                "first": k.index.min() if k is not None and len(k) else pd.NaT,
                "last": k.index.max() if k is not None and len(k) else pd.NaT,
                "rows": len(k) if k is not None else 0,
                "gaps": len(gaps),
                "missing_hours": int(gaps["hours"].sum()) if len(gaps) else 0,
                "funding_rows": len(funding) if funding is not None else 0,
                "book_rows": len(book) if book is not None else 0,
                "problems": "; ".join(problems),
            })
    return pd.DataFrame(rows)



def _files(root: Path) -> list[tuple[_Kind, str | None, str, int, Path]]:
    """Every stored month file: (kind, market (None for funding), symbol, month key, path), in layout order."""
    out = []
    for kind in (KLINES, FUNDING, BOOK):
        for market in markets_of(kind):
            for sym in list_symbols(root, kind, market):
                out.extend((kind, None if kind is FUNDING else market, sym, key, path)
                           for key, path in list_months(symbol_dir(root, kind, market, sym)))
    return out


def check(store: Store) -> list[FileReport]:
    """Every stored file that cannot be read or breaks a rule of :func:`find_problems`, with its problems."""
    store._require_current()
    reports = []
    for kind, market, sym, key, path in _files(store.root):
        try:
            df = store._load(path, kind)
        except StoreError as exc:
            reports.append(FileReport(kind.name, market, sym, path, [str(exc)], repairable=False, month=key))
            continue
        problems = month_problems(df, kind, key)
        if problems:
            reports.append(FileReport(kind.name, market, sym, path, problems, len(df), len(df), month=key))
    return reports


def repair(store: Store, dry_run: bool = False) -> list[FileReport]:
    """Fix every file :func:`check` reports, explicitly; returns what was (or, ``dry_run``, would be) done.

    Per file: rows breaking a value rule (:func:`row_faults`, off-hour
    candles included) or outside the file's month are dropped, duplicated
    timestamps keep the last row in file order (the store's "later row wins"
    rule), rows are sorted; a file left without rows is removed. The
    original is first copied to ``repair-backup/<UTC stamp>-<pid>-<random>/<same path>``,
    a folder of this run alone. Unreadable files are reported (``repairable``
    False) and left alone.

    One repair runs at a time: it holds the store's repair lock
    (``.repair.lock`` in the root) from its check to its last write, and each
    file's write lock while it rewrites that file, so a second ``repair``
    started meanwhile waits and then finds nothing left to fix, and never
    backs up an already repaired file over the original. A failure names the
    files already repaired in this run (and where their originals are).
    """
    if dry_run:  # read only: no lock file, nothing created
        reports = check(store)
        for report in reports:
            if report.repairable:
                kind = _KINDS[report.kind]
                report.rows_after = len(repaired(store._load(report.path, kind), kind, report.month))
        return reports
    store._require_root()
    store.check_marker()
    with store._locked(store.root, lock_path=store.root / REPAIR_LOCK):
        reports = check(store)
        run = BackupRun(store.root / BACKUP_DIR)
        done: list[FileReport] = []
        for report in reports:
            if not report.repairable:
                continue
            try:
                _repair_file(store, report, run)
            except StoreError as exc:
                raise StoreError(f"{exc}{repaired_so_far(done)}") from exc
            done.append(report)
    return reports


def _repair_file(store: Store, report: FileReport, run: BackupRun) -> None:
    """Back ``report.path`` up into ``run``'s folder, then rewrite it without its bad rows (or remove it)."""
    kind = _KINDS[report.kind]
    with store._locked(report.path):
        df = store._load(report.path, kind)
        fixed = repaired(df, kind, report.month)
        report.rows_before, report.rows_after = len(df), len(fixed)
        backup = run.copy(report.path, report.path.relative_to(store.root))
        try:
            if len(fixed):
                store._atomic_write(report.path, fixed, kind)
            else:  # an empty month file would list a symbol without data
                resolve_link(report.path).unlink()
        except (StoreError, OSError) as exc:
            raise StoreError(f"{exc}; that file was not changed (a copy is in {backup})") from exc
        report.backup = backup


def find_gaps(index: pd.DatetimeIndex) -> pd.DataFrame:
    """Runs of missing hours between the first and last timestamp of ``index``."""
    if len(index) < 2:
        return pd.DataFrame({"start": pd.Series(dtype="datetime64[ns, UTC]"),
                             "end": pd.Series(dtype="datetime64[ns, UTC]"),
                             "hours": pd.Series(dtype="int64")})
    idx = index.sort_values()
    step = np.diff(idx.asi8) // HOUR.value
    where = np.nonzero(step > 1)[0]
    return pd.DataFrame({
        "start": idx[where] + HOUR,
        "end": idx[where + 1] - HOUR,
        "hours": (step[where] - 1).astype("int64"),
    })


def _read_or_note(problems: list[str], read, *args):
    """``read(*args)``, or None with the StoreError's message appended to ``problems`` (for ``info``)."""
    try:
        return read(*args)
    except StoreError as exc:
        problems.append(str(exc))
        return None
