"""Importer for Binance's public data archive (https://data.binance.vision).

Reads spot and USDT-M perpetual 1h kline files and USDT-M ``fundingRate``
files, zipped (as downloaded) or as extracted CSVs, into a
:class:`~gnn_market.store.Store`::

    from gnn_market.vision import import_paths
    report = import_paths([Path("data")], Store("data/binance"))
    print(report.summary())

The files are a :class:`VisionSource`, a :class:`~gnn_market.market_source.MarketSource`
(the symbols present are its universe, a range filters rows, there is no book);
:func:`import_paths` copies it into the store (:func:`~gnn_market.market_source.copy_source`).
The CSV parsing itself is :mod:`gnn_market.vision_csv`.

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

import pandas as pd

from .errors import DataError
from .market_source import Series, copy_source, empty_frame, in_range, wall_clock_ms
from .store import Store
from .store_schema import is_valid_symbol, validate_market
from .vision_csv import (  # noqa: F401 (the archive CSV parsers, importable from here as before)
    KLINE_CSV_COLUMNS,
    MICROSECOND_THRESHOLD,
    parse_funding,
    parse_klines,
)

log = logging.getLogger(__name__)

#: Largest file, and largest uncompressed zip member, read (512 MiB). An archive 1h-kline month is ~100 KB;
#: the cap stops a zip bomb (146 KB expanding to 50 MB and more) before it is read into memory.
MAX_MEMBER_BYTES = 512 * 2 ** 20
#: Compression methods :mod:`zipfile` can read (Deflate64, PPMd, ... cannot).
_READABLE_COMPRESSION = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                         zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_ZIP_METHOD_NAMES = {9: "Deflate64", 98: "PPMd", 93: "Zstandard", 95: "xz", 99: "AES-encrypted"}

KLINE_INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
                   "1d", "3d", "1w", "1mo", "1M")

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

    The files are a :class:`VisionSource`, copied into the store series by series
    (:func:`~gnn_market.market_source.copy_source`).

    Args:
        paths: files (``.zip`` / ``.csv``) or folders (walked recursively, sorted).
        store: the destination; writes are idempotent upserts.
        market: ``"spot"`` or ``"perp"`` for files whose path does not say.
        symbol: the symbol for files whose name does not say (e.g. ``klines.csv``).
        max_member_bytes: largest file / uncompressed zip member read (:data:`MAX_MEMBER_BYTES`).

    Raises:
        DataError: a path does not exist, or a file that should be imported is bad.
    """
    source = VisionSource(paths, market=market, symbol=symbol, max_member_bytes=max_member_bytes)
    report = ImportReport(skipped=list(source.skipped))

    def written(series: Series, rows: int, added: int) -> None:
        dataset, group_market, group_symbol = series
        key = ("funding", group_symbol) if dataset == "funding" else (group_market, group_symbol)
        files, rows_in, verified = source.read[series]
        report.files += files
        report.rows_in += rows_in
        report.rows += rows
        report.new_rows += added
        report.checksums_verified += verified
        report.per_symbol[key] = report.per_symbol.get(key, 0) + rows
        report.new_per_symbol[key] = report.new_per_symbol.get(key, 0) + added
        log.info("imported %d file(s) for %s %s: %d rows (%d new)", files, key[0], key[1], rows, added)

    copy_source(source, store, source.series(), written=written)  # every target is checked before a write
    return report


class VisionSource:
    """Binance archive files (zips or extracted CSVs) as a :class:`~gnn_market.market_source.MarketSource`.

    The files are found and classified when the source is made (a file that cannot be
    classified raises :class:`DataError` then; files of other kinds are skipped and listed in
    ``skipped``); each series is read, checked and merged when asked for (a later file's row
    wins). The symbols present are the universe; a range filters rows; there is no book.

    Args:
        paths: files (``.zip`` / ``.csv``) or folders (walked recursively, sorted).
        market: ``"spot"`` or ``"perp"`` for files whose path does not say.
        symbol: the symbol for files whose name does not say.
        max_member_bytes: largest file / uncompressed zip member read.
    """

    def __init__(self, paths: list[Path], market: str | None = None, symbol: str | None = None,
                 max_member_bytes: int = MAX_MEMBER_BYTES) -> None:
        if market is not None:
            validate_market(market)
        if symbol is not None and not is_valid_symbol(symbol):
            raise DataError(f"invalid symbol {symbol!r}: expected 2-30 characters A-Z or 0-9")
        if max_member_bytes < 1:
            raise DataError(f"the size limit must be positive, got {max_member_bytes} bytes")
        self.max_member_bytes = max_member_bytes
        self.groups: dict[Series, list[_Task]] = defaultdict(list)
        files, self.skipped = _walk(paths)
        for file in files:
            task = _classify(file, market, symbol, max_member_bytes)
            if isinstance(task, SkippedFile):
                self.skipped.append(task)
            else:
                self.groups[(task.dataset, task.market, task.symbol)].append(task)
        for item in self.skipped:
            log.warning("skipping %s: %s", item.path, item.reason)
        #: per series read so far: (files, data rows in them, checksums verified)
        self.read: dict[Series, tuple[int, int, int]] = {}

    def series(self) -> list[Series]:
        """Every (dataset, market, symbol) the files hold, sorted (funding first)."""
        return sorted(self.groups)

    def symbols(self, market: str) -> list[str]:
        return sorted({s for _, m, s in self.groups if m == market})

    def klines(self, symbol: str, market: str, start_ms: int, end_ms: int | None = None) -> pd.DataFrame:
        return in_range(self._read(("klines", market, symbol)), start_ms, end_ms)

    def book(self, symbol: str, market: str) -> pd.DataFrame:
        return empty_frame("book")  # the archive has no order-book snapshots

    def funding(self, symbol: str, start_ms: int, end_ms: int | None = None) -> pd.DataFrame:
        return in_range(self._read(("funding", "perp", symbol)), start_ms, end_ms)

    def now_ms(self, market: str) -> int:
        return wall_clock_ms()  # archive files hold closed hours only

    def _read(self, series: Series) -> pd.DataFrame:
        """Read and check every file of one series; their rows merged, a later file's row winning."""
        tasks = self.groups.get(series)
        if not tasks:
            return empty_frame(series[0])
        frames, verified = [], 0
        for task in tasks:
            data, ok = read_archive_file(task.path, self.max_member_bytes)
            verified += ok
            parse = parse_funding if task.dataset == "funding" else parse_klines
            frames.append(parse(data, task.path))
        merged = pd.concat(frames)
        self.read[series] = (len(tasks), len(merged), verified)
        return merged[~merged.index.duplicated(keep="last")].sort_index()


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
