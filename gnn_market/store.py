"""On-disk market store: one Parquet file per (kind, market, symbol).

Layout under the store root::

    STORE.json                         format marker and version (see below)
    klines/<market>/<SYMBOL>.parquet   hourly candles, index ``open_time``
    funding/<SYMBOL>.parquet           perpetual funding, index ``funding_time``
    book/<market>/<SYMBOL>.parquet     top-20 book snapshots, index ``snapshot_time``
    repair-backup/<stamp>-<pid>-<random>/...   originals of files changed by one :meth:`Store.repair` run

``market`` is ``"spot"`` or ``"perp"`` (USDT-M perpetual futures). All times are
UTC ``datetime64[ns, UTC]``. Raw columns keep Binance's meaning and units.

Format versions (``STORE.json``): version 2 stores ``snapshot_time`` as the true
capture time of a book snapshot. Version 1 collectors (and a folder without
``STORE.json``) floored a snapshot taken up to 5 minutes after an hour to that
hour, so an on-the-hour book stamp there may hide up to 5 minutes of the next
candle; :func:`gnn_market.panel.load_panel` reads such stamps as their latest
possible capture time (:data:`LEGACY_BOOK_DELAY` later). A store keeps the
version it was created with. Every writer (each upsert, :meth:`Store.repair`,
the importers before their first write) checks ``STORE.json`` the way readers
do (:meth:`Store.format_version`): a store of a newer format, or whose marker is
garbage, empty, not an object or a folder, is never written to.

Guarantees:

* **Idempotent upserts.** Writers merge new rows into the stored rows by
  index; a row present in both takes the new values. Re-running any download
  or import never duplicates or drops a row. Inside *one* write, rows sharing
  a timestamp collapse to the **later** row (the REST client and the archive
  importer rely on this: a re-sent candle or a later file wins).
* **Valid values only** (:func:`find_problems`, vectorised): unique
  timestamps; kline times on the hour; kline prices finite, in
  [:data:`MIN_PRICE`, :data:`MAX_PRICE`]; ``high >= max(open, close) >= min(open, close) >= low``
  within a relative :data:`OHLC_TOLERANCE`; volumes, trades and book
  quantities >= 0 (NaN = unknown); traded value per candle (``quote_volume``,
  ``volume x close`` ...) <= :data:`MAX_NOTIONAL`; taker buy volumes <= the
  volumes within :data:`TAKER_TOLERANCE`; ``trades`` whole numbers (a fraction
  is refused, never rounded) <= :data:`MAX_TRADES`; book prices and ``mark_price`` NaN or in
  ``[0, MAX_PRICE]`` (book) / ``(0, MAX_PRICE]`` (mark); ``|funding_rate| <=``
  :data:`MAX_FUNDING_RATE`. A write breaking a rule raises :class:`DataError`
  and changes nothing. A stored file breaking one (written by another tool,
  or damaged) is refused on read with a :class:`StoreError` naming the file
  and the problem; nothing is repaired silently. :meth:`Store.check` lists
  every such file and :meth:`Store.repair` (``python -m gnn_market.data
  repair``) fixes them explicitly: rows breaking a value rule and off-hour
  candles are dropped, duplicated timestamps keep the last row in file order,
  and the original file is copied to ``repair-backup/`` first (a folder
  per run). Integer times in a file written by another tool are read as
  epoch s, ms, µs or ns by magnitude (:func:`epoch_index`), never blindly as ns.
* **Crash safety.** Every write goes to a temporary file in the same folder,
  is flushed to disk, then atomically renamed over the old file. A process
  killed mid-write leaves the previous complete file; leftover temporary files
  are ignored by readers and removed by the next write. A store file that
  is a symbolic link is written through (the file it leads to is replaced,
  the link stays).
* **Never lose data.** A stored file that cannot be read is reported as a
  :class:`StoreError` and is never overwritten.
* **Gaps stay gaps.** Nothing is filled; :meth:`Store.gaps` reports them.

* **Many writers.** Each upsert holds a cross-process lock on its file
  (``.<file>.lock`` beside it, :mod:`filelock`) over the whole
  read-merge-write, so two processes writing the same symbol (two imports, or
  ``collect`` while a ``backfill`` runs) never lose each other's rows. Readers
  take no lock: the rename makes every read see a complete file. A
  :meth:`Store.repair` run also holds the store's ``.repair.lock`` from its
  check to its last write, so two repairs never interleave.
* **Empty writes change nothing.** Upserting no rows creates no file (an empty
  file would list a symbol without data).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from .atomic import TMP_SUFFIX, atomic_path, resolve_link, temp_name_prefix, write_text_atomic
from .errors import DataError, StoreError
from .store_schema import (
    BOOK,
    FUNDING,
    KLINES,
    MARKETS,
    BadStoreFile,
    FileReport,
    _empty_frame,
    _has_schema,
    _Kind,
    _normalise,
    find_problems,
    is_valid_symbol,
    row_faults,
    validate_market,
    validate_symbol,
)
from .timeutil import HOUR, to_utc_index

#: Longest wait for another process's write of the same file (a year of candles writes in ms).
LOCK_TIMEOUT_S = 120.0
#: Written to ``STORE.json`` of a new store. Version 2: book ``snapshot_time`` is the true capture time.
STORE_FORMAT = {"format": "cryptograph-store", "version": 2}
#: Folder under the store root where :meth:`Store.repair` keeps the original of every file it changes.
BACKUP_DIR = "repair-backup"


class Store:
    """A folder of Parquet files holding hourly market data.

    Args:
        path: root folder. It is created by the first write; readers raise
            :class:`StoreError` if it does not exist.

    Example::

        store = Store("data/binance")
        store.symbols("spot")              # ['BTCUSDT', 'ETHUSDT', ...]
        df = store.klines("BTCUSDT")       # index open_time (UTC)
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.root = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ------------------------------------------------------------------ paths
    def _path(self, kind: _Kind, symbol: str, market: str | None) -> Path:
        validate_symbol(symbol)
        if kind.per_market:
            validate_market(market or "")
            return self.root / kind.name / market / f"{symbol}.parquet"
        return self.root / kind.name / f"{symbol}.parquet"

    def exists(self) -> bool:
        return self.root.is_dir()

    def _require_root(self) -> None:
        if not self.root.exists():
            raise StoreError(f"store not found: {self.root}")
        if not self.root.is_dir():
            raise StoreError(f"store path is not a folder: {self.root}")

    # ----------------------------------------------------------------- listing
    def markets(self) -> list[str]:
        """Markets that hold at least one kline file."""
        self._require_root()
        return [m for m in MARKETS if self.symbols(m)]

    def symbols(self, market: str = "spot") -> list[str]:
        """Sorted symbols with a kline file in ``market`` (empty list if none)."""
        validate_market(market)
        self._require_root()
        return self._list(self.root / KLINES.name / market)

    def funding_symbols(self) -> list[str]:
        self._require_root()
        return self._list(self.root / FUNDING.name)

    def book_symbols(self, market: str = "spot") -> list[str]:
        validate_market(market)
        self._require_root()
        return self._list(self.root / BOOK.name / market)

    @staticmethod
    def _list(folder: Path) -> list[str]:
        if not folder.is_dir():
            return []
        names = (p.stem for p in folder.glob("*.parquet") if not p.name.startswith("."))
        return sorted(n for n in names if is_valid_symbol(n))

    # ----------------------------------------------------------------- reading
    def _read(self, kind: _Kind, symbol: str, market: str | None, missing_ok: bool) -> pd.DataFrame:
        path = self._path(kind, symbol, market)
        if not path.exists():
            self._require_root()
            if missing_ok:
                return _empty_frame(kind)
            where = f" ({market})" if kind.per_market else ""
            raise StoreError(f"no {kind.name} for {symbol}{where} in store {self.root}")
        df = self._load(path, kind)
        problems = find_problems(df, kind)
        if problems:
            raise BadStoreFile(f"invalid store file {path}: {'; '.join(problems)}; nothing was changed: "
                             f"'python -m gnn_market.data repair --store {self.root}' drops the bad rows "
                             f"(keeping a backup)")
        return df

    def _load(self, path: Path, kind: _Kind) -> pd.DataFrame:
        """The file as a frame in the kind's schema, sorted if its timestamps are unique; not validated."""
        try:
            with pq.ParquetFile(path) as fh:
                table = fh.read()
            fast = _frame_from_own_table(table, kind)
            if fast is not None:
                return fast  # a file as this module writes it: no pandas metadata round trip, no coercion
            df = table.to_pandas()
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise BadStoreFile(f"corrupt store file {path}: {exc}") from exc
        if not _has_schema(df, kind):
            try:
                df = _normalise(df, kind, check=False)
            except (DataError, OverflowError) as exc:
                raise BadStoreFile(f"corrupt store file {path}: {exc}") from exc
        if df.index.is_unique and not df.index.is_monotonic_increasing:
            df = df.sort_index(kind="stable")  # row order is not data; duplicates stay for find_problems
        return df

    def klines(self, symbol: str, market: str = "spot",
               start: str | pd.Timestamp | None = None,
               end: str | pd.Timestamp | None = None) -> pd.DataFrame:
        """Hourly candles of ``symbol``, indexed by UTC ``open_time``, sorted.

        Columns: see :data:`KLINE_COLUMNS`. ``start``/``end`` are inclusive
        bounds on ``open_time``. Raises :class:`StoreError` if absent.
        """
        df = self._read(KLINES, symbol, market, missing_ok=False)
        return _slice(df, start, end)

    def stored_range(self, symbol: str, market: str | None = "spot",
                     kind: str = "klines") -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """(first, last) stored time of ``symbol``'s ``kind`` ("klines", "funding" or "book"), or None.

        Reads only the time column, so it is cheap enough to call for every
        symbol of every hourly cycle. ``market`` is ignored for funding.
        """
        spec = {k.name: k for k in (KLINES, FUNDING, BOOK)}.get(kind)
        if spec is None:
            raise DataError(f"unknown kind {kind!r}: expected klines, funding or book")
        path = self._path(spec, symbol, market)
        if not path.exists():
            self._require_root()
            return None
        try:
            column = pq.read_table(path, columns=[spec.index]).column(0)
            if column.type != pa.timestamp("ns", "UTC"):
                index = self._read(spec, symbol, market, missing_ok=False).index  # foreign file: general path
            else:
                index = pd.DatetimeIndex(column.cast(pa.int64()).to_numpy().view("M8[ns]")).tz_localize("UTC")
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            raise BadStoreFile(f"corrupt store file {path}: {exc}") from exc
        if len(index) == 0:
            return None
        return index.min(), index.max()

    def funding(self, symbol: str) -> pd.DataFrame:
        """Funding events of perpetual ``symbol`` (empty frame if none stored)."""
        return self._read(FUNDING, symbol, None, missing_ok=True)

    def book(self, symbol: str, market: str = "spot") -> pd.DataFrame:
        """Book snapshots of ``symbol`` in ``market`` (empty frame if none stored)."""
        return self._read(BOOK, symbol, market, missing_ok=True)

    # ----------------------------------------------------------------- writing
    def write_klines(self, symbol: str, df: pd.DataFrame, market: str = "spot") -> int:
        """Upsert candles; returns the number of rows not stored before."""
        return self._upsert(KLINES, symbol, market, df)

    def write_funding(self, symbol: str, df: pd.DataFrame) -> int:
        """Upsert funding events; returns the number of new rows."""
        return self._upsert(FUNDING, symbol, None, df)

    def write_book(self, symbol: str, df: pd.DataFrame, market: str = "spot") -> int:
        """Upsert book snapshots; returns the number of new rows."""
        return self._upsert(BOOK, symbol, market, df)

    def _upsert(self, kind: _Kind, symbol: str, market: str | None, df: pd.DataFrame) -> int:
        path = self._path(kind, symbol, market)
        try:
            new = _normalise(df, kind)
        except DataError as exc:
            where = f" ({market})" if kind.per_market else ""
            raise DataError(f"{symbol}{where}: {exc}; nothing was written") from exc
        new = new[~new.index.duplicated(keep="last")]  # within one write, the later row wins
        if new.empty:
            return 0  # nothing to store: no empty file that would list a symbol without data
        self._prepare_folder(path)
        with self._locked(path):
            old = self._read(kind, symbol, market, missing_ok=True) if path.exists() else _empty_frame(kind)
            added = int((~new.index.isin(old.index)).sum())
            if added == 0 and len(old) and _same_rows(old, new):
                return 0  # nothing to change: skip the rewrite
            merged = pd.concat([old[~old.index.isin(new.index)], new]).sort_index()
            self._atomic_write(path, merged, kind)
        return added

    def check_targets(self, kind: str, symbols: list[str], market: str | None = "spot") -> None:
        """Before a multi-symbol write: raise :class:`StoreError` if any write would be refused.

        Checks the store's marker (:meth:`check_marker`) and reads every symbol's stored
        file of ``kind`` (``"klines"``, ``"funding"``, ``"book"``) by the store rules, so an
        importer can refuse the whole import before its first write instead of stopping
        halfway with some symbols changed.
        """
        spec = _KINDS.get(kind)
        if spec is None:
            raise DataError(f"unknown kind {kind!r}: expected klines, funding or book")
        if not self.root.exists():
            return  # a new store: nothing stored can be refused
        self._require_root()
        self.check_marker()
        for symbol in symbols:
            if self._path(spec, symbol, market).exists():
                self._read(spec, symbol, market, missing_ok=True)

    def _prepare_folder(self, path: Path) -> None:
        """Create ``path``'s folder and a new store's marker; refuse a store whose marker a reader refuses."""
        marker = self.root / "STORE.json"
        if marker.exists() or marker.is_symlink():
            self.check_marker()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not marker.exists():
                write_text_atomic(marker, json.dumps(STORE_FORMAT) + "\n")
        except OSError as exc:
            raise StoreError(f"cannot write to store {self.root}: {exc.strerror or exc}") from exc

    def check_marker(self) -> None:
        """Raise :class:`StoreError` unless this store's ``STORE.json`` is absent or one this version can write.

        Every writer calls it before changing anything (readers call :meth:`format_version`): a store
        of a newer format, or whose marker is damaged, is never written to.
        """
        self.format_version()

    @contextmanager
    def _locked(self, path: Path, lock_path: Path | None = None) -> Iterator[None]:
        """Hold ``path``'s cross-process write lock (waits up to :data:`LOCK_TIMEOUT_S`).

        ``lock_path``: the lock file (default ``.<name>.lock`` beside ``path``).
        """
        lock = FileLock(lock_path or path.parent / f".{path.name}.lock", timeout=LOCK_TIMEOUT_S)
        try:
            lock.acquire()
        except Timeout as exc:
            raise StoreError(f"{path} is locked by another writer for over {LOCK_TIMEOUT_S:.0f} s "
                             f"(remove {lock.lock_file} if no cryptograph process is running)") from exc
        except OSError as exc:
            raise StoreError(f"cannot write to store {self.root}: {exc.strerror or exc}") from exc
        try:
            yield
        finally:
            lock.release()

    def _atomic_write(self, path: Path, df: pd.DataFrame, kind: _Kind) -> None:
        """Replace ``path`` by ``df``; the caller holds ``path``'s lock."""
        path = resolve_link(path)  # a symlinked store file is written through: the link stays a link
        try:
            # With the lock held no other writer of this file is in flight: a temporary file
            # here was left by a writer that died mid-write.
            for stale in path.parent.glob(f"{temp_name_prefix(path)}*{TMP_SUFFIX}"):
                stale.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot write to store {self.root}: {exc.strerror or exc}") from exc
        with atomic_path(path, StoreError) as tmp:
            # No dictionary encoding: useless for prices, and it made writes 2.5x slower and files larger.
            pq.write_table(_table_from_frame(df, kind), tmp, compression="zstd", use_dictionary=False)

    # ----------------------------------------------------------------- reports
    def gaps(self, symbol: str, market: str = "spot") -> pd.DataFrame:
        """Missing hours inside the stored range of ``symbol``.

        Returns a frame with columns ``start`` (first missing hour), ``end``
        (last missing hour) and ``hours`` (count), one row per gap.
        """
        idx = self.klines(symbol, market).index
        return find_gaps(idx)

    def summary(self) -> pd.DataFrame:
        """One row per (market, symbol): range, rows, missing hours, funding and book rows, problems.

        A file that fails :func:`find_problems` (or cannot be read) does not
        stop the summary: its counts are left out (0 / NaT) and ``problems``
        names what is wrong (empty string when nothing is).
        """
        self._require_root()
        rows = []
        for market in MARKETS:
            for sym in self.symbols(market):
                problems: list[str] = []
                k = _read_or_note(problems, self.klines, sym, market)
                gaps = find_gaps(k.index) if k is not None else find_gaps(pd.DatetimeIndex([], tz="UTC"))
                funding = _read_or_note(problems, self.funding, sym) if market == "perp" else None
                book = _read_or_note(problems, self.book, sym, market)
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

    # ----------------------------------------------------------- format and health
    def format_version(self) -> int:
        """``version`` of ``STORE.json``; 1 for a store without one (written before the marker, or by hand)."""
        marker = self.root / "STORE.json"
        if not marker.exists() and not marker.is_symlink():
            return 1
        try:
            text = marker.read_text(encoding="utf-8")
            info = json.loads(text)
        except (OSError, ValueError) as exc:  # a folder, a dangling link, empty, garbage, not UTF-8
            raise StoreError(f"unreadable store marker {marker}: {getattr(exc, 'strerror', None) or exc}; "
                             f"a cryptograph store's marker reads {json.dumps(STORE_FORMAT)}") from exc
        version = info.get("version") if isinstance(info, dict) else None
        if (not isinstance(info, dict) or info.get("format") != STORE_FORMAT["format"]
                or type(version) is not int or version < 1):
            raise StoreError(f"store marker {marker} is not a cryptograph store marker ({text.strip()[:80]!r}; "
                             f"expected {json.dumps(STORE_FORMAT)}): is {self.root} a cryptograph store?")
        if version > STORE_FORMAT["version"]:
            raise StoreError(f"store {self.root} has format version {version}, newer than this "
                             f"cryptograph ({STORE_FORMAT['version']}): upgrade cryptograph to read it")
        return version

    def _files(self) -> list[tuple[_Kind, str | None, str, Path]]:
        """Every stored (kind, market, symbol, path), in layout order."""
        out = []
        for kind in (KLINES, FUNDING, BOOK):
            markets: tuple[str | None, ...] = MARKETS if kind.per_market else (None,)
            for market in markets:
                folder = self.root / kind.name / market if market else self.root / kind.name
                out.extend((kind, market, sym, folder / f"{sym}.parquet") for sym in self._list(folder))
        return out

    def check(self) -> list[FileReport]:
        """Every stored file that cannot be read or breaks a rule of :func:`find_problems`, with its problems."""
        self._require_root()
        reports = []
        for kind, market, sym, path in self._files():
            try:
                df = self._load(path, kind)
            except StoreError as exc:
                reports.append(FileReport(kind.name, market, sym, path, [str(exc)], repairable=False))
                continue
            problems = find_problems(df, kind)
            if problems:
                reports.append(FileReport(kind.name, market, sym, path, problems, len(df), len(df)))
        return reports

    def repair(self, dry_run: bool = False) -> list[FileReport]:
        """Fix every file :meth:`check` reports, explicitly; returns what was (or, ``dry_run``, would be) done.

        Per file: rows breaking a value rule (:func:`row_faults`, off-hour
        candles included) are dropped, duplicated timestamps keep the last row
        in file order (the store's "later row wins" rule), rows are sorted. The
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
            reports = self.check()
            for report in reports:
                if report.repairable:
                    report.rows_after = len(_repaired(self._load(report.path, _KINDS[report.kind]), _KINDS[report.kind]))
            return reports
        self._require_root()
        self.check_marker()
        with self._locked(self.root, lock_path=self.root / REPAIR_LOCK):
            reports = self.check()
            run = _BackupRun(self.root / BACKUP_DIR)
            done: list[FileReport] = []
            for report in reports:
                if not report.repairable:
                    continue
                try:
                    self._repair_file(report, run)
                except StoreError as exc:
                    raise StoreError(f"{exc}{_repaired_so_far(done)}") from exc
                done.append(report)
        return reports

    def _repair_file(self, report: FileReport, run: "_BackupRun") -> None:
        """Back ``report.path`` up into ``run``'s folder, then rewrite it without its bad rows."""
        kind = _KINDS[report.kind]
        with self._locked(report.path):
            df = self._load(report.path, kind)
            fixed = _repaired(df, kind)
            report.rows_before, report.rows_after = len(df), len(fixed)
            backup = run.copy(report.path, report.path.relative_to(self.root))
            try:
                self._atomic_write(report.path, fixed, kind)
            except StoreError as exc:
                raise StoreError(f"{exc}; that file was not changed (a copy is in {backup})") from exc
            report.backup = backup


#: Lock file in the store root that :meth:`Store.repair` holds for its whole run.
REPAIR_LOCK = ".repair.lock"
_KINDS = {k.name: k for k in (KLINES, FUNDING, BOOK)}


class _BackupRun:
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


def _repaired_so_far(done: list[FileReport]) -> str:
    """`` (already repaired in this run: ...)`` for a failure message; empty when nothing was."""
    if not done:
        return "; no file was repaired in this run"
    return "; already repaired in this run: " + ", ".join(
        f"{r.kind}/{r.market + '/' if r.market else ''}{r.symbol} (original in {r.backup})" for r in done)


def _repaired(df: pd.DataFrame, kind: _Kind) -> pd.DataFrame:
    """``df`` without rows breaking a value rule, the last of repeated timestamps kept, sorted."""
    bad = np.zeros(len(df), dtype=bool)
    for mask in row_faults(df, kind).values():
        bad |= mask
    fixed = df[~bad]
    return fixed[~fixed.index.duplicated(keep="last")].sort_index(kind="stable")


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


_ARROW_TYPES = {"float64": pa.float64(), "int64": pa.int64(), "Int64": pa.int64()}
_ARROW_SCHEMAS: dict[str, pa.Schema] = {}


def _arrow_schema(kind: _Kind) -> pa.Schema:
    """The schema ``Table.from_pandas`` gives a frame of this kind (pandas metadata included)."""
    if kind.name not in _ARROW_SCHEMAS:
        empty = _empty_frame(kind)
        _ARROW_SCHEMAS[kind.name] = pa.Table.from_pandas(empty, preserve_index=True).schema
    return _ARROW_SCHEMAS[kind.name]


def _table_from_frame(df: pd.DataFrame, kind: _Kind) -> pa.Table:
    """Frame in the kind's schema -> the table ``Table.from_pandas`` would make, built directly.

    Same columns (index last), types, NaN-as-null convention and pandas
    metadata, so ``pd.read_parquet`` restores the frame; ~3x cheaper on the
    small frames an hourly refresh writes.
    """
    schema = _arrow_schema(kind)
    arrays = [pa.array(df[c].array if t == "Int64" else df[c].to_numpy(), type=_ARROW_TYPES[t], from_pandas=True)
              for c, t in kind.columns.items()]
    index = df.index.as_unit("ns").tz_convert("UTC")
    arrays.append(pa.array(index.asi8, type=pa.int64()).cast(schema.field(kind.index).type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _frame_from_own_table(table: pa.Table, kind: _Kind) -> pd.DataFrame | None:
    """Arrow table -> frame for files in exactly this module's schema, else None.

    Builds the frame from the column buffers directly: about 3x cheaper than
    ``Table.to_pandas`` on the small files an hourly refresh rewrites, which
    matters when it touches hundreds of symbols per cycle.
    """
    schema = table.schema
    if [n for n in schema.names if n != kind.index] != list(kind.columns) or kind.index not in schema.names:
        return None
    index_type = schema.field(kind.index).type
    if not (pa.types.is_timestamp(index_type) and index_type.unit == "ns" and index_type.tz in ("UTC", "+00:00")):
        return None
    if any(schema.field(c).type != _ARROW_TYPES[t] for c, t in kind.columns.items()):
        return None
    index_col = table.column(kind.index)
    if index_col.null_count:
        return None
    index = pd.DatetimeIndex(index_col.cast(pa.int64()).to_numpy().view("M8[ns]"), name=kind.index).tz_localize("UTC")
    if not (index.is_monotonic_increasing and index.is_unique):
        return None
    columns: dict[str, object] = {}
    for c, t in kind.columns.items():
        col = table.column(c)
        if t == "Int64":
            columns[c] = pd.arrays.IntegerArray(col.fill_null(0).to_numpy(), col.is_null().to_numpy(zero_copy_only=False))
        elif t == "int64" and col.null_count:
            return None  # a non-nullable integer column with holes: let the general path reject or coerce it
        else:
            columns[c] = col.to_numpy(zero_copy_only=False)  # nulls (how pyarrow writes NaN) -> NaN
    return pd.DataFrame(columns, index=index)




def _slice(df: pd.DataFrame, start, end) -> pd.DataFrame:
    if start is not None:
        df = df[df.index >= to_utc_index([start], df.index.name)[0]]
    if end is not None:
        df = df[df.index <= to_utc_index([end], df.index.name)[0]]
    return df


def _same_rows(old: pd.DataFrame, new: pd.DataFrame) -> bool:
    """True if every row of ``new`` is already stored with identical values."""
    common = old.loc[new.index]
    return common.equals(new)


def _read_or_note(problems: list[str], read, *args):
    """``read(*args)``, or None with the StoreError's message appended to ``problems`` (for ``info``)."""
    try:
        return read(*args)
    except StoreError as exc:
        problems.append(str(exc))
        return None
