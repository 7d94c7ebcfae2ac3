"""The store's read cache: every closed month of a (kind, market, symbol) in one file, validated by the month files' stats.

A full-history read of the month layout opens ~12 files per symbol, kind and year, and pyarrow spends
0.3-0.8 ms of CPU per file open. The cache keeps one Parquet file per (kind, market, symbol)::

    STORE/.read-cache/<kind>/market=<m>/symbol=<SYMBOL>.parquet

holding the rows of its *closed* months (every month before the symbol's newest stored month) and of
the newest month as it was when the cache was built, concatenated in the store's own schema, with a
manifest in the file's key-value metadata: per month its key, row count, and the ``(size, mtime_ns,
ctime_ns, inode, device)`` of the month file it was read from (stat taken before the read). A changed
closed month makes the next read rebuild the cache; the newest month, rewritten every hour while
``collect`` runs, is then simply read from its file until the next rebuild. The folder starts with a dot, outside every kind folder, so
``pyarrow.dataset``, DuckDB/Polars globs (``STORE/klines/*/*/*/*.parquet``), ``check`` and ``repair``
never see it.

A read (:func:`read_months`) stats the symbol's month files (no file open), takes from the cache only
the months whose stats equal the manifest's, reads every other month from its file, and validates the
concatenation exactly as the uncached read does (:func:`~gnn_market.store_layout.fast_frame`): the cache
is a faster source of the same tables, never a different answer. Any writer replaces a month file by a
rename (new inode, new times), a hand edit changes its times, so a changed month is read from its file
again. If the cache-backed tables fail validation, the month files alone are read (and their errors
reported as without the cache). A cache that cannot be read (damaged, truncated: pages carry CRCs)
is ignored with a warning and rebuilt. Checking those CRCs costs a third of a cache read, so a cache
file that passed them once is *sealed*: ``symbol=<SYMBOL>.seal`` beside it names the boot and the file's
exact stats; while both hold, nothing has written to the file since and its CRCs are skipped. A month file changed less than :data:`RACY_NS` before a
rebuild is not cached yet: a file system with coarse timestamps could give a later change the same
times ("racy" stats). Rebuilds write a temporary file and rename it (under a non-blocking lock: a second
builder skips), so readers see a complete cache or none; one that cannot be written (read-only store,
full disk) is skipped. Deleting ``STORE/.read-cache`` is always safe. Disable with
``CRYPTOGRAPH_STORE_READ_CACHE=0`` or ``Store(path, read_cache=False)``. The bundled sample store (inside the package)
is read without it: a read never writes into an installed package.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from .atomic import _UMASK, TMP_SUFFIX, temp_name_prefix
from .errors import StoreError
from .store_layout import MonthFiles, arrow_schema, fast_frame, is_own_schema, read_table
from .store_schema import FUNDING, _Kind

log = logging.getLogger(__name__)

#: Folder of the cache under the store root (hidden: engines, globs, check and repair skip it).
CACHE_DIR = ".read-cache"
#: Environment variable: ``0`` (or ``false``, ``no``, ``off``) turns the cache off for every new Store.
ENV_VAR = "CRYPTOGRAPH_STORE_READ_CACHE"
#: A month file whose ctime is less than this before a rebuild is not cached yet (coarse file times, see module doc).
RACY_NS = 3_000_000_000
#: Fewest closed months a read must ask for before the cache is used (one month: its own file is cheaper).
MIN_MONTHS = 2
_META_KEY = b"cryptograph.read_cache"
_VERSION = 1
#: The wall clock the racy rule compares file ctimes with (a name of its own, so tests can move it).
clock_ns = time.time_ns
Stat = tuple[int, int, int, int, int]
Months = list[tuple[int, Path]]


@lru_cache(maxsize=64)
def _in_package(root: str) -> bool:
    """True for a store inside this package (the bundled sample): reads never write into an installed package."""
    try:
        return Path(__file__).resolve().parent in Path(root).resolve().parents
    except OSError:
        return False


def enabled_by_default() -> bool:
    """False if ``CRYPTOGRAPH_STORE_READ_CACHE`` says ``0``/``false``/``no``/``off``, else True."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_file(root: Path, kind: _Kind, market: str, symbol: str) -> Path:
    """``root/.read-cache/<kind>/market=<market>/symbol=<symbol>.parquet`` (funding: ``market=perp``)."""
    market = "perp" if kind is FUNDING else market
    return root / CACHE_DIR / kind.name / f"market={market}" / f"symbol={symbol}.parquet"


def file_stat(path: Path) -> Stat:
    """What identifies one version of a month file: ``(size, mtime_ns, ctime_ns, inode, device)``."""
    return _stat_key(os.stat(path))


def _stat_key(st: os.stat_result) -> Stat:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


@dataclass
class Cached:
    """A cache file read back: its ``table``, the rows ``{key: (offset, rows)}`` of the months whose stats
    still match their month files (``valid``), and every month its manifest lists (the others are stale)."""

    table: pa.Table
    valid: dict[int, tuple[int, int]]
    listed: list[int]

    def month(self, key: int) -> pa.Table:
        offset, rows = self.valid[key]
        return self.table.slice(offset, rows)

    def runs(self, keys: list[int], files: dict[int, pa.Table]) -> list[pa.Table]:
        """The tables of months ``keys`` in order: a file's table, or one slice per run of months that lie
        side by side in the cache (one chunk, not one per month: the frame is built without copying them)."""
        out: list[pa.Table] = []
        lo = hi = -1
        for key in keys:
            if key in files:
                if hi > lo:
                    out.append(self.table.slice(lo, hi - lo))
                lo = hi = -1
                out.append(files[key])
                continue
            offset, rows = self.valid[key]
            if offset != hi:
                if hi > lo:
                    out.append(self.table.slice(lo, hi - lo))
                lo = offset
            hi = offset + rows
        if hi > lo:
            out.append(self.table.slice(lo, hi - lo))
        return out


def read_months(root: Path | None, kind: _Kind, market: str, symbol: str, months: Months, stored: Months,
                load: Callable[[list[pa.Table]], pd.DataFrame]) -> pd.DataFrame:
    """The validated frame of ``months`` (a subset of the symbol's month files ``stored``, both ascending).

    ``load(tables)``: the store's uncached validation of the tables of ``months`` (raises naming a bad
    file). ``root`` None: cache off. The cache serves a read that asks for at least :data:`MIN_MONTHS`
    closed months and at least half of them; others read their month files as without it.
    """
    closed = sum(1 for k, _ in months if k < stored[-1][0])
    if root is None or closed < max(MIN_MONTHS, (len(stored) - 1) // 2) or _in_package(str(root)):
        return load([read_table(p) for _, p in months])
    started = clock_ns()
    market = "perp" if kind is FUNDING else market  # funding has no market: one cache, whoever asks
    try:  # taken before any read (by list_months, while listing): a change after them shows next time
        stats = {k: _stat_key(st) for k, st in stored.stats.items()} if isinstance(stored, MonthFiles) \
            else {key: file_stat(path) for key, path in stored}
    except OSError:  # a month file vanished meanwhile: the plain read reports it as it always did
        return load([read_table(p) for _, p in months])
    path, identity = cache_file(root, kind, market, symbol), (kind.name, market, symbol)
    cached = open_cache(path, kind, identity, stats)
    valid = cached.valid if cached else {}
    keys = [k for k, _ in months]
    files = {k: read_table(p) for k, p in months if k not in valid}
    df = None
    if cached is not None and len(files) < len(months):
        rows = [valid[k][1] if k in valid else files[k].num_rows for k in keys]
        df = fast_frame(keys, kind, cached.runs(keys, files), rows)
    if df is None:
        try:  # file by file (a foreign month file, say): cached months are checked as theirs would be
            df = load([cached.month(k) if k in valid else files[k] for k in keys])
        except StoreError:
            if not any(k in valid for k in keys):
                raise
            # The cache may be what fails: the month files alone decide, and a bad one is named as without it.
            files.update({k: read_table(p) for k, p in months if k in valid})
            cached, valid = None, {}
            df = load([files[k] for k in keys])
            log.warning("read cache %s held rows the store refuses; read the month files instead (it is rebuilt)", path)
    _update(path, kind, identity, cached, files, stats, stored[-1][0], started)
    return df


def _update(path: Path, kind: _Kind, identity: tuple[str, str, str], cached: Cached | None,
            files: dict[int, pa.Table], stats: dict[int, Stat], newest: int, started: int) -> None:
    """Rebuild the cache when a closed month is stale in it or missing from it (and may be cached now).

    ``files``: the month tables this read took from the month files (validated). Only closed months
    decide: the newest month changes every hour while a collector runs, so its copy in the cache is a
    bonus while unchanged (a store nobody writes), never a reason to rewrite the cache.
    """
    fresh = {k: t for k, t in files.items() if _cacheable(k, stats, started, t, kind)}
    valid = cached.valid if cached else {}
    stale = cached is not None and any(k < newest and k not in valid for k in cached.listed)
    if stale or any(k < newest for k in fresh):
        write_cache(path, kind, identity, {**{k: cached.month(k) for k in valid}, **fresh}, stats)


def _cacheable(key: int, stats: dict[int, Stat], started: int, table: pa.Table, kind: _Kind) -> bool:
    """True for a month unchanged for :data:`RACY_NS`, in the store's schema with sorted unique times."""
    if stats[key][2] >= started - RACY_NS or not is_own_schema(table.schema, kind):
        return False
    times = table.column(kind.index)
    return times.null_count == 0 and bool(np.all(np.diff(times.cast(pa.int64()).to_numpy()) > 0))


def open_cache(path: Path, kind: _Kind, identity: tuple[str, str, str], stats: dict[int, Stat]) -> Cached | None:
    """The cache file's months that match ``stats`` (``{key: month file stat}``), or None: absent or damaged
    (logged as a warning). Of another kind or symbol, or nothing in it matches: no valid month (rows not read).

    Its page checksums are verified unless its seal (:func:`sealed`) vouches for this very file.
    """
    try:
        before = os.stat(path)
    except OSError:
        return None
    trusted = sealed(path, before)
    try:
        with pq.ParquetFile(path, pre_buffer=False, page_checksum_verification=not trusted) as fh:
            manifest = json.loads(fh.schema_arrow.metadata[_META_KEY])
            listed = [int(m[0]) for m in manifest["months"]]
            if (manifest["version"], *manifest["identity"]) != (_VERSION, *identity) or \
                    not is_own_schema(fh.schema_arrow, kind):
                return Cached(pa.table({}), {}, listed)
            rows = [int(m[1]) for m in manifest["months"]]
            if sum(rows) != fh.metadata.num_rows:
                raise ValueError(f"manifest lists {sum(rows)} rows, the file {fh.metadata.num_rows}")
            offsets = np.r_[0, np.cumsum(rows)].tolist()
            valid = {k: (offsets[i], rows[i]) for i, (k, _, s) in enumerate(manifest["months"])
                     if stats.get(k) == tuple(s)}
            table = fh.read(use_threads=False) if valid else pa.table({})
    except (OSError, pa.ArrowException, ValueError, KeyError, TypeError, IndexError) as exc:
        log.warning("ignoring the damaged read cache %s (%s); it is rebuilt from the month files", path, exc)
        return None
    if valid and not trusted:
        seal(path, before)
    return Cached(table, valid, listed)


def _boot_id() -> str | None:
    """This boot's id (Linux), or None: then every read verifies the cache's checksums."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


#: Seals are valid within one boot: a crash (power loss) can leave a cache file torn under intact stats.
BOOT_ID = _boot_id()


def seal_file(path: Path) -> Path:
    """The seal beside a cache file: ``symbol=<S>.seal``."""
    return path.with_suffix(".seal")


def sealed(path: Path, stat: os.stat_result) -> bool:
    """True if the seal names this boot and exactly this cache file (``stat``): its pages were checked (or
    written) since, and any later write to it would have changed its stats. Else its checksums are verified."""
    try:
        return BOOT_ID is not None and json.loads(seal_file(path).read_text()) == [BOOT_ID, *_stat_key(stat)]
    except (OSError, ValueError):
        return False


def seal(path: Path, stat: os.stat_result) -> None:
    """Record that the cache file with ``stat`` passed its checksums; skipped for a file changed within
    :data:`RACY_NS` (a change in the same clock tick could hide behind equal stats) or a store we cannot write.

    No lock: a seal only ever names a file that passed, so a race costs one more verification, nothing else.
    """
    if BOOT_ID is None or stat.st_ctime_ns >= clock_ns() - RACY_NS:
        return
    try:
        if os.stat(path) != stat:
            return  # replaced while we read it: our check says nothing about the new file
        _replace(seal_file(path), lambda name: Path(name).write_text(json.dumps([BOOT_ID, *_stat_key(stat)])))
    except OSError as exc:
        log.debug("read cache %s not sealed: %s", path, exc)


def write_cache(path: Path, kind: _Kind, identity: tuple[str, str, str], tables: dict[int, pa.Table],
                stats: dict[int, Stat]) -> bool:
    """Replace the cache file by ``tables`` (``{month key: table}``) and their manifest; True if written.

    Atomic (temporary file, rename); skipped when another process is writing it (non-blocking
    lock) or the store cannot be written (read-only, full disk): the read goes on uncached.
    """
    keys = sorted(tables)
    schema = arrow_schema(kind)
    manifest = {"version": _VERSION, "identity": list(identity),
                "months": [[k, tables[k].num_rows, list(stats[k])] for k in keys]}
    try:
        table = pa.concat_tables([tables[k].cast(schema) for k in keys]) if keys else schema.empty_table()
        table = table.replace_schema_metadata({**schema.metadata, _META_KEY: json.dumps(manifest).encode()})
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.parent / f".{path.name}.lock", timeout=0):
            _write_file(path, table)
        return True
    except Timeout:
        return False  # another reader is building it: ours would be no better
    except (OSError, pa.ArrowException) as exc:
        log.debug("read cache %s not written: %s", path, exc)
        return False


def _write_file(path: Path, table: pa.Table) -> None:
    """Write ``table`` to a temporary file beside ``path`` and rename it onto ``path``; the caller holds its lock.

    No fsync: a cache torn by a crash has no valid seal after the reboot (:data:`BOOT_ID`), so its page
    checksums are verified, fail, and it is rebuilt.
    """
    for target in (path, seal_file(path)):
        for stale in path.parent.glob(f"{temp_name_prefix(target)}*{TMP_SUFFIX}"):
            stale.unlink(missing_ok=True)  # left by a process that died: none is in flight while we hold the lock
    _replace(path, lambda name: pq.write_table(table, name, compression="snappy", use_dictionary=False,
                                               write_page_checksum=True))


def _replace(path: Path, write: Callable[[str], object]) -> None:
    """``write(name)`` a temporary file beside ``path``, then rename it onto ``path`` (no fsync, see above)."""
    fd, name = tempfile.mkstemp(prefix=temp_name_prefix(path), suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(name)
        os.chmod(name, 0o666 & ~_UMASK)  # readable by whoever may read the store
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)
