"""On-disk market store: Hive-partitioned Parquet, one file per (kind, market, symbol, UTC month).

Layout under the store root (format 3; the contract other tools may rely on is in docs/data.md)::

    STORE.json                                                    format marker (see below)
    klines/market=<spot|perp>/symbol=<SYMBOL>/month=<YYYY-MM>/data.parquet   hourly candles, time ``open_time``
    book/market=<spot|perp>/symbol=<SYMBOL>/month=<YYYY-MM>/data.parquet     top-20 book snapshots, ``snapshot_time``
    funding/market=perp/symbol=<SYMBOL>/month=<YYYY-MM>/data.parquet         perpetual funding, ``funding_time``
    repair-backup/<stamp>-<pid>-<random>/...   originals of files changed by one :meth:`Store.repair` run

``market`` is ``"spot"`` or ``"perp"`` (USDT-M perpetual futures). All times are
UTC ``datetime64[ns, UTC]`` (``timestamp[ns, UTC]`` in the files). A month file
holds exactly the rows whose time falls in its UTC month. Raw columns keep
Binance's meaning and units. The paths and file format live in
:mod:`gnn_market.store_layout`.

Format: ``STORE.json`` (:mod:`gnn_market.store_marker`) says ``version`` 3 and ``book_time``. A store
in the one-file-per-symbol layout of formats 1-2 is refused by every reader and writer with one line
naming ``python -m gnn_market.data migrate --store DIR`` (:mod:`gnn_market.migrate`); so is a store of a
newer format or with a damaged marker (never written to). ``book_time`` says what a book
``snapshot_time`` means: ``"capture"``, the true capture time (format 2 and every new store), or
``"floored"``: format 1 collectors floored a snapshot taken up to 5 minutes after an hour to the hour, so
:func:`gnn_market.panel.load_panel` reads such stamps as their latest possible capture time
(:data:`LEGACY_BOOK_DELAY` later). A migrated format 1 store keeps ``"floored"``: old stamps are never
silently reinterpreted.

Guarantees:

* **Idempotent upserts.** Writers merge new rows into the stored rows by
  index; a row present in both takes the new values. Re-running any download
  or import never duplicates or drops a row. Inside *one* write, rows sharing
  a timestamp collapse to the **later** row (the REST client and the archive
  importer rely on this: a re-sent candle or a later file wins).
* **Valid values only** (:func:`find_problems`, vectorised): unique
  timestamps, each in its file's month; kline times on the hour; kline prices finite, in
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
  candles and rows outside their file's month are dropped, duplicated timestamps keep the last row in file order,
  and the original file is copied to ``repair-backup/`` first (a folder
  per run). Integer times in a file written by another tool are read as
  epoch s, ms, µs or ns by magnitude (:func:`epoch_index`), never blindly as ns.
* **Crash safety.** Every write goes to a temporary file in the same folder,
  is flushed to disk, then atomically renamed over the old file. A process
  killed mid-write leaves the previous complete file; leftover temporary files
  are ignored by readers (and by other engines: their names start with a dot)
  and removed by the next write. An upsert spanning several months writes each
  month file atomically after every touched month was read and checked; a
  process killed between two of them leaves each month old or new, and
  re-running the (idempotent) write completes it. A store file that is a
  symbolic link is written through (the file it leads to is replaced, the link
  stays).
* **Never lose data.** A stored file that cannot be read is reported as a
  :class:`StoreError` and is never overwritten.
* **Gaps stay gaps.** Nothing is filled; :meth:`Store.gaps` reports them.

* **Many writers.** Each upsert holds a cross-process lock on every month file
  it touches (``.data.parquet.lock`` in the month folder, :mod:`filelock`),
  taken in ascending month order (no deadlock) and held over the whole
  read-merge-write, so two processes writing the same symbol (two imports, or
  ``collect`` while a ``backfill`` runs) never lose each other's rows. An
  hourly upsert locks, reads and rewrites the current month only. Readers take
  no lock: the rename makes every read see complete files. A
  :meth:`Store.repair` run also holds the store's ``.repair.lock`` from its
  check to its last write, so two repairs never interleave.
* **Empty writes change nothing.** Upserting no rows creates no file (an empty
  file would list a symbol without data).
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import gnn_market.store_cache as store_cache
import gnn_market.store_health as store_health

from .atomic import TMP_SUFFIX, atomic_path, resolve_link, temp_name_prefix, write_text_atomic
from .errors import DataError, StoreError
from .store_health import BACKUP_DIR, REPAIR_LOCK, find_gaps  # noqa: F401  (their former home)
from .store_layout import (
    KINDS,
    LegacyStoreError,  # noqa: F401  (raised by every reader and writer of an old-layout store)
    fast_frame,
    frame_from_own_table,
    frame_of,
    list_months,
    list_symbols,
    month_keys,
    month_path,
    month_problems,
    read_table,
    same_rows,
    slice_times,
    symbol_dir,
    table_from_frame,
    time_bounds,
    time_column,
    write_lock,
)
from .store_marker import BOOK_TIMES, STORE_FORMAT, book_time, format_version, marker_text, read_marker  # noqa: F401
from .store_schema import (
    BOOK,
    FUNDING,
    KLINES,
    MARKETS,
    BadStoreFile,
    FileReport,
    _empty_frame,
    _Kind,
    _normalise,
    find_problems,  # noqa: F401  (its former home)
    validate_market,
    validate_symbol,
)
from .timeutil import to_utc_index

#: Longest wait for another process's write of the same file (a year of candles writes in ms).
LOCK_TIMEOUT_S = 120.0
#: Codec of the month files (see :meth:`Store._atomic_write`).
COMPRESSION = "snappy"
#: Threads writing the month files of one upsert at once.
WRITE_THREADS = 8
#: Threads reading month files at once (pyarrow releases the GIL while it reads and decodes): one per
#: core, at most 8. More threads than cores only contend: on the 2-core box a warm full-history load of
#: 200 perps took 5.6 s with 8 threads and 4.1 s with 2 (benchmarks/bench_store_read.py).
READ_THREADS = max(1, min(8, os.cpu_count() or 1))
_KINDS = KINDS


class Store:
    """A folder of Parquet files holding hourly market data.

    Args:
        path: root folder. It is created by the first write; readers raise
            :class:`StoreError` if it does not exist.
        read_cache: read closed months through the validated read cache
            (:mod:`gnn_market.store_cache`); None: unless ``CRYPTOGRAPH_STORE_READ_CACHE=0``.

    Example::

        store = Store("data/binance")
        store.symbols("spot")              # ['BTCUSDT', 'ETHUSDT', ...]
        df = store.klines("BTCUSDT")       # index open_time (UTC)
    """

    def __init__(self, path: str | os.PathLike, read_cache: bool | None = None) -> None:
        self.root = Path(path).expanduser()
        self.read_cache = store_cache.enabled_by_default() if read_cache is None else bool(read_cache)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ------------------------------------------------------------------ paths
    def _folder(self, kind: _Kind, symbol: str, market: str | None) -> Path:
        """The symbol's folder of ``kind`` (``market`` ignored for funding)."""
        validate_symbol(symbol)
        if kind is not FUNDING:
            validate_market(market or "")
        return symbol_dir(self.root, kind, market or "perp", symbol)

    def month_file(self, kind: str, symbol: str, month: str, market: str = "spot") -> Path:
        """Path of one month file (``month`` ``"YYYY-MM"``), whether or not it exists (for tools and tests)."""
        if kind not in _KINDS or not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
            raise DataError(f"month file of kind {kind!r}, month {month!r}: expected klines, book or funding and YYYY-MM")
        return month_path(self._folder(_KINDS[kind], symbol, market), int(month[:4]) * 12 + int(month[5:]) - 1)

    def exists(self) -> bool:
        return self.root.is_dir()

    def _require_root(self) -> None:
        if not self.root.exists():
            raise StoreError(f"store not found: {self.root}")
        if not self.root.is_dir():
            raise StoreError(f"store path is not a folder: {self.root}")

    def _require_current(self) -> None:
        """A readable store in this layout (:meth:`format_version` refuses old, newer and damaged ones)."""
        self._require_root()
        self.format_version()

    # ----------------------------------------------------------------- listing
    def markets(self) -> list[str]:
        """Markets that hold at least one kline file."""
        self._require_current()
        return [m for m in MARKETS if list_symbols(self.root, KLINES, m)]

    def symbols(self, market: str = "spot") -> list[str]:
        """Sorted symbols with a kline file in ``market`` (empty list if none)."""
        validate_market(market)
        self._require_current()
        return list_symbols(self.root, KLINES, market)

    def funding_symbols(self) -> list[str]:
        self._require_current()
        return list_symbols(self.root, FUNDING, "perp")

    def book_symbols(self, market: str = "spot") -> list[str]:
        validate_market(market)
        self._require_current()
        return list_symbols(self.root, BOOK, market)

    # ----------------------------------------------------------------- reading
    def _months(self, kind: _Kind, symbol: str, market: str | None, start=None, end=None, checked: bool = False
                ) -> tuple[list[tuple[int, Path]], list[tuple[int, Path]]]:
        """The symbol's month files overlapping ``[start, end]``, and all its month files (``[(key, path)]``).

        ``checked``: the caller already ran :meth:`_require_current` (a multi-symbol read checks once).
        """
        folder = self._folder(kind, symbol, market)
        if not checked:
            self._require_current()
        months = stored = list_months(folder)
        if start is not None:
            first = int(month_keys(to_utc_index([start], kind.index))[0])
            months = [m for m in months if m[0] >= first]
        if end is not None:
            last = int(month_keys(to_utc_index([end], kind.index))[0])
            months = [m for m in months if m[0] <= last]
        return months, stored

    def _read(self, kind: _Kind, symbol: str, market: str | None, missing_ok: bool,
              start=None, end=None) -> pd.DataFrame:
        months, stored = self._months(kind, symbol, market, start, end)
        if not stored and not missing_ok:
            where = f" ({market})" if kind.per_market else ""
            raise StoreError(f"no {kind.name} for {symbol}{where} in store {self.root}")
        if not months:
            return _empty_frame(kind)
        return slice_times(self._read_months(kind, symbol, market, months, stored), start, end)

    def _read_months(self, kind: _Kind, symbol: str, market: str | None, months: list[tuple[int, Path]],
                     stored: list[tuple[int, Path]]) -> pd.DataFrame:
        """The validated frame of ``months`` (of all the symbol's month files ``stored``), through the read cache
        (:func:`gnn_market.store_cache.read_months`: the same rows, fewer file opens) unless it is off."""
        return store_cache.read_months(self.root if self.read_cache else None, kind, market or "perp", symbol,
                                       months, stored, lambda tables: self._load_months(months, kind, tables))

    def _load_months(self, months: list[tuple[int, Path]], kind: _Kind, tables: list[pa.Table]) -> pd.DataFrame:
        """Month files (``[(key, path)]``, ascending) and their tables -> one validated frame.

        Fast path: files as this module writes them are concatenated and checked at once. Any
        problem (or a foreign file) goes through the file-by-file path, which names the bad file.
        """
        df = fast_frame([k for k, _ in months], kind, tables)
        if df is not None:
            return df
        frames = [self._checked(frame_of(table, path, kind), path, kind, key)
                  for (key, path), table in zip(months, tables)]
        return pd.concat(frames) if len(frames) > 1 else frames[0]

    def _checked(self, df: pd.DataFrame, path: Path, kind: _Kind, key: int) -> pd.DataFrame:
        """``df`` (month file ``path`` of month ``key``), or :class:`BadStoreFile` naming every problem."""
        problems = month_problems(df, kind, key)
        if problems:
            raise BadStoreFile(f"invalid store file {path}: {'; '.join(problems)}; nothing was changed: "
                               f"'python -m gnn_market.data repair --store {self.root}' drops the bad rows "
                               f"(keeping a backup)")
        return df

    def _load(self, path: Path, kind: _Kind) -> pd.DataFrame:
        """The file as a frame in the kind's schema, sorted if its timestamps are unique; not validated."""
        return frame_of(read_table(path), path, kind)

    def klines(self, symbol: str, market: str = "spot",
               start: str | pd.Timestamp | None = None,
               end: str | pd.Timestamp | None = None) -> pd.DataFrame:
        """Hourly candles of ``symbol``, indexed by UTC ``open_time``, sorted.

        Columns: see :data:`KLINE_COLUMNS`. ``start``/``end`` are inclusive
        bounds on ``open_time`` (only the month files they overlap are read).
        Raises :class:`StoreError` if absent.
        """
        return self._read(KLINES, symbol, market, missing_ok=False, start=start, end=end)

    def read_many(self, kind: str, symbols: list[str], market: str = "spot", start=None, end=None
                  ) -> dict[str, pd.DataFrame]:
        """``{symbol: frame}`` of ``kind`` (``"klines"``, ``"book"``, ``"funding"``) for many symbols at once.

        The same frames and errors as :meth:`klines` (a symbol without candles: :class:`StoreError`),
        :meth:`book` and :meth:`funding` (empty frame) one by one, but every month file is read by a
        pool of :data:`READ_THREADS` threads (pyarrow decodes without the GIL): a full-history
        load reads ~12 small files per symbol, kind and year of history instead of one, and
        free cores make up for that. ``start``/``end``: inclusive bounds on the time index.
        """
        spec = _KINDS.get(kind)
        if spec is None:
            raise DataError(f"unknown kind {kind!r}: expected klines, funding or book")
        self._require_current()

        def load(symbol: str) -> pd.DataFrame:
            # Listed in the worker, not up front: listing is Python (GIL) work that then overlaps the
            # other threads' decoding, which releases the GIL (0.6 s of 200 perps' 3-year load).
            months, stored = self._months(spec, symbol, market, start, end, checked=True)
            if spec is KLINES and not stored:
                raise StoreError(f"no klines for {symbol} ({market}) in store {self.root}")
            if not months:
                return _empty_frame(spec)
            return slice_times(self._read_months(spec, symbol, market, months, stored), start, end)

        unique = list(dict.fromkeys(symbols))  # a repeated symbol is read (and its cache checked) once
        with ThreadPoolExecutor(max_workers=max(1, min(READ_THREADS, len(unique)))) as pool:
            return dict(zip(unique, pool.map(load, unique)))

    def stored_range(self, symbol: str, market: str | None = "spot",
                     kind: str = "klines") -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """(first, last) stored time of ``symbol``'s ``kind`` ("klines", "funding" or "book"), or None.

        Reads only the time column of the first and last month files, so it is cheap enough
        to call for every symbol of every hourly cycle, however long the history. ``market``
        is ignored for funding.
        """
        spec = _KINDS.get(kind)
        if spec is None:
            raise DataError(f"unknown kind {kind!r}: expected klines, funding or book")
        months, _ = self._months(spec, symbol, market)
        first = next((t for key, p in months if (t := self._edge(p, spec, key, last=False)) is not None), None)
        if first is None:
            return None
        last = next(t for key, p in reversed(months) if (t := self._edge(p, spec, key, last=True)) is not None)
        return first, last

    def _edge(self, path: Path, spec: _Kind, key: int, last: bool) -> pd.Timestamp | None:
        """Earliest (or ``last``: latest) time in one month file, None if it holds no row."""
        bounds = time_bounds(path, spec)  # the footer's statistics: no column read
        if bounds is not None:
            return pd.Timestamp(bounds[1] if last else bounds[0], tz="UTC")
        index = time_column(path, spec)
        if index is None:  # a foreign file: the general, validated path
            index = self._checked(self._load(path, spec), path, spec, key).index
        if len(index) == 0:
            return None
        return index.max() if last else index.min()

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
        """Merge ``df`` into the month files it touches; every touched month is locked, read and checked first."""
        folder = self._folder(kind, symbol, market)
        try:
            new = _normalise(df, kind)
        except DataError as exc:
            where = f" ({market})" if kind.per_market else ""
            raise DataError(f"{symbol}{where}: {exc}; nothing was written") from exc
        new = new[~new.index.duplicated(keep="last")]  # within one write, the later row wins
        if new.empty:
            return 0  # nothing to store: no empty file that would list a symbol without data
        if not new.index.is_monotonic_increasing:
            new = new.sort_index()
        keys = month_keys(new.index)
        cuts = np.flatnonzero(np.diff(keys)) + 1
        parts = [(int(keys[lo]), new.iloc[lo:hi]) for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(new)])]
        self._prepare_folder(folder)
        added, writes = 0, []
        with ExitStack() as stack:
            for key, _ in parts:  # ascending month order: two writers never wait on each other in a cycle
                stack.enter_context(self._locked(month_path(folder, key)))
            for key, part in parts:
                path = month_path(folder, key)
                if not path.exists():  # a new month: nothing to merge
                    added += len(part)
                    writes.append((path, part))
                    continue
                old = self._checked(self._load(path, kind), path, kind, key)
                fresh = int((~part.index.isin(old.index)).sum())
                added += fresh
                if fresh == 0 and len(old) and same_rows(old, part):
                    continue  # nothing to change in this month: skip the rewrite
                writes.append((path, pd.concat([old[~old.index.isin(part.index)], part]).sort_index()))
            self._write_all(writes, kind)
        return added

    def _write_all(self, writes: list[tuple[Path, pd.DataFrame]], kind: _Kind) -> None:
        """:meth:`_atomic_write` every ``(path, frame)``; several at once in threads (each fsync waits on the
        disk, not the CPU), so a backfill of years writes its month files in parallel. The caller holds the locks."""
        if len(writes) <= 1:
            for path, frame in writes:
                self._atomic_write(path, frame, kind)
            return
        with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(writes))) as pool:
            list(pool.map(lambda item: self._atomic_write(item[0], item[1], kind), writes))

    def check_targets(self, kind: str, symbols: list[str], market: str | None = "spot") -> None:
        """Before a multi-symbol write: raise :class:`StoreError` if any write would be refused.

        Checks the store's marker (:meth:`check_marker`) and reads every symbol's stored
        files of ``kind`` (``"klines"``, ``"funding"``, ``"book"``) by the store rules, so an
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
            self._read(spec, symbol, market, missing_ok=True)

    def _prepare_folder(self, folder: Path) -> None:
        """Create ``folder`` and a new store's marker; refuse a store whose marker a reader refuses."""
        marker = self.root / "STORE.json"
        self.check_marker()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not marker.exists():
                write_text_atomic(marker, marker_text())
        except OSError as exc:
            raise StoreError(f"cannot write to store {self.root}: {exc.strerror or exc}") from exc

    def check_marker(self) -> None:
        """Raise :class:`StoreError` unless this store's ``STORE.json`` is absent or one this version can write:
        every writer calls it before changing anything (readers call :meth:`format_version`), so a store of a
        newer format or the old layout, or whose marker is damaged, is never written to."""
        self.format_version()

    def _locked(self, path: Path, lock_path: Path | None = None):
        """``path``'s cross-process write lock (:func:`~gnn_market.store_layout.write_lock`), as a context."""
        return write_lock(self.root, path, lock_path, LOCK_TIMEOUT_S)

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
            # Snappy, the Parquet default every engine reads: on month-sized files it decodes in about
            # half zstd's CPU time (files ~10% larger), which keeps full-history loads fast.
            pq.write_table(table_from_frame(df, kind), tmp, compression=COMPRESSION, use_dictionary=False)

    # ----------------------------------------------------------------- reports and health
    def summary(self) -> pd.DataFrame:
        """One row per (market, symbol): range, rows, missing hours, funding and book rows, problems
        (:func:`gnn_market.store_health.summary`)."""
        return store_health.summary(self)

    def check(self) -> list[FileReport]:
        """Every month file that cannot be read or breaks a store rule (:func:`gnn_market.store_health.check`)."""
        return store_health.check(self)

    def repair(self, dry_run: bool = False) -> list[FileReport]:
        """Fix what :meth:`check` reports, originals backed up (:func:`gnn_market.store_health.repair`)."""
        return store_health.repair(self, dry_run)

    def marker(self) -> dict | None:
        """``STORE.json`` checked, any version (:func:`gnn_market.store_marker.read_marker`); None: no marker."""
        return read_marker(self.root)

    def format_version(self) -> int:
        """3, or :class:`StoreError` for a newer or damaged marker and :class:`LegacyStoreError` (naming
        ``migrate``) for the one-file-per-symbol layout (:func:`gnn_market.store_marker.format_version`)."""
        return format_version(self.root)

    def book_time(self) -> str:
        """What a book ``snapshot_time`` means here: ``"capture"``, or ``"floored"`` (format 1; module doc)."""
        return book_time(self.root)

    def gaps(self, symbol: str, market: str = "spot") -> pd.DataFrame:
        """Missing hours inside the stored range of ``symbol``: one row per gap, columns ``start`` (first
        missing hour), ``end`` (last missing hour) and ``hours`` (count)."""
        return find_gaps(self.klines(symbol, market).index)


_table_from_frame, _frame_from_own_table = table_from_frame, frame_from_own_table  # former names (tests import them)
