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

* header row or not, detected by content: the first row is a header when its
  time columns hold field *names* (``open_time``, ``close_time``;
  ``calc_time``...), not numbers. Any numeric timestamp is read: integer,
  float (``1704067200000.0``), quoted (``"1704067200000"``) or with an
  exponent (``1.7040672e12``), as long as it is a whole number of ms or µs;
* spot timestamps in microseconds from 2025 on (detected per value, >= 1e15);
  every time must fall in [2010-01-01, now + 1 day] (:data:`~gnn_market.store.MIN_TIME_MS`);
* ``<file>.zip.CHECKSUM`` (sha256) next to a zip: verified when present;
* a file whose name's symbol differs from its archive symbol folder
  (``.../klines/SYNBUSDT/1h/SYNAUSDT-1h-2024-01.zip``) is refused: which is right is unknown;
* funding ``calc_time`` with millisecond jitter: rounded to the minute;
  funding columns are read by header name, klines by position.

Failure policy: files of other kinds (trades, bookDepth, other intervals,
COIN-M, ...) are *skipped* and listed with a reason, and so are symbolic links
inside a given folder that lead outside it (a link to a folder is never
followed). A file that should be imported but cannot be (corrupt, encrypted or
unsupported-compression zip, a member over :data:`MAX_MEMBER_BYTES`
uncompressed, text that is not UTF-8, truncated or malformed CSV, checksum
mismatch, rows that are not 1h candles, times out of range, unknown market)
raises :class:`~gnn_market.errors.DataError` naming the file. Every data line
of a file becomes one row (checked: rows in = rows parsed); the report gives
rows in and rows stored, which differ only by rows repeated across files
(the later file's row is kept). Files are imported per
(dataset, market, symbol) group, one store write per group, and every file of
a group is read and checked before the group is written: so a bad file stops
the import before anything of its group reaches the store, groups written
earlier stay (complete and valid), and re-running after fixing the file is
safe because store writes are idempotent upserts. A target the store would
refuse (a stored file of one of the symbols that breaks a store rule, or a
``STORE.json`` this version cannot write) stops the import before its first write.
"""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import lzma
import re
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .store import Store
from .store_schema import checked_frame, first_time_out_of_range, is_valid_symbol, validate_market
from .timeutil import HOUR_MS

log = logging.getLogger(__name__)

#: Timestamps at or above this are microseconds (spot files from 2025 on); below, milliseconds.
MICROSECOND_THRESHOLD = 10 ** 15
#: Largest file, and largest uncompressed zip member, read (512 MiB). An archive 1h-kline month is ~100 KB;
#: the cap stops a zip bomb (146 KB expanding to 50 MB and more) before it is read into memory.
MAX_MEMBER_BYTES = 512 * 2 ** 20
#: Compression methods :mod:`zipfile` can read (Deflate64, PPMd, ... cannot).
_READABLE_COMPRESSION = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                         zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_ZIP_METHOD_NAMES = {9: "Deflate64", 98: "PPMd", 93: "Zstandard", 95: "xz", 99: "AES-encrypted"}

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
    rows_in: int = 0                    # data rows in those files (every line but a header)
    rows: int = 0                       # rows stored from them (after de-duplication per symbol)
    new_rows: int = 0                   # rows not in the store before
    checksums_verified: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    per_symbol: dict[tuple[str, str], int] = field(default_factory=dict)
    new_per_symbol: dict[tuple[str, str], int] = field(default_factory=dict)

    def summary(self) -> str:
        """A few human-readable lines: totals, one line per (dataset, symbol), skipped files."""
        symbols = len({sym for _, sym in self.per_symbol})
        repeated = self.rows_in - self.rows
        lines = [f"imported {self.files} file(s): {self.rows_in:,} rows in, {self.rows:,} stored "
                 f"({self.new_rows:,} new) for {symbols} symbol(s)"
                 + (f", {repeated:,} repeated in overlapping files (the later file's row kept)" if repeated else "")
                 + f"; {self.checksums_verified} checksum(s) verified; skipped {len(self.skipped)} file(s)"]
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
                 symbol: str | None = None, max_member_bytes: int = MAX_MEMBER_BYTES) -> ImportReport:
    """Import archive files and folders into ``store``; see the module docstring for the policy.

    Args:
        paths: files (``.zip`` / ``.csv``) or folders (walked recursively, sorted).
        store: the destination; writes are idempotent upserts.
        market: ``"spot"`` or ``"perp"`` for files whose path does not say.
        symbol: the symbol for files whose name does not say (e.g. ``klines.csv``).
        max_member_bytes: largest file / uncompressed zip member read (:data:`MAX_MEMBER_BYTES`).

    Raises:
        DataError: a path does not exist, or a file that should be imported is bad.
    """
    if market is not None:
        validate_market(market)
    if symbol is not None and not is_valid_symbol(symbol):
        raise DataError(f"invalid symbol {symbol!r}: expected 2-30 characters A-Z or 0-9")
    if max_member_bytes < 1:
        raise DataError(f"the size limit must be positive, got {max_member_bytes} bytes")
    report = ImportReport()
    groups: dict[tuple[str, str, str], list[_Task]] = defaultdict(list)
    files, report.skipped = _walk(paths)
    for file in files:
        task = _classify(file, market, symbol, max_member_bytes)
        if isinstance(task, SkippedFile):
            report.skipped.append(task)
        else:
            groups[(task.dataset, task.market, task.symbol)].append(task)
    for item in report.skipped:
        log.warning("skipping %s: %s", item.path, item.reason)
    for dataset, group_market, group_symbol in sorted(groups):  # a target a write would refuse: stop first
        store.check_targets(dataset, [group_symbol], None if dataset == "funding" else group_market)
    for key in sorted(groups):
        _import_group(groups[key], store, report, max_member_bytes)
    return report


def read_archive_file(path: Path, max_bytes: int = MAX_MEMBER_BYTES) -> tuple[bytes, bool]:
    """The CSV bytes of an archive file (zip with one CSV, or a CSV) and whether a checksum was verified.

    Raises :class:`DataError` naming ``path`` on a checksum mismatch, a corrupt,
    encrypted or unreadable (e.g. Deflate64) zip, or a file or member larger
    than ``max_bytes`` uncompressed: refused from the sizes in the zip header
    before anything is inflated, and reading stops at the cap whatever the header says.
    """
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(f"{path}: {_mb(size)} is over the limit of {_mb(max_bytes)} per file "
                            f"(an archive 1h file is ~100 KB; raise --max-member-mb if it is genuine)")
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    verified = _verify_checksum(path, raw)
    if path.suffix.lower() != ".zip":
        return raw, verified
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            csvs = [m for m in members if m.filename.lower().endswith(".csv")]
            if len(csvs) != 1:
                raise DataError(f"{path}: expected one CSV inside the zip, found {len(csvs)} "
                                f"({[m.filename for m in members[:5]]})")
            member = csvs[0]
            if member.flag_bits & 0x1:
                raise DataError(f"{path}: {member.filename} is encrypted (archive files never are); "
                                f"download it again")
            if member.compress_type not in _READABLE_COMPRESSION:
                method = _ZIP_METHOD_NAMES.get(member.compress_type, f"method {member.compress_type}")
                raise DataError(f"{path}: {member.filename} is compressed with {method}, which cannot be read "
                                f"(readable: {', '.join(_READABLE_COMPRESSION.values())}); re-zip it or "
                                f"import the extracted CSV")
            if member.file_size > max_bytes:
                raise DataError(f"{path}: {member.filename} expands to {_mb(member.file_size)}, over the limit "
                                f"of {_mb(max_bytes)} (a zip bomb? an archive 1h file is ~100 KB; raise "
                                f"--max-member-mb if it is genuine)")
            with archive.open(member) as fh:
                data = fh.read(max_bytes + 1)  # reaching the end checks the member's CRC
            if len(data) > max_bytes:
                raise DataError(f"{path}: {member.filename} expands past the limit of {_mb(max_bytes)} "
                                f"although its header says {_mb(member.file_size)}")
            return data, verified
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, NotImplementedError,
            RuntimeError) as exc:
        raise DataError(f"{path}: corrupt zip file ({exc})") from exc


def _mb(n: float) -> str:
    """A size for people: MiB from 1 MiB up, KiB or bytes below."""
    if n >= 2 ** 20:
        return f"{n / 2 ** 20:,.1f} MiB"
    return f"{n / 1024:,.1f} KiB" if n >= 1024 else f"{int(n)} bytes"


def parse_klines(data: bytes, source: str | Path) -> pd.DataFrame:
    """Parse a kline CSV (spot or USDT-M, header or not, ms or µs) into the store's kline schema.

    Returns a frame indexed by ``open_time`` (UTC) with the columns of
    ``store.KLINE_COLUMNS``. Raises :class:`DataError` naming ``source`` if the
    file is empty, truncated, non-numeric, off the hour, or not 1h candles.
    """
    table = _read_csv(data, source, time_columns=(0, 6), numeric=True)
    if table.shape[1] != len(KLINE_CSV_COLUMNS):
        raise DataError(f"{source}: expected {len(KLINE_CSV_COLUMNS)} kline columns, found {table.shape[1]}")
    table.columns = list(KLINE_CSV_COLUMNS)
    numbers = table.drop(columns="ignore")
    if not table.attrs["numeric"]:
        numbers = _numeric(numbers, source)
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
    _refuse_repeats(open_ms, source, "open_time")
    out = numbers[list(_KLINE_TO_STORE)].rename(columns=_KLINE_TO_STORE)
    out.index = pd.DatetimeIndex(pd.to_datetime(open_ms, unit="ms", utc=True)).as_unit("ns").rename("open_time")
    return checked_frame(out, "klines", source)  # the store's rules (prices, OHLC order, volumes), per file


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
    table = _read_csv(data, source, time_columns=(0,))
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
    _refuse_repeats(seconds, source, "funding time")
    out = pd.DataFrame({"funding_rate": numbers[rate_col].to_numpy(dtype="float64"),
                        "mark_price": numbers[mark_col].to_numpy(dtype="float64") if mark_col is not None
                        else np.full(len(numbers), np.nan)})
    out.index = pd.DatetimeIndex(pd.to_datetime(seconds, unit="s", utc=True)).as_unit("ns").rename("funding_time")
    return checked_frame(out, "funding", source)


# ---------------------------------------------------------------- internals
def _walk(paths: list[Path]) -> tuple[list[Path], list[SkippedFile]]:
    """Every file under ``paths`` (folders recursively, sorted), hidden and CHECKSUM files excluded.

    Inside a folder, a symbolic link to a folder is not followed and a file
    reached through a link that leads outside the folder is skipped (both
    listed with the reason); a path given explicitly is taken as given.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    skipped: list[SkippedFile] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            root = path.resolve()
            for p in sorted(path.rglob("*")):
                if any(part.startswith(".") for part in p.relative_to(path).parts):
                    continue
                if p.is_symlink() and p.is_dir():
                    skipped.append(SkippedFile(p, "symbolic link to a folder: not followed"))
                elif p.is_file() and not p.resolve().is_relative_to(root):
                    skipped.append(SkippedFile(p, f"symbolic link to {p.resolve()}, outside {path}: not followed"))
                elif p.is_file():
                    files.append(p)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"no such file or folder: {path}")
    unique: dict[Path, Path] = {}  # the same file named twice (a folder and a file in it) counts once
    for f in files:
        if not f.name.upper().endswith(".CHECKSUM"):  # companions, read next to their zip
            unique.setdefault(f.resolve(), f)
    return list(unique.values()), skipped


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


def _classify(path: Path, market_arg: str | None, symbol_arg: str | None,
              max_bytes: int = MAX_MEMBER_BYTES) -> _Task | SkippedFile:
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
    _refuse_folder_mismatch(path, match["symbol"] if match else None)
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
        dataset = _sniff_dataset(path, max_bytes)  # a loose file named neither way: look at its first line

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


def _folder_symbol(path: Path) -> str | None:
    """The symbol folder of an archive path (``.../monthly/<type>/<SYMBOL>/...``), or None if there is none."""
    parts = path.parent.parts
    for i, part in enumerate(parts[:-2]):
        if (part.lower() in ("monthly", "daily") and parts[i + 1] in ("klines", "fundingRate")
                and is_valid_symbol(parts[i + 2])):
            return parts[i + 2]
    return None


def _refuse_folder_mismatch(path: Path, name_symbol: str | None) -> None:
    """A file whose name and archive folder name different symbols is refused: which one is right is unknown.

    The archive puts ``SYMBOL-1h-...`` under ``.../klines/SYMBOL/1h/``; a file moved or renamed by hand
    into another symbol's folder would otherwise be stored under the name's symbol without a word.
    """
    folder = _folder_symbol(path)
    if folder is not None and name_symbol is not None and folder != name_symbol:
        raise DataError(f"{path}: the file name says symbol {name_symbol} but its archive folder says {folder}; "
                        f"move or rename the file so they agree")


def _sniff_dataset(path: Path, max_bytes: int = MAX_MEMBER_BYTES) -> str:
    """``"funding"`` if the CSV's first line names a funding column, else ``"klines"``."""
    data, _ = read_archive_file(path, max_bytes)
    first = data[:200].decode("utf-8", errors="replace").splitlines()[0].lower() if data.strip() else ""
    return "funding" if "funding" in first or "calc_time" in first else "klines"


def _import_group(tasks: list[_Task], store: Store, report: ImportReport,
                  max_bytes: int = MAX_MEMBER_BYTES) -> None:
    """Read and check every file of one (dataset, market, symbol), then write them in one upsert."""
    frames, verified = [], 0
    for task in tasks:
        data, ok = read_archive_file(task.path, max_bytes)
        verified += ok
        parse = parse_funding if task.dataset == "funding" else parse_klines
        frames.append(parse(data, task.path))
    first = tasks[0]
    merged = pd.concat(frames)
    rows_in = len(merged)
    merged = merged[~merged.index.duplicated(keep="last")].sort_index()  # a later file's row wins
    if first.dataset == "funding":
        added = store.write_funding(first.symbol, merged)
        key = ("funding", first.symbol)
    else:
        added = store.write_klines(first.symbol, merged, market=first.market)
        key = (first.market, first.symbol)
    report.files += len(tasks)
    report.rows_in += rows_in
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


def _read_csv(data: bytes, source: str | Path, time_columns: tuple[int, ...], numeric: bool = False) -> pd.DataFrame:
    """CSV cells as strings, or with ``numeric`` as float64 when every cell is a number.

    ``attrs["header"]`` says whether a header row was found and used: the
    first row is a header when every one of its ``time_columns`` holds a
    field name (letters first), decided by content, never by the shape of a
    number. Every non-blank line after it must become exactly one row.
    ``attrs["numeric"]`` says whether the float64 parse succeeded (else the
    cells are strings, for :func:`_numeric` to name the bad one). The bytes are
    parsed in place (no decoded copy): a large member costs a few times its size.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        data.decode("utf-8", errors="strict")  # validation only; the text itself is not kept
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                        f"archive files are plain ASCII CSV") from exc
    first_line = _NON_BLANK_LINE.search(data)
    if first_line is None:
        raise DataError(f"{source}: empty CSV file")
    line_end = data.find(b"\n", first_line.start())
    first = next(csv.reader([data[first_line.start():None if line_end < 0 else line_end].decode()]), [])
    header = all(i < len(first) and _is_field_name(first[i]) for i in time_columns)
    lines_in = sum(1 for _ in _NON_BLANK_LINE.finditer(data)) - header
    table = None
    if numeric:
        try:
            table = pd.read_csv(io.BytesIO(data), header=0 if header else None, dtype="float64",
                                skip_blank_lines=True, engine="c", **_EXACT_FLOATS)
            if table.isna().to_numpy().any():
                table = None  # a missing cell: the string parse below names it
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            table = None  # a non-numeric cell, or malformed: the string parse below says which
    if table is None:
        try:
            table = pd.read_csv(io.BytesIO(data), header=0 if header else None, dtype=str,
                                skip_blank_lines=True, engine="c")
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"{source}: malformed CSV ({str(exc).strip()})") from exc
        table.attrs["numeric"] = False
    else:
        table.attrs["numeric"] = True
    if table.empty:
        raise DataError(f"{source}: CSV file has no data rows")
    if len(table) != lines_in:  # e.g. a quoted field spanning lines: never lose or invent a row silently
        raise DataError(f"{source}: {lines_in} data line(s) but {len(table)} CSV row(s); malformed quoting?")
    table.attrs["header"] = header
    return table


# pandas 3 parses floats exactly (as float(text)) by default and deprecates the option; pandas 2's default
# may be one ulp off, which would make an archive row differ from the same REST row.
_EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
_NON_BLANK_LINE = re.compile(rb"^[^\S\n]*\S", re.MULTILINE)
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .-]*")
_NOT_NAMES = {"nan", "inf", "infinity", "null", "none", "na", "n/a"}


def _is_field_name(cell: str) -> bool:
    """True for a header cell such as ``open_time`` / ``calc_time``; False for numbers, blanks, ``NaN``."""
    cell = cell.strip()
    return bool(_FIELD_NAME.fullmatch(cell)) and cell.lower() not in _NOT_NAMES


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
    """Epoch timestamps in ms or µs (detected per value; any numeric spelling) -> int64 milliseconds.

    Values must be whole numbers and, once in ms, fall in ``[MIN_TIME_MS, now + 1 day]``.
    """
    values = np.asarray(values, dtype="float64")
    # float64 holds every integer below 2**53 (~9e15, year 2255 in µs) exactly: the test below is exact.
    if not np.isfinite(values).all() or (values != np.floor(values)).any() or (values <= 0).any():
        raise DataError(f"{source}: {what} must be positive whole numbers (epoch ms or µs)")
    too_big = values >= 2.0 ** 53
    if too_big.any():
        raise DataError(f"{source}: row {int(np.flatnonzero(too_big)[0]) + 1} {what} {values[too_big][0]:.0f} "
                        f"is not an epoch time in ms or µs")
    as_int = values.astype("int64")
    ms = np.where(as_int >= MICROSECOND_THRESHOLD, as_int // 1000, as_int)
    row = first_time_out_of_range(ms)
    if row is not None:
        raise DataError(f"{source}: row {row + 1} {what} {as_int[row]} is {_ms_text(ms[row])}, outside "
                        f"2010-01-01 .. tomorrow (a unit or format mistake?)")
    return ms


def _refuse_repeats(times: np.ndarray, source: str | Path, what: str) -> None:
    """An archive file never repeats a time: a file that does is malformed (rows in must equal rows stored)."""
    order = np.sort(times)
    repeated = order[1:][order[1:] == order[:-1]]
    if len(repeated):
        raise DataError(f"{source}: {len(repeated)} row(s) repeat an earlier {what} (first "
                        f"{pd.Timestamp(int(repeated[0]), unit='ms' if what == 'open_time' else 's', tz='UTC')}); "
                        f"a malformed file")


def _ms_text(ms: int) -> str:
    """An epoch ms as a date when pandas can show it, else its year (no overflow on absurd values)."""
    if -(2 ** 63) // 1_000_000 < ms < (2 ** 63 - 1) // 1_000_000:
        return f"{pd.Timestamp(int(ms), unit='ms'):%Y-%m-%d %H:%M}"
    return f"in year ~{1970 + ms / (365.2425 * 86_400_000):.0f}"
