"""Where the store keeps its files, and the file format other tools may rely on (docs/data.md, "Store layout").

Format 3 layout, Hive-partitioned so that DuckDB, Polars, Spark and ``pyarrow.dataset`` read
``STORE/<kind>`` as one table with ``market``, ``symbol`` and ``month`` as columns::

    STORE/<kind>/market=<spot|perp>/symbol=<SYMBOL>/month=<YYYY-MM>/data.parquet

``kind`` is ``klines``, ``book`` or ``funding`` (funding only under ``market=perp``). A month file
holds exactly the rows whose time falls in that UTC calendar month; its columns are the kind's value
columns then its time column (``timestamp[ns, UTC]``), without the partition columns.

Format 1 and 2 stores kept one file per (kind, market, symbol): ``klines/<market>/<SYMBOL>.parquet``,
``book/<market>/<SYMBOL>.parquet``, ``funding/<SYMBOL>.parquet`` (:func:`legacy_files`).
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from .errors import DataError, LegacyStoreError, StoreError  # noqa: F401  (LegacyStoreError: old import path)
from .store_schema import (
    BOOK,
    FUNDING,
    KLINES,
    MARKETS,
    BadStoreFile,
    _empty_frame,
    _has_schema,
    _Kind,
    _normalise,
    find_problems,
    is_valid_symbol,
)
from .timeutil import to_utc_index

#: The one file name inside every month folder (the contract: other tools may glob ``*/*/*/data.parquet``).
FILE_NAME = "data.parquet"
#: Store format of this layout (``STORE.json`` ``version``).
LAYOUT_VERSION = 3
KINDS = {k.name: k for k in (KLINES, FUNDING, BOOK)}
_MONTH = re.compile(r"^month=(\d{4})-(\d{2})$")


def legacy_message(root: Path, why: str) -> str:
    """The one-line refusal every reader and writer gives a store in the old layout."""
    return (f"store {root} {why}: cryptograph now keeps one Parquet file per month "
            f"(format {LAYOUT_VERSION}); convert it once with 'python -m gnn_market.data migrate --store {root}' "
            f"(it keeps a backup of the old files until every row is verified)")


def markets_of(kind: _Kind) -> tuple[str, ...]:
    """Markets a kind is stored for: funding exists for perpetuals only."""
    return ("perp",) if kind is FUNDING else MARKETS


def symbol_dir(root: Path, kind: _Kind, market: str, symbol: str) -> Path:
    """``root/<kind>/market=<market>/symbol=<symbol>`` (funding: always ``market=perp``)."""
    market = "perp" if kind is FUNDING else market
    return root / kind.name / f"market={market}" / f"symbol={symbol}"


def month_name(key: int) -> str:
    """Month key (``year * 12 + month - 1``) -> ``"YYYY-MM"``."""
    return f"{key // 12:04d}-{key % 12 + 1:02d}"


def month_path(folder: Path, key: int) -> Path:
    """The month file of month ``key`` inside a symbol folder."""
    return folder / f"month={month_name(key)}" / FILE_NAME


def month_keys(index: pd.DatetimeIndex) -> np.ndarray:
    """[n] int64 UTC month key (``year * 12 + month - 1``) of every time in ``index``; vectorised."""
    months = index.tz_convert("UTC").tz_localize(None).to_numpy().astype("datetime64[M]").astype("int64")
    return months + 1970 * 12  # datetime64[M] counts months since 1970-01


@lru_cache(maxsize=4096)
def month_bounds_ns(key: int) -> tuple[int, int]:
    """``[start, end)`` of month ``key`` in epoch ns (UTC)."""
    start = np.datetime64(month_name(key), "M")
    return int(start.astype("datetime64[ns]").astype("int64")), int((start + 1).astype("datetime64[ns]").astype("int64"))


class MonthFiles(list):
    """``[(month key, month file)]``, ascending, as :func:`list_months` returns it, with ``stats``:
    ``{key: os.stat_result}`` of each file, taken while listing (before any read; the read cache needs them)."""

    stats: dict[int, os.stat_result]


def list_months(folder: Path) -> MonthFiles:
    """``[(month key, month file)]`` of a symbol folder, ascending; folders without a month file are skipped."""
    try:
        with os.scandir(folder) as entries:
            names = [(e.name, e.path) for e in entries if e.name.startswith("month=")]
    except (FileNotFoundError, NotADirectoryError):
        names = []
    except OSError as exc:
        raise StoreError(f"cannot read store folder {folder}: {exc.strerror or exc}") from exc
    out = []
    for name, where in names:
        match = _MONTH.match(name)
        if match and 1 <= int(match.group(2)) <= 12:
            path = os.path.join(where, FILE_NAME)  # plain strings: this runs for every month of every read
            try:
                stat = os.stat(path)  # what os.path.exists did, and the read cache's validation for free
            except (OSError, ValueError):
                continue
            out.append((int(match.group(1)) * 12 + int(match.group(2)) - 1, path, stat))
    out.sort(key=lambda item: item[0])
    months = MonthFiles((key, Path(path)) for key, path, _ in out)
    months.stats = {key: stat for key, _, stat in out}
    return months


def list_symbols(root: Path, kind: _Kind, market: str) -> list[str]:
    """Sorted symbols with at least one month file of ``kind`` in ``market``."""
    base = root / kind.name / f"market={market}"
    try:
        entries = list(os.scandir(base))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise StoreError(f"cannot read store folder {base}: {exc.strerror or exc}") from exc
    names = (e.name[len("symbol="):] for e in entries if e.name.startswith("symbol="))
    return sorted(s for s in names if is_valid_symbol(s) and _has_month(base / f"symbol={s}"))


def _has_month(folder: Path) -> bool:
    """True if a symbol folder holds at least one month file (stops at the first: one stat, usually)."""
    try:
        with os.scandir(folder) as entries:
            return any(_MONTH.match(e.name) and os.path.exists(os.path.join(e.path, FILE_NAME)) for e in entries)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise StoreError(f"cannot read store folder {folder}: {exc.strerror or exc}") from exc


def legacy_folders(root: Path) -> list[tuple[_Kind, str | None, Path]]:
    """The folders that held files in formats 1-2: ``(kind, market or None, folder)``."""
    return [(KLINES, m, root / "klines" / m) for m in MARKETS] + [
        (BOOK, m, root / "book" / m) for m in MARKETS] + [(FUNDING, None, root / "funding")]


def legacy_files(root: Path) -> list[tuple[_Kind, str, str, Path]]:
    """Every stored file of the format 1-2 layout: ``(kind, market, symbol, path)`` (funding: market ``perp``)."""
    out = []
    for kind, market, folder in legacy_folders(root):
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise StoreError(f"cannot read store folder {folder}: {exc.strerror or exc}") from exc
        for entry in entries:
            stem = entry.name[: -len(".parquet")]
            if entry.name.endswith(".parquet") and not entry.name.startswith(".") and is_valid_symbol(stem):
                out.append((kind, market or "perp", stem, Path(entry.path)))
    return out


def has_legacy_files(root: Path) -> bool:
    """True if any format 1-2 file is in place (cheap: a few folder listings)."""
    for _, _, folder in legacy_folders(root):
        try:
            with os.scandir(folder) as entries:
                if any(e.name.endswith(".parquet") and not e.name.startswith(".") for e in entries):
                    return True
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise StoreError(f"cannot read store folder {folder}: {exc.strerror or exc}") from exc
    return False


# --------------------------------------------------------------------------- file format
_ARROW_TYPES = {"float64": pa.float64(), "int64": pa.int64(), "Int64": pa.int64()}
_ARROW_SCHEMAS: dict[str, pa.Schema] = {}


def arrow_schema(kind: _Kind) -> pa.Schema:
    """The schema of a month file: ``Table.from_pandas`` of the kind's frame (pandas metadata included)."""
    if kind.name not in _ARROW_SCHEMAS:
        _ARROW_SCHEMAS[kind.name] = pa.Table.from_pandas(_empty_frame(kind), preserve_index=True).schema
    return _ARROW_SCHEMAS[kind.name]


def table_from_frame(df: pd.DataFrame, kind: _Kind) -> pa.Table:
    """Frame in the kind's schema -> the table ``Table.from_pandas`` would make, built directly.

    Same columns (time column last), types, NaN-as-null convention and pandas metadata, so
    ``pd.read_parquet`` restores the frame; ~3x cheaper on the small frames an hourly refresh writes.
    """
    schema = arrow_schema(kind)
    position = df.columns.get_indexer(list(kind.columns))
    if (position < 0).any():
        raise KeyError(f"{kind.name}: columns missing from the frame: {list(kind.columns)}")
    # One float conversion of the whole frame (a row per column): a pandas lookup per column cost 2x more.
    floats = df.to_numpy(dtype="float64", na_value=np.nan).T.copy()
    arrays = []
    for i, t in zip(position, kind.columns.values()):
        if t == "float64":
            arrays.append(pa.array(floats[i], type=pa.float64(), from_pandas=True))
        else:  # integers straight from their column: a float round trip would round values above 2**53
            column = df.iloc[:, i]
            arrays.append(pa.array(column.array if t == "Int64" else column.to_numpy(), type=pa.int64(),
                                   from_pandas=True))
    index = df.index.as_unit("ns").tz_convert("UTC")
    arrays.append(pa.array(index.asi8, type=pa.int64()).cast(schema.field(kind.index).type))
    return pa.Table.from_arrays(arrays, schema=schema)


def is_own_schema(schema: pa.Schema, kind: _Kind) -> bool:
    """True if a table has exactly the columns and types this module writes (metadata aside)."""
    if schema.equals(arrow_schema(kind), check_metadata=False):
        return True  # the usual case, decided in C++: this runs for every month file read
    if [n for n in schema.names if n != kind.index] != list(kind.columns) or kind.index not in schema.names:
        return False
    index_type = schema.field(kind.index).type
    if not (pa.types.is_timestamp(index_type) and index_type.unit == "ns" and index_type.tz in ("UTC", "+00:00")):
        return False
    return all(schema.field(c).type == _ARROW_TYPES[t] for c, t in kind.columns.items())


def frame_from_own_table(table: pa.Table, kind: _Kind) -> pd.DataFrame | None:
    """Arrow table -> frame for tables in exactly this module's schema, sorted and unique; else None.

    Builds the frame from the column buffers directly: about 3x cheaper than ``Table.to_pandas``
    on the small files an hourly refresh rewrites.
    """
    if not is_own_schema(table.schema, kind):
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


def files_in_months(index: pd.DatetimeIndex, keys: list[int], lengths: list[int]) -> bool:
    """True if the rows of consecutive month files (``lengths`` rows of month ``keys[i]`` each), concatenated
    into the strictly increasing ``index``, all lie in their file's month: only each file's first and last
    row need a look."""
    times = index.asi8
    end = np.cumsum(lengths)
    if len(end) and end[-1] != len(times):
        return False
    for key, stop, n in zip(keys, end, lengths):
        if n:
            lo, hi = month_bounds_ns(key)
            if times[stop - n] < lo or times[stop - 1] >= hi:
                return False
    return True


def fast_frame(keys: list[int], kind: _Kind, tables: list[pa.Table], lengths: list[int] | None = None
               ) -> pd.DataFrame | None:
    """Consecutive month tables (of months ``keys``, ascending) in this module's schema -> one validated frame.

    ``lengths``: rows of each month when ``tables`` are not one per month (the read cache passes a run of
    months as one table); default the tables' row counts. None when any table is foreign, unsorted, outside
    its month or breaks a rule of :func:`find_problems`: the caller then takes the file-by-file path that
    names the bad file.
    """
    if not all(is_own_schema(t.schema, kind) for t in tables):
        return None
    df = frame_from_own_table(pa.concat_tables(tables) if len(tables) > 1 else tables[0], kind)
    lengths = [t.num_rows for t in tables] if lengths is None else lengths
    if df is None or not files_in_months(df.index, keys, lengths) or find_problems(df, kind):
        return None
    return df


def outside_month(index: pd.DatetimeIndex, key: int) -> np.ndarray:
    """[n] bool: rows of a month file whose time is not in its month ``key`` (a rule of the layout)."""
    start, end = month_bounds_ns(key)
    times = index.asi8
    return (times < start) | (times >= end)


def read_table(path: Path) -> pa.Table:
    """One stored file as an Arrow table, or :class:`BadStoreFile` naming it."""
    try:
        with pq.ParquetFile(path, pre_buffer=False) as fh:  # small local files: buffering them first costs more
            return fh.read(use_threads=False)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise BadStoreFile(f"corrupt store file {path}: {exc}") from exc


def frame_of(table: pa.Table, path: Path, kind: _Kind) -> pd.DataFrame:
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


def month_problems(df: pd.DataFrame, kind: _Kind, key: int) -> list[str]:
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


def slice_times(df: pd.DataFrame, start, end) -> pd.DataFrame:
    """Rows of ``df`` with ``start <= time <= end`` (None: open end)."""
    if start is not None:
        df = df[df.index >= to_utc_index([start], df.index.name)[0]]
    if end is not None:
        df = df[df.index <= to_utc_index([end], df.index.name)[0]]
    return df


def same_rows(old: pd.DataFrame, new: pd.DataFrame) -> bool:
    """True if every row of ``new`` is already stored with identical values."""
    common = old.loc[new.index]
    return common.equals(new)


def time_bounds(path: Path, kind: _Kind) -> tuple[int, int] | None:
    """(first, last) time in ns of a month file written by this module, from its footer's statistics alone.

    None when the footer cannot say (no rows, another writer's types, statistics missing or with
    nulls): the caller then reads the time column. About 10x cheaper than reading that column, and
    :meth:`Store.stored_range <gnn_market.store.Store.stored_range>` runs for every symbol and kind
    of every hourly refresh. A file whose footer cannot be read raises :class:`BadStoreFile`.
    """
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise BadStoreFile(f"corrupt store file {path}: {exc}") from exc
    column = schema.get_field_index(kind.index)
    if meta.num_rows == 0 or column < 0 or schema.field(column).type != pa.timestamp("ns", "UTC"):
        return None
    lows, highs = [], []
    for group in range(meta.num_row_groups):
        stats = meta.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max or stats.null_count != 0:
            return None
        lows.append(stats.min_raw)
        highs.append(stats.max_raw)
    return min(lows), max(highs)


def time_column(path: Path, kind: _Kind) -> pd.DatetimeIndex | None:
    """The time column of a month file as written by this module (only that column read), else None."""
    try:
        column = pq.read_table(path, columns=[kind.index]).column(0)
    except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
        raise BadStoreFile(f"corrupt store file {path}: {exc}") from exc
    if column.type != pa.timestamp("ns", "UTC") or column.null_count:
        return None
    return pd.DatetimeIndex(column.cast(pa.int64()).to_numpy().view("M8[ns]")).tz_localize("UTC")


@contextmanager
def write_lock(root: Path, path: Path, lock_path: Path | None, timeout: float) -> Iterator[None]:
    """Hold ``path``'s cross-process write lock, waiting up to ``timeout`` s.

    ``lock_path``: the lock file (default ``.<name>.lock`` beside ``path``, whose folder is created).
    """
    try:
        if lock_path is None:
            path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(lock_path or path.parent / f".{path.name}.lock", timeout=timeout)
        lock.acquire()
    except Timeout as exc:
        raise StoreError(f"{path} is locked by another writer for over {timeout:.0f} s "
                         f"(remove {lock.lock_file} if no cryptograph process is running)") from exc
    except OSError as exc:
        raise StoreError(f"cannot write to store {root}: {exc.strerror or exc}") from exc
    try:
        yield
    finally:
        lock.release()
