"""On-disk market store: one Parquet file per (kind, market, symbol).

Layout under the store root::

    STORE.json                         format marker and version
    klines/<market>/<SYMBOL>.parquet   hourly candles, index ``open_time``
    funding/<SYMBOL>.parquet           perpetual funding, index ``funding_time``
    book/<market>/<SYMBOL>.parquet     top-20 book snapshots, index ``snapshot_time``

``market`` is ``"spot"`` or ``"perp"`` (USDT-M perpetual futures). All times are
UTC ``datetime64[ns, UTC]``. Raw columns keep Binance's meaning and units.

Guarantees:

* **Idempotent upserts.** Writers merge new rows into the stored rows by
  index; a row present in both takes the new values. Re-running any download
  or import never duplicates or drops a row.
* **Crash safety.** Every write goes to a temporary file in the same folder,
  is flushed to disk, then atomically renamed over the old file. A process
  killed mid-write leaves the previous complete file; leftover temporary files
  are ignored by readers and removed by the next write.
* **Never lose data.** A stored file that cannot be read is reported as a
  :class:`StoreError` and is never overwritten.
* **Gaps stay gaps.** Nothing is filled; :meth:`Store.gaps` reports them.

* **Many writers.** Each upsert holds a cross-process lock on its file
  (``.<file>.lock`` beside it, :mod:`filelock`) over the whole
  read-merge-write, so two processes writing the same symbol (two imports, or
  ``collect`` while a ``backfill`` runs) never lose each other's rows. Readers
  take no lock: the rename makes every read see a complete file.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from .atomic import TMP_SUFFIX, atomic_path, temp_name_prefix, write_text_atomic
from .errors import DataError, StoreError
from .timeutil import HOUR, to_utc_index

MARKETS = ("spot", "perp")
SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,30}$")
#: Longest wait for another process's write of the same file (a year of candles writes in ms).
LOCK_TIMEOUT_S = 120.0
STORE_FORMAT = {"format": "cryptograph-store", "version": 1}

#: Hourly candle columns and dtypes. ``trades`` is nullable (``pd.NA`` where the
#: source does not report it); float columns are NaN where unknown.
KLINE_COLUMNS: dict[str, str] = {
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "float64",  # base asset
    "quote_volume": "float64",  # quote asset (USDT)
    "trades": "Int64",
    "taker_buy_volume": "float64",  # base asset
    "taker_buy_quote_volume": "float64",
}
KLINE_REQUIRED = ("open", "high", "low", "close", "volume")

#: Funding events of a perpetual. ``funding_rate`` is per funding interval
#: (e.g. 0.0001 = 0.01% per 8 h); ``mark_price`` is NaN where unknown.
FUNDING_COLUMNS: dict[str, str] = {"funding_rate": "float64", "mark_price": "float64"}
FUNDING_REQUIRED = ("funding_rate",)

#: Summary of one top-of-book snapshot (top ``levels`` levels, usually 20).
#: ``spread`` is the absolute spread ``best_ask - best_bid`` in quote units;
#: ``bid_qty``/``ask_qty`` are summed base quantities over the levels.
BOOK_COLUMNS: dict[str, str] = {
    "best_bid": "float64",
    "best_ask": "float64",
    "best_bid_qty": "float64",
    "best_ask_qty": "float64",
    "bid_qty": "float64",
    "ask_qty": "float64",
    "bid_notional": "float64",
    "ask_notional": "float64",
    "spread": "float64",
    "levels": "int64",
}
BOOK_REQUIRED = ("best_bid", "best_ask", "bid_qty", "ask_qty")


@dataclass(frozen=True)
class _Kind:
    name: str
    index: str
    columns: dict[str, str]
    required: tuple[str, ...]
    per_market: bool


KLINES = _Kind("klines", "open_time", KLINE_COLUMNS, KLINE_REQUIRED, per_market=True)
FUNDING = _Kind("funding", "funding_time", FUNDING_COLUMNS, FUNDING_REQUIRED, per_market=False)
BOOK = _Kind("book", "snapshot_time", BOOK_COLUMNS, BOOK_REQUIRED, per_market=True)


def is_valid_symbol(symbol: str) -> bool:
    """True if ``symbol`` is safe to use as a file name (``^[A-Z0-9]{2,30}$``)."""
    return isinstance(symbol, str) and bool(SYMBOL_PATTERN.match(symbol))


def validate_symbol(symbol: str) -> str:
    """Return ``symbol`` or raise :class:`DataError` if it is not ``^[A-Z0-9]{2,30}$``."""
    if not is_valid_symbol(symbol):
        raise DataError(f"invalid symbol {symbol!r}: expected 2-30 characters A-Z or 0-9")
    return symbol


def validate_market(market: str) -> str:
    if market not in MARKETS:
        raise DataError(f"unknown market {market!r}: expected one of {', '.join(MARKETS)}")
    return market








def _empty_frame(kind: _Kind) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=t) for c, t in kind.columns.items()})
    frame.index = pd.DatetimeIndex([], tz="UTC", name=kind.index).as_unit("ns")
    return frame


def _normalise(df: pd.DataFrame, kind: _Kind) -> pd.DataFrame:
    """Coerce ``df`` to the kind's schema: UTC index, known columns, dtypes."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{kind.name}: expected a pandas DataFrame, got {type(df).__name__}")
    if _has_schema(df, kind):  # already coerced (our own client and reader): validate only
        _check_values(df, kind)
        return df
    if kind.index in df.columns:
        df = df.set_index(kind.index)
    missing = [c for c in kind.required if c not in df.columns]
    if missing:
        raise DataError(f"{kind.name}: missing required columns {missing}")
    try:
        index = to_utc_index(df.index, kind.index)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{kind.name}: index is not a datetime: {exc}") from exc
    columns: dict[str, object] = {}
    for col, dtype in kind.columns.items():
        if col in df.columns:
            values = df[col].to_numpy()
            try:
                if dtype == "Int64":
                    columns[col] = pd.array(pd.to_numeric(values), dtype="Float64").round().astype("Int64")
                elif dtype == "int64":
                    columns[col] = pd.to_numeric(values).astype("int64")
                else:
                    columns[col] = pd.to_numeric(values).astype("float64")
            except (TypeError, ValueError) as exc:
                raise DataError(f"{kind.name}: column {col!r} is not numeric: {exc}") from exc
        elif dtype == "Int64":
            columns[col] = pd.array([pd.NA] * len(index), dtype="Int64")
        else:
            columns[col] = np.full(len(index), 0 if dtype == "int64" else np.nan, dtype=dtype)
    # One constructor call: building column by column costs ~10x more on small frames.
    out = pd.DataFrame(columns, index=index)
    _check_values(out, kind)
    return out


def _check_values(df: pd.DataFrame, kind: _Kind) -> None:
    if df.index.hasnans:
        raise DataError(f"{kind.name}: index has missing timestamps")
    for col in kind.required:
        vals = df[col].to_numpy(dtype="float64", na_value=np.nan)
        if np.isinf(vals).any():
            raise DataError(f"{kind.name}: column {col!r} has infinite values")


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
        try:
            with pq.ParquetFile(path) as fh:
                table = fh.read()
            fast = _frame_from_own_table(table, kind)
            if fast is not None:
                return fast  # a file as this module writes it: no pandas metadata round trip, no coercion
            df = table.to_pandas()
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise StoreError(f"corrupt store file {path}: {exc}") from exc
        if _has_schema(df, kind):
            return df
        try:
            return _normalise(df, kind)
        except DataError as exc:
            raise StoreError(f"corrupt store file {path}: {exc}") from exc

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
            raise StoreError(f"corrupt store file {path}: {exc}") from exc
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
        new = _normalise(df, kind)
        if kind is KLINES and len(new):
            off_grid = new.index[(new.index.asi8 % HOUR.value) != 0]
            if len(off_grid):
                raise DataError(f"klines for {symbol}: open_time {off_grid[0]} is not on the hour")
        new = new[~new.index.duplicated(keep="last")]  # within one write, the later row wins
        self._prepare_folder(path)
        with self._locked(path):
            old = self._read(kind, symbol, market, missing_ok=True) if path.exists() else _empty_frame(kind)
            added = int((~new.index.isin(old.index)).sum())
            if added == 0 and len(old) and _same_rows(old, new):
                return 0  # nothing to change: skip the rewrite
            merged = pd.concat([old[~old.index.isin(new.index)], new]).sort_index()
            self._atomic_write(path, merged, kind)
        return added

    def _prepare_folder(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            marker = self.root / "STORE.json"
            if not marker.exists():
                write_text_atomic(marker, json.dumps(STORE_FORMAT) + "\n")
        except OSError as exc:
            raise StoreError(f"cannot write to store {self.root}: {exc.strerror or exc}") from exc

    @contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        """Hold ``path``'s cross-process write lock (waits up to :data:`LOCK_TIMEOUT_S`)."""
        lock = FileLock(path.parent / f".{path.name}.lock", timeout=LOCK_TIMEOUT_S)
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
        """One row per (market, symbol): range, rows, missing hours, funding and book rows."""
        self._require_root()
        rows = []
        for market in MARKETS:
            for sym in self.symbols(market):
                k = self.klines(sym, market)
                gaps = find_gaps(k.index)
                rows.append({
                    "market": market,
                    "symbol": sym,
                    "first": k.index.min() if len(k) else pd.NaT,
                    "last": k.index.max() if len(k) else pd.NaT,
                    "rows": len(k),
                    "gaps": len(gaps),
                    "missing_hours": int(gaps["hours"].sum()) if len(gaps) else 0,
                    "funding_rows": len(self.funding(sym)) if market == "perp" else 0,
                    "book_rows": len(self.book(sym, market)),
                })
        return pd.DataFrame(rows)


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


def _has_schema(df: pd.DataFrame, kind: _Kind) -> bool:
    """True if ``df`` already is exactly in the kind's schema (as this module writes it)."""
    index = df.index
    return (isinstance(index, pd.DatetimeIndex) and str(index.tz) == "UTC" and index.unit == "ns"
            and index.name == kind.index and list(df.columns) == list(kind.columns)
            and [str(t) for t in df.dtypes] == list(kind.columns.values())
            and index.is_monotonic_increasing and index.is_unique)


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
