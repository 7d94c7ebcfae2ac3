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

Format (``STORE.json``: ``{"format": "cryptograph-store", "version": 3, "book_time": ...}``).
Formats 1 and 2 kept one file per (kind, market, symbol), rewritten whole on
every upsert; a store in that layout (a marker of version 1 or 2, no marker but
old files, or old files in place) is refused by every reader and writer with
one line naming ``python -m gnn_market.data migrate --store DIR``
(:mod:`gnn_market.migrate`). ``book_time`` says what a book ``snapshot_time``
means: ``"capture"``, the true capture time (format 2 and every new store), or
``"floored"``: format 1 collectors floored a snapshot taken up to 5 minutes
after an hour to that hour, so an on-the-hour stamp may hide up to 5 minutes of
the next candle; :func:`gnn_market.panel.load_panel` reads such stamps as their
latest possible capture time (:data:`LEGACY_BOOK_DELAY` later). A migrated
format 1 store keeps ``"floored"``: old stamps are never silently reinterpreted.
Every writer (each upsert, :meth:`Store.repair`, the importers before their
first write) checks ``STORE.json`` the way readers do (:meth:`Store.format_version`):
a store of a newer format, or whose marker is garbage, empty, not an object or
a folder, is never written to.

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

import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from .atomic import TMP_SUFFIX, atomic_path, resolve_link, temp_name_prefix, write_text_atomic
from .errors import DataError, StoreError
from .store_layout import (
    KINDS,
    LAYOUT_VERSION,
    LegacyStoreError,
    files_in_months,
    frame_from_own_table,
    has_legacy_files,
    is_own_schema,
    legacy_message,
    list_months,
    list_symbols,
    markets_of,
    month_keys,
    month_name,
    month_path,
    outside_month,
    symbol_dir,
    table_from_frame,
)
from .store_repair import BackupRun, repaired, repaired_so_far
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
    validate_market,
    validate_symbol,
)
from .timeutil import HOUR, to_utc_index

#: Longest wait for another process's write of the same file (a year of candles writes in ms).
LOCK_TIMEOUT_S = 120.0
#: ``format`` and ``version`` of ``STORE.json`` this cryptograph writes (format 3: one file per month).
STORE_FORMAT = {"format": "cryptograph-store", "version": LAYOUT_VERSION}
#: Meanings of a book ``snapshot_time`` (``STORE.json`` ``book_time``): true capture time, or floored (format 1).
BOOK_TIMES = ("capture", "floored")
#: Folder under the store root where :meth:`Store.repair` keeps the original of every file it changes.
BACKUP_DIR = "repair-backup"
#: Lock file in the store root that :meth:`Store.repair` holds for its whole run.
REPAIR_LOCK = ".repair.lock"
#: Codec of the month files (see :meth:`Store._atomic_write`).
COMPRESSION = "snappy"
#: Threads writing the month files of one upsert at once.
WRITE_THREADS = 8
#: Threads reading month files at once (pyarrow releases the GIL while it reads and decodes).
READ_THREADS = 8
_KINDS = KINDS


def marker_text(book_time: str = "capture") -> str:
    """The ``STORE.json`` of a format 3 store."""
    return json.dumps({**STORE_FORMAT, "book_time": book_time}) + "\n"


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
    def _folder(self, kind: _Kind, symbol: str, market: str | None) -> Path:
        """The symbol's folder of ``kind`` (``market`` ignored for funding)."""
        validate_symbol(symbol)
        if kind is not FUNDING:
            validate_market(market or "")
        return symbol_dir(self.root, kind, market or "perp", symbol)

    def month_file(self, kind: str, symbol: str, month: str, market: str = "spot") -> Path:
        """Path of one month file (``month`` ``"YYYY-MM"``), whether or not it exists (for tools and tests)."""
        year, mon = (int(p) for p in month.split("-"))
        return month_path(self._folder(_KINDS[kind], symbol, market), year * 12 + mon - 1)

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
                ) -> tuple[list[tuple[int, Path]], bool]:
        """The symbol's month files overlapping ``[start, end]``, and whether it has any month file at all.

        ``checked``: the caller already ran :meth:`_require_current` (a multi-symbol read checks once).
        """
        folder = self._folder(kind, symbol, market)
        if not checked:
            self._require_current()
        months = list_months(folder)
        stored = bool(months)
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
        return _slice(self._load_months(months, kind, [_read_table(p) for _, p in months]), start, end)

    def _load_months(self, months: list[tuple[int, Path]], kind: _Kind, tables: list[pa.Table]) -> pd.DataFrame:
        """Month files (``[(key, path)]``, ascending) and their tables -> one validated frame.

        Fast path: files as this module writes them are concatenated and checked at once. Any
        problem (or a foreign file) goes through the file-by-file path, which names the bad file.
        """
        if all(is_own_schema(t.schema, kind) for t in tables):
            df = frame_from_own_table(pa.concat_tables(tables) if len(tables) > 1 else tables[0], kind)
            if df is not None and files_in_months(df.index, [k for k, _ in months], [t.num_rows for t in tables]) \
                    and not find_problems(df, kind):
                return df
        frames = [self._checked(_frame_of(table, path, kind), path, kind, key)
                  for (key, path), table in zip(months, tables)]
        return pd.concat(frames) if len(frames) > 1 else frames[0]

    def _checked(self, df: pd.DataFrame, path: Path, kind: _Kind, key: int) -> pd.DataFrame:
        """``df`` (month file ``path`` of month ``key``), or :class:`BadStoreFile` naming every problem."""
        problems = _month_problems(df, kind, key)
        if problems:
            raise BadStoreFile(f"invalid store file {path}: {'; '.join(problems)}; nothing was changed: "
                               f"'python -m gnn_market.data repair --store {self.root}' drops the bad rows "
                               f"(keeping a backup)")
        return df

    def _load(self, path: Path, kind: _Kind) -> pd.DataFrame:
        """The file as a frame in the kind's schema, sorted if its timestamps are unique; not validated."""
        return _frame_of(_read_table(path), path, kind)

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
        load reads ~36 small files per symbol and kind, and this keeps it as fast as reading
        one file per symbol was. ``start``/``end``: inclusive bounds on the time index.
        """
        spec = _KINDS.get(kind)
        if spec is None:
            raise DataError(f"unknown kind {kind!r}: expected klines, funding or book")
        self._require_current()
        found = {s: self._months(spec, s, market, start, end, checked=True) for s in symbols}
        if spec is KLINES:
            for s, (_, stored) in found.items():
                if not stored:
                    raise StoreError(f"no klines for {s} ({market}) in store {self.root}")
        work = [(s, months) for s, (months, _) in found.items() if months]

        def load(item: tuple[str, list[tuple[int, Path]]]) -> pd.DataFrame:
            months = item[1]
            return _slice(self._load_months(months, spec, [_read_table(p) for _, p in months]), start, end)

        with ThreadPoolExecutor(max_workers=max(1, min(READ_THREADS, len(work)))) as pool:
            frames = dict(zip((s for s, _ in work), pool.map(load, work)))
        return {s: frames[s] if s in frames else _empty_frame(spec) for s in symbols}

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
        try:
            column = pq.read_table(path, columns=[spec.index]).column(0)
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            raise BadStoreFile(f"corrupt store file {path}: {exc}") from exc
        if column.type == pa.timestamp("ns", "UTC") and not column.null_count:
            index = pd.DatetimeIndex(column.cast(pa.int64()).to_numpy().view("M8[ns]")).tz_localize("UTC")
        else:  # a foreign file: the general, validated path
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
                if fresh == 0 and len(old) and _same_rows(old, part):
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
        """Raise :class:`StoreError` unless this store's ``STORE.json`` is absent or one this version can write.

        Every writer calls it before changing anything (readers call :meth:`format_version`): a store
        of a newer format or the old layout, or whose marker is damaged, is never written to.
        """
        self.format_version()

    @contextmanager
    def _locked(self, path: Path, lock_path: Path | None = None) -> Iterator[None]:
        """Hold ``path``'s cross-process write lock (waits up to :data:`LOCK_TIMEOUT_S`).

        ``lock_path``: the lock file (default ``.<name>.lock`` beside ``path``, whose folder is created).
        """
        try:
            if lock_path is None:
                path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(lock_path or path.parent / f".{path.name}.lock", timeout=LOCK_TIMEOUT_S)
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
            # Snappy, the Parquet default every engine reads: on month-sized files it decodes in about
            # half zstd's CPU time (files ~10% larger), which keeps full-history loads fast.
            pq.write_table(table_from_frame(df, kind), tmp, compression=COMPRESSION, use_dictionary=False)

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
        self._require_current()
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
    def marker(self) -> dict | None:
        """``STORE.json`` as checked by :meth:`format_version` (None: no marker); any version >= 1 accepted.

        For :mod:`gnn_market.migrate`, which must read old markers; everything else calls :meth:`format_version`.
        """
        marker = self.root / "STORE.json"
        if not marker.exists() and not marker.is_symlink():
            return None
        try:
            text = marker.read_text(encoding="utf-8")
            info = json.loads(text)
        except (OSError, ValueError) as exc:  # a folder, a dangling link, empty, garbage, not UTF-8
            raise StoreError(f"unreadable store marker {marker}: {getattr(exc, 'strerror', None) or exc}; "
                             f"a cryptograph store's marker reads {marker_text().strip()}") from exc
        version = info.get("version") if isinstance(info, dict) else None
        if (not isinstance(info, dict) or info.get("format") != STORE_FORMAT["format"]
                or type(version) is not int or version < 1):
            raise StoreError(f"store marker {marker} is not a cryptograph store marker ({text.strip()[:80]!r}; "
                             f"expected {marker_text().strip()}): is {self.root} a cryptograph store?")
        if version > STORE_FORMAT["version"]:
            raise StoreError(f"store {self.root} has format version {version}, newer than this "
                             f"cryptograph ({STORE_FORMAT['version']}): upgrade cryptograph to read it")
        if version == STORE_FORMAT["version"] and info.get("book_time", "capture") not in BOOK_TIMES:
            raise StoreError(f"store marker {marker} has book_time {info.get('book_time')!r}; expected one of "
                             f"{', '.join(BOOK_TIMES)}")
        return info

    def format_version(self) -> int:
        """``version`` of ``STORE.json`` (3; a folder without marker or old files is a new store, 3 too).

        Raises :class:`LegacyStoreError` (naming ``migrate``) for a store in the one-file-per-symbol
        layout of formats 1-2, :class:`StoreError` for a newer or damaged marker.
        """
        info = self.marker()
        if info is None:
            if has_legacy_files(self.root):
                raise LegacyStoreError(legacy_message(self.root, "has no STORE.json and holds files in the "
                                                                 "one-file-per-symbol layout of format 1"))
            return STORE_FORMAT["version"]
        if info["version"] < STORE_FORMAT["version"]:
            raise LegacyStoreError(legacy_message(self.root, f"is in format {info['version']} (one file per symbol)"))
        if has_legacy_files(self.root):
            raise LegacyStoreError(legacy_message(self.root, "holds files in the one-file-per-symbol layout of "
                                                             "format 1-2 (e.g. klines/spot/<SYMBOL>.parquet)"))
        return info["version"]

    def book_time(self) -> str:
        """What a book ``snapshot_time`` means here: ``"capture"`` or ``"floored"`` (format 1, see module doc)."""
        self.format_version()
        info = self.marker()
        return "capture" if info is None else info.get("book_time", "capture")

    def _files(self) -> list[tuple[_Kind, str | None, str, int, Path]]:
        """Every stored month file: (kind, market (None for funding), symbol, month key, path), in layout order."""
        out = []
        for kind in (KLINES, FUNDING, BOOK):
            for market in markets_of(kind):
                for sym in list_symbols(self.root, kind, market):
                    out.extend((kind, None if kind is FUNDING else market, sym, key, path)
                               for key, path in list_months(symbol_dir(self.root, kind, market, sym)))
        return out

    def check(self) -> list[FileReport]:
        """Every stored file that cannot be read or breaks a rule of :func:`find_problems`, with its problems."""
        self._require_current()
        reports = []
        for kind, market, sym, key, path in self._files():
            try:
                df = self._load(path, kind)
            except StoreError as exc:
                reports.append(FileReport(kind.name, market, sym, path, [str(exc)], repairable=False, month=key))
                continue
            problems = _month_problems(df, kind, key)
            if problems:
                reports.append(FileReport(kind.name, market, sym, path, problems, len(df), len(df), month=key))
        return reports

    def repair(self, dry_run: bool = False) -> list[FileReport]:
        """Fix every file :meth:`check` reports, explicitly; returns what was (or, ``dry_run``, would be) done.

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
            reports = self.check()
            for report in reports:
                if report.repairable:
                    kind = _KINDS[report.kind]
                    report.rows_after = len(repaired(self._load(report.path, kind), kind, report.month))
            return reports
        self._require_root()
        self.check_marker()
        with self._locked(self.root, lock_path=self.root / REPAIR_LOCK):
            reports = self.check()
            run = BackupRun(self.root / BACKUP_DIR)
            done: list[FileReport] = []
            for report in reports:
                if not report.repairable:
                    continue
                try:
                    self._repair_file(report, run)
                except StoreError as exc:
                    raise StoreError(f"{exc}{repaired_so_far(done)}") from exc
                done.append(report)
        return reports

    def _repair_file(self, report: FileReport, run: BackupRun) -> None:
        """Back ``report.path`` up into ``run``'s folder, then rewrite it without its bad rows (or remove it)."""
        kind = _KINDS[report.kind]
        with self._locked(report.path):
            df = self._load(report.path, kind)
            fixed = repaired(df, kind, report.month)
            report.rows_before, report.rows_after = len(df), len(fixed)
            backup = run.copy(report.path, report.path.relative_to(self.root))
            try:
                if len(fixed):
                    self._atomic_write(report.path, fixed, kind)
                else:  # an empty month file would list a symbol without data
                    resolve_link(report.path).unlink()
            except (StoreError, OSError) as exc:
                raise StoreError(f"{exc}; that file was not changed (a copy is in {backup})") from exc
            report.backup = backup


def _read_table(path: Path) -> pa.Table:
    """One stored file as an Arrow table, or :class:`BadStoreFile` naming it."""
    try:
        with pq.ParquetFile(path, pre_buffer=False) as fh:  # small local files: buffering them first costs more
            return fh.read(use_threads=False)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise BadStoreFile(f"corrupt store file {path}: {exc}") from exc


def _frame_of(table: pa.Table, path: Path, kind: _Kind) -> pd.DataFrame:
    """A stored file's table as a frame in the kind's schema, sorted if its times are unique; not validated."""
    fast = frame_from_own_table(table, kind)
    if fast is not None:
        return fast  # a file as this module writes it: no pandas metadata round trip, no coercion
    try:
        df = table.to_pandas()
    except (pa.ArrowException, ValueError) as exc:
        raise BadStoreFile(f"corrupt store file {path}: {exc}") from exc
    if not _has_schema(df, kind):
        try:
            df = _normalise(df, kind, check=False)
        except (DataError, OverflowError) as exc:
            raise BadStoreFile(f"corrupt store file {path}: {exc}") from exc
    if df.index.is_unique and not df.index.is_monotonic_increasing:
        df = df.sort_index(kind="stable")  # row order is not data; duplicates stay for find_problems
    return df


def _month_problems(df: pd.DataFrame, kind: _Kind, key: int) -> list[str]:
    """:func:`find_problems` plus the layout's rule: every row of a month file lies in its month."""
    problems = find_problems(df, kind)
    if df.index.hasnans:
        return problems
    outside = outside_month(df.index, key)
    if outside.any():
        first = df.index[int(np.flatnonzero(outside)[0])]
        problems.append(f"{int(outside.sum())} row(s) outside month {month_name(key)} "
                        f"(first at {first:%Y-%m-%d %H:%M:%S})")
    return problems


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


#: Former names (tests and tools import them from here).
_table_from_frame = table_from_frame
_frame_from_own_table = frame_from_own_table


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
