"""The CPU half of a refresh, run off the downloading process's GIL: parse answers, upsert the store.

A refresh (:mod:`gnn_market.refresh_pipeline`) downloads with threads, which
spend their time waiting on the network; what costs CPU per symbol is turning
the answers into frames and the store's read-merge-write of its klines, book
and funding files. Done in the downloading process that work holds the GIL and
stalls every download thread. Here it runs in a small process pool instead:

* :class:`SymbolFetch`: what the download threads got for one symbol, the
  answers as python-binance decoded them (lists and dicts; no frames built).
* :func:`write_fetched`: runs in a pool process. It parses the answers with the
  same functions as the client (:mod:`gnn_market.binance.parsers`) and writes
  through the public :class:`~gnn_market.store.Store` API in the same order as
  the sequential reference path (klines, book, funding), so every stored row,
  lock and guarantee is the same; a store file that breaks a rule fails only its
  symbol (:class:`DataError`), as there.
* :class:`WritePool`: a process pool started through a fork server that has
  imported this module once (each worker is a cheap fork of it, never a fork
  of the multi-threaded downloader). It falls back to writing in the calling
  thread when processes cannot be started, and a write whose worker died is
  redone in the calling thread (upserts are idempotent).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import multiprocessing.forkserver
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from .binance.parsers import book_frame, funding_frame, klines_frame, premium_frame, snapshot_ms
from .binance.universe import PERP
from .errors import DataError
from .refresh_report import SymbolResult
from .store import Store
from .store_schema import BadStoreFile

log = logging.getLogger(__name__)


@dataclass
class SymbolFetch:
    """What the download threads fetched for one (market, symbol), unparsed.

    Attributes:
        kline_pages: the kline arrays of each requested range, in request order
            (one list per range; every page of a range concatenated).
        book: the depth answer and its receive time on the server's clock (ms), or None.
        funding: settled fundingRate objects since the last stored one, or None when not asked.
        live: this perp's premiumIndex object (the running estimate of the next settlement), or None.
    """

    market: str
    symbol: str
    now_ms: int
    kline_pages: list[list[list]] = field(default_factory=list)
    book: tuple[dict, int] | None = None
    funding: list[dict] | None = None
    live: dict | None = None


def write_fetched(root: str, fetch: SymbolFetch) -> SymbolResult:
    """Parse ``fetch`` and upsert it into the store at ``root``: klines, then book, then funding.

    The order and the frames are those of the sequential path (``gnn_market.source_sync.sync_symbol``):
    a failure leaves the kinds before it written and those after it untouched.
    """
    try:
        return _write(Store(root), fetch)
    except BadStoreFile as exc:  # this symbol is skipped and reported, the others go on
        raise DataError(f"{exc}") from exc


def _write(store: Store, f: SymbolFetch) -> SymbolResult:
    res = SymbolResult()
    frames = [klines_frame(rows, f.symbol, f.now_ms) for rows in f.kline_pages]
    frames = [x for x in frames if len(x)]
    if frames:
        res.klines = store.write_klines(f.symbol, pd.concat(frames).sort_index(), f.market)
    if f.book is not None:
        data, received = f.book
        res.book = store.write_book(f.symbol, book_frame(data, f.symbol, snapshot_ms(data, received)), f.market)
    if f.market == PERP:
        new = [] if f.funding is None else [funding_frame(f.funding)]
        if f.live is not None:
            new.append(premium_frame([f.live]))
        new = [x for x in new if len(x)]
        if new:  # one upsert (one rewrite) for history + live row
            merged = pd.concat(new)
            res.funding = store.write_funding(f.symbol, merged[~merged.index.duplicated(keep="last")])
    return res


# --------------------------------------------------------------------------- pool
@dataclass(frozen=True)
class WritePoolConfig:
    """How the store writes of a refresh run.

    Attributes:
        processes: write processes (0: write in the calling thread). One per core: more only
            add scheduling and copying (measured in ``benchmarks/bench_refresh.py``).
        min_symbols: a refresh of fewer symbols writes in its own threads (starting the
            processes, about one import of pandas and pyarrow, costs more than it saves).
    """

    processes: int = os.cpu_count() or 1
    min_symbols: int = 16


class WritePool:
    """Runs :func:`write_fetched` calls in worker processes; thread-safe.

    Workers start on the first :meth:`run` (through a fork server that preloads
    this module), so a pool that is never used costs nothing. Use one pool for
    many refreshes (the ``collect`` loop): starting it costs about one import of
    pandas and pyarrow.
    """

    def __init__(self, config: WritePoolConfig | None = None) -> None:
        self.config = config or WritePoolConfig()
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._disabled = self.config.processes < 1

    def _pool(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._executor is None and not self._disabled:
                try:
                    ctx = mp.get_context("forkserver")
                    ctx.set_forkserver_preload([__name__])
                    self._executor = ProcessPoolExecutor(self.config.processes, mp_context=ctx)
                except (OSError, ValueError, ImportError) as exc:  # no semaphores / fork server here
                    log.warning("store writes run in this process: cannot start write processes (%s)", exc)
                    self._disabled = True
            return self._executor

    def start(self) -> None:
        """Start the workers in the background, so the first write does not wait for their imports."""
        with self._lock:
            if self._disabled or self._executor is not None:
                return  # no processes, or already started

        def spawn() -> None:
            pool = self._pool()
            if pool is not None:
                with suppress(RuntimeError, BrokenProcessPool):  # closed meanwhile: nothing to warm
                    for _ in range(self.config.processes):
                        pool.submit(int)
        threading.Thread(target=spawn, name="write-pool-start", daemon=True).start()

    def cpu_seconds(self) -> float:
        """CPU time used so far by the worker processes and their fork server (Linux; 0.0 elsewhere)."""
        with self._lock:
            pids = list(getattr(self._executor, "_processes", None) or {})
        server = getattr(getattr(mp.forkserver, "_forkserver", None), "_forkserver_pid", None)
        return sum(_process_cpu(pid) for pid in pids + ([server] if server else []))

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker process (in this thread without one); its result or its exception."""
        pool = self._pool()
        if pool is None:
            return fn(*args)
        try:
            future: Future = pool.submit(fn, *args)
            return future.result()
        except BrokenProcessPool:  # a worker died (killed, out of memory): the upsert is idempotent, redo it here
            log.warning("a store write process died; writing %s in this process", fn.__name__)
            self._reset(pool)
            return fn(*args)
        except RuntimeError as exc:  # submitted after shutdown (interpreter exit)
            if "shutdown" not in str(exc):
                raise
            return fn(*args)

    def _reset(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                self._executor = None
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the workers (after the writes in flight)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def __enter__(self) -> "WritePool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process from ``/proc`` (0.0 when it cannot be read)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_SHARED: WritePool | None = None
_SHARED_LOCK = threading.Lock()


def shared_pool() -> WritePool:
    """The process-wide pool every refresh uses by default (started on first use, kept for the next cycle)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = WritePool()
        return _SHARED
