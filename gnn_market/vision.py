"""Importer for Binance's public data archive (https://data.binance.vision).

Reads spot and USDT-M perpetual 1h kline files and USDT-M ``fundingRate``
files, zipped (as downloaded) or as extracted CSVs, into a
:class:`~gnn_market.store.Store`::

    from gnn_market.vision import import_paths
    report = import_paths([Path("data")], Store("data/binance"))
    print(report.summary())

A path may be a file or a folder walked recursively, e.g. the archive's own
tree ``data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip`` or
``data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-01.zip``.
Market and symbol come from the path (``spot`` -> ``"spot"``, ``futures/um``
-> ``"perp"``; the symbol from the file name ``SYMBOL-1h-YYYY-MM[-DD]``);
``market=``/``symbol=`` supply them for files whose path says nothing, and
conflict with a path that says otherwise.

What the archive does that this module absorbs (reference §5):

* header row or not (detected: the first field is not a number);
* spot timestamps in microseconds from 2025 on (detected per value, >= 1e15);
* ``<file>.zip.CHECKSUM`` (sha256) next to a zip: verified when present;
* funding ``calc_time`` with millisecond jitter: rounded to the minute;
  funding columns are read by header name, klines by position.

Failure policy: files of other kinds (trades, bookDepth, other intervals,
COIN-M, ...) are *skipped* and listed with a reason. A file that should be
imported but cannot be (corrupt zip, truncated or malformed CSV, checksum
mismatch, rows that are not 1h candles, unknown market) raises
:class:`~gnn_market.errors.DataError` naming the file. Files are imported per
(dataset, market, symbol) group, one store write per group, and every file of
a group is read and checked before the group is written: so a bad file stops
the import before anything of its group reaches the store, groups written
earlier stay (complete and valid), and re-running after fixing the file is
safe because store writes are idempotent upserts.
"""
from __future__ import annotations

import hashlib
import io
import logging
import re
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .store import Store, is_valid_symbol, validate_market
from .timeutil import HOUR_MS

log = logging.getLogger(__name__)

#: Timestamps at or above this are microseconds (spot files from 2025 on); below, milliseconds.
MICROSECOND_THRESHOLD = 10 ** 15

#: Kline CSV columns by position (the REST kline array order), and the store column each maps to.
KLINE_CSV_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "close_time",
                     "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore")
_KLINE_TO_STORE = {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume",
                   "quote_volume": "quote_volume", "count": "trades",
                   "taker_buy_volume": "taker_buy_volume", "taker_buy_quote_volume": "taker_buy_quote_volume"}
KLINE_INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
                   "1d", "3d", "1w", "1mo", "1M")
# Header names seen for funding files (archive, REST-style exports), by meaning.
_FUNDING_TIME = ("calc_time", "fundingtime", "funding_time")
_FUNDING_RATE = ("last_funding_rate", "fundingrate", "funding_rate")
_FUNDING_MARK = ("markprice", "mark_price")

_NAME = re.compile(r"^(?P<symbol>[^-]+)-(?P<kind>[A-Za-z0-9]+)-(?P<date>\d{4}-\d{2}(?:-\d{2})?)$")
_DATA_SUFFIXES = (".zip", ".csv")


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass
class ImportReport:
    """What :func:`import_paths` did.

    ``per_symbol`` is keyed by ``(dataset, symbol)`` with dataset ``"spot"``,
    ``"perp"`` (klines) or ``"funding"``; values are rows read from the files
    (``new_per_symbol``: rows the store did not hold before).
    """

    files: int = 0                      # files imported
    rows: int = 0                       # rows read from them (after de-duplication per symbol)
    new_rows: int = 0                   # rows not in the store before
    checksums_verified: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    per_symbol: dict[tuple[str, str], int] = field(default_factory=dict)
    new_per_symbol: dict[tuple[str, str], int] = field(default_factory=dict)

    def summary(self) -> str:
        """A few human-readable lines: totals, one line per (dataset, symbol), skipped files."""
        symbols = len({sym for _, sym in self.per_symbol})
        lines = [f"imported {self.files} file(s): {self.rows:,} rows ({self.new_rows:,} new) for "
                 f"{symbols} symbol(s); {self.checksums_verified} checksum(s) verified; "
                 f"skipped {len(self.skipped)} file(s)"]
        for (dataset, sym), rows in sorted(self.per_symbol.items()):
            lines.append(f"  {dataset:<8} {sym:<14} {rows:>8,} rows ({self.new_per_symbol.get((dataset, sym), 0):,} new)")
        for item in self.skipped:
            lines.append(f"  skipped {item.path}: {item.reason}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Task:
    """One file to import: its dataset (``"klines"``/``"funding"``), market and symbol."""

    path: Path
    dataset: str
    market: str
    symbol: str
    checked_interval: bool  # True if the file name named the interval (1h) already


# ----------------------------------------------------------------- public API
def import_paths(paths: list[Path], store: Store, market: str | None = None,
                 symbol: str | None = None) -> ImportReport:
    """Import archive files and folders into ``store``; see the module docstring for the policy.

    Args:
        paths: files (``.zip`` / ``.csv``) or folders (walked recursively, sorted).
        store: the destination; writes are idempotent upserts.
        market: ``"spot"`` or ``"perp"`` for files whose path does not say.
        symbol: the symbol for files whose name does not say (e.g. ``klines.csv``).

    Raises:
        DataError: a path does not exist, or a file that should be imported is bad.
    """
    if market is not None:
        validate_market(market)
    if symbol is not None and not is_valid_symbol(symbol):
        raise DataError(f"invalid symbol {symbol!r}: expected 2-30 characters A-Z or 0-9")
    report = ImportReport()
    groups: dict[tuple[str, str, str], list[_Task]] = defaultdict(list)
    for file in _walk(paths):
        task = _classify(file, market, symbol)
        if isinstance(task, SkippedFile):
            log.warning("skipping %s: %s", task.path, task.reason)
            report.skipped.append(task)
        else:
            groups[(task.dataset, task.market, task.symbol)].append(task)
    for key in sorted(groups):
        _import_group(groups[key], store, report)
    return report


def read_archive_file(path: Path) -> tuple[bytes, bool]:
    """The CSV bytes of an archive file (zip with one CSV, or a CSV) and whether a checksum was verified.

    Raises :class:`DataError` naming ``path`` on a checksum mismatch or a corrupt zip.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    verified = _verify_checksum(path, raw)
    if path.suffix.lower() != ".zip":
        return raw, verified
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            csvs = [m for m in members if m.lower().endswith(".csv")]
            if len(csvs) != 1:
                raise DataError(f"{path}: expected one CSV inside the zip, found {len(csvs)} ({members[:5]})")
            return archive.read(csvs[0]), verified  # read() checks the member's CRC
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise DataError(f"{path}: corrupt zip file ({exc})") from exc


def parse_klines(data: bytes, source: str | Path) -> pd.DataFrame:
    """Parse a kline CSV (spot or USDT-M, header or not, ms or µs) into the store's kline schema.

    Returns a frame indexed by ``open_time`` (UTC) with the columns of
    ``store.KLINE_COLUMNS``. Raises :class:`DataError` naming ``source`` if the
    file is empty, truncated, non-numeric, off the hour, or not 1h candles.
    """
    table = _read_csv(data, source)
    if table.shape[1] != len(KLINE_CSV_COLUMNS):
        raise DataError(f"{source}: expected {len(KLINE_CSV_COLUMNS)} kline columns, found {table.shape[1]}")
    table.columns = list(KLINE_CSV_COLUMNS)
    numbers = _numeric(table.drop(columns="ignore"), source)
    open_ms = _to_ms(numbers["open_time"].to_numpy(), source, "open_time")
    close_ms = _to_ms(numbers["close_time"].to_numpy(), source, "close_time")
    span = close_ms - open_ms + 1
    if (span != HOUR_MS).any():
        bad = int(np.nonzero(span != HOUR_MS)[0][0])
        raise DataError(f"{source}: row {bad + 1} spans {span[bad] / 1000:g} s, not a 1h candle "
                        f"(only 1h klines are imported)")
    if (open_ms % HOUR_MS != 0).any():
        bad = int(np.nonzero(open_ms % HOUR_MS)[0][0])
        raise DataError(f"{source}: row {bad + 1} open_time is not on the hour")
    prices = numbers[["open", "high", "low", "close"]].to_numpy()
    if (prices <= 0).any() or (numbers["high"] < numbers["low"]).any():
        raise DataError(f"{source}: non-positive prices or high < low")
    out = numbers[list(_KLINE_TO_STORE)].rename(columns=_KLINE_TO_STORE)
    out.index = pd.DatetimeIndex(pd.to_datetime(open_ms, unit="ms", utc=True)).as_unit("ns").rename("open_time")
    return out


def parse_funding(data: bytes, source: str | Path) -> pd.DataFrame:
    """Parse a fundingRate CSV into the store's funding schema (index ``funding_time``).

    Columns are found by header name (``calc_time``/``fundingTime``,
    ``last_funding_rate``/``fundingRate``, optional ``markPrice``). A file
    without a header must have three columns: the archive's
    ``calc_time, funding_interval_hours, last_funding_rate`` (recognised by the
    small whole numbers in the middle column) or ``fundingTime, fundingRate, markPrice``.
    Times are rounded to the minute (the archive has millisecond jitter), like
    :func:`gnn_market.binance.parsers.round_funding_time`, so archive and REST rows coincide.
    """
    table = _read_csv(data, source)
    if table.attrs["header"]:
        names = {str(c).strip().lower(): c for c in table.columns}
        time_col = next((names[n] for n in _FUNDING_TIME if n in names), None)
        rate_col = next((names[n] for n in _FUNDING_RATE if n in names), None)
        mark_col = next((names[n] for n in _FUNDING_MARK if n in names), None)
        if time_col is None or rate_col is None:
            raise DataError(f"{source}: funding file needs a time and a rate column, found {list(table.columns)}")
    else:
        if table.shape[1] != 3:
            raise DataError(f"{source}: headerless funding file must have 3 columns, found {table.shape[1]}")
        middle = pd.to_numeric(table[1], errors="coerce")
        archive_order = bool(middle.isin([1, 2, 4, 8]).all())
        time_col, rate_col, mark_col = (0, 2, None) if archive_order else (0, 1, 2)
    cols = [time_col, rate_col] + ([mark_col] if mark_col is not None else [])
    numbers = _numeric(table[cols], source)
    ms = _to_ms(numbers[time_col].to_numpy(), source, "funding time")
    seconds = (ms + 30_000) // 60_000 * 60  # to the minute, as the REST client does (no duplicates)
    out = pd.DataFrame({"funding_rate": numbers[rate_col].to_numpy(dtype="float64"),
                        "mark_price": numbers[mark_col].to_numpy(dtype="float64") if mark_col is not None
                        else np.full(len(numbers), np.nan)})
    out.index = pd.DatetimeIndex(pd.to_datetime(seconds, unit="s", utc=True)).as_unit("ns").rename("funding_time")
    return out


# ---------------------------------------------------------------- internals
def _walk(paths: list[Path]) -> list[Path]:
    """Every file under ``paths`` (folders recursively, sorted), hidden and CHECKSUM files excluded."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file())
            files.extend(p for p in found if not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"no such file or folder: {path}")
    unique: dict[Path, Path] = {}  # the same file named twice (a folder and a file in it) counts once
    for f in files:
        if not f.name.upper().endswith(".CHECKSUM"):  # companions, read next to their zip
            unique.setdefault(f.resolve(), f)
    return list(unique.values())


def _path_facts(path: Path) -> tuple[str | None, str | None, str | None]:
    """(market, data type, unsupported-market reason) read from the archive folders in ``path``."""
    parts = [p.lower() for p in path.parent.parts]
    market = reason = data_type = None
    for i, part in enumerate(parts):
        if part == "spot":
            market, reason = "spot", None
        elif part == "futures" and i + 1 < len(parts):
            if parts[i + 1] == "um":
                market, reason = "perp", None
            elif parts[i + 1] == "cm":
                market, reason = None, "COIN-M futures are not supported"
        elif part in ("monthly", "daily") and i + 1 < len(parts):
            data_type = path.parent.parts[i + 1]
    return market, data_type, reason


def _classify(path: Path, market_arg: str | None, symbol_arg: str | None) -> _Task | SkippedFile:
    """Decide what ``path`` is from its folders and name; skip what is not imported."""
    suffix = path.suffix.lower()
    if suffix not in _DATA_SUFFIXES:
        return SkippedFile(path, "not a .zip or .csv file")
    path_market, data_type, unsupported = _path_facts(path)
    if unsupported:
        return SkippedFile(path, unsupported)
    if data_type is not None and data_type not in ("klines", "fundingRate"):
        return SkippedFile(path, f"data type {data_type!r} is not imported (only klines and fundingRate)")
    match = _NAME.match(path.stem)
    kind = match["kind"] if match else None
    if kind is not None and kind != "fundingRate" and kind not in KLINE_INTERVALS:
        return SkippedFile(path, f"data type {kind!r} is not imported (only 1h klines and fundingRate)")
    if kind is not None and kind != "1h" and kind != "fundingRate":
        return SkippedFile(path, f"interval {kind} is not imported (only 1h)")
    if kind == "fundingRate" or data_type == "fundingRate":
        dataset = "funding"
    elif kind == "1h" or data_type == "klines":
        dataset = "klines"
    else:
        dataset = _sniff_dataset(path)  # a loose file named neither way: look at its first line

    name_symbol = match["symbol"] if match else None
    if name_symbol is not None and not is_valid_symbol(name_symbol):
        return SkippedFile(path, f"invalid symbol {name_symbol!r} (expected A-Z, 0-9)")
    if name_symbol and symbol_arg and name_symbol != symbol_arg:
        raise DataError(f"{path}: the file name says symbol {name_symbol} but {symbol_arg} was given")
    symbol = name_symbol or symbol_arg
    if symbol is None:
        raise DataError(f"{path}: cannot tell the symbol from the file name; pass the symbol explicitly")

    if path_market and market_arg and path_market != market_arg:
        raise DataError(f"{path}: the path says market {path_market} but {market_arg} was given")
    market = path_market or market_arg
    if dataset == "funding":
        if market == "spot":
            raise DataError(f"{path}: funding rates exist for perpetuals only, not spot")
        market = "perp"
    elif market is None:
        raise DataError(f"{path}: cannot tell whether these are spot or perp klines from the path; "
                        f"pass the market explicitly")
    return _Task(path, dataset, market, symbol, checked_interval=kind == "1h")


def _sniff_dataset(path: Path) -> str:
    """``"funding"`` if the CSV's first line names a funding column, else ``"klines"``."""
    data, _ = read_archive_file(path)
    first = data[:200].decode("utf-8", errors="replace").splitlines()[0].lower() if data.strip() else ""
    return "funding" if "funding" in first or "calc_time" in first else "klines"


def _import_group(tasks: list[_Task], store: Store, report: ImportReport) -> None:
    """Read and check every file of one (dataset, market, symbol), then write them in one upsert."""
    frames, verified = [], 0
    for task in tasks:
        data, ok = read_archive_file(task.path)
        verified += ok
        parse = parse_funding if task.dataset == "funding" else parse_klines
        frames.append(parse(data, task.path))
    first = tasks[0]
    merged = pd.concat(frames)
    merged = merged[~merged.index.duplicated(keep="last")].sort_index()
    if first.dataset == "funding":
        added = store.write_funding(first.symbol, merged)
        key = ("funding", first.symbol)
    else:
        added = store.write_klines(first.symbol, merged, market=first.market)
        key = (first.market, first.symbol)
    report.files += len(tasks)
    report.rows += len(merged)
    report.new_rows += added
    report.checksums_verified += verified
    report.per_symbol[key] = report.per_symbol.get(key, 0) + len(merged)
    report.new_per_symbol[key] = report.new_per_symbol.get(key, 0) + added
    log.info("imported %d file(s) for %s %s: %d rows (%d new)", len(tasks), key[0], key[1], len(merged), added)


def _verify_checksum(path: Path, raw: bytes) -> bool:
    """Check ``<path>.CHECKSUM`` if it exists; True if verified, False if there is none."""
    checksum = path.with_name(path.name + ".CHECKSUM")
    if not checksum.exists():
        return False
    try:
        text = checksum.read_text(encoding="ascii", errors="replace").strip()
    except OSError as exc:
        raise DataError(f"cannot read {checksum}: {exc.strerror or exc}") from exc
    expected = text.split()[0].lower() if text else ""
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise DataError(f"{checksum}: not a sha256 checksum file")
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected:
        raise DataError(f"{path}: checksum mismatch (expected sha256 {expected[:12]}..., got {actual[:12]}...); "
                        f"the file is damaged or was replaced: download it again")
    return True


def _read_csv(data: bytes, source: str | Path) -> pd.DataFrame:
    """Raw CSV cells as strings; ``attrs["header"]`` says whether a header row was found and used."""
    text = data.decode("utf-8-sig", errors="strict") if data else ""
    lines = text.strip().splitlines()
    if not lines:
        raise DataError(f"{source}: empty CSV file")
    first_field = lines[0].split(",")[0].strip()
    header = not first_field.lstrip("-").isdigit()
    try:
        table = pd.read_csv(io.StringIO(text), header=0 if header else None, dtype=str,
                            skip_blank_lines=True, engine="c")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{source}: malformed CSV ({str(exc).strip()})") from exc
    if table.empty:
        raise DataError(f"{source}: CSV file has no data rows")
    table.attrs["header"] = header
    return table


def _numeric(table: pd.DataFrame, source: str | Path) -> pd.DataFrame:
    """Every cell as a number; a missing or non-numeric cell (e.g. a truncated last row) is an error."""
    out = table.apply(lambda col: pd.to_numeric(col.str.strip(), errors="coerce"))
    bad = out.isna().to_numpy()
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise DataError(f"{source}: row {row + 1} column {table.columns[col]!r} is missing or not a number "
                        f"({table.iat[row, col]!r}); truncated or malformed file?")
    return out


def _to_ms(values: np.ndarray, source: str | Path, what: str) -> np.ndarray:
    """Epoch timestamps in ms or µs (detected per value) -> int64 milliseconds."""
    as_int = values.astype("int64")
    if (as_int != values).any() or (as_int <= 0).any():
        raise DataError(f"{source}: {what} must be positive whole numbers (epoch ms or µs)")
    return np.where(as_int >= MICROSECOND_THRESHOLD, as_int // 1000, as_int)
