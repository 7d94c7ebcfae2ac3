"""The live path: append each new hour's predictions and embeddings as soon as the hour is stored.

    python -m gnn_market.predict --follow --store data/ --checkpoint runs/X/model.pt --out runs/X/live
    python -m gnn_market.data collect --store data/ &        # the job that stores each hour
    python -m gnn_market.data collect --store data/ --predict runs/X/model.pt --predictions runs/X/live  # both

Every ``--interval`` seconds :func:`follow` looks at the store's time columns
(cheap) and, when hours after the last one written are complete, encodes them
and appends one row per (hour, pair): the columns of
:meth:`gnn_market.encoder.EncodedRange.to_frame` (``time``, the hour whose
candle is the latest input, so the prediction is for the candle opening at
``time + 1h``; ``symbol``; calibrated ``p_down``, ``p_sideways``, ``p_up``;
``prediction``; ``valid``; ``filled``; ``emb_0 ..``) plus ``model``, the first
12 hex digits of the checkpoint file's SHA-256. The output is either a folder
(``--out DIR``, no suffix: a month-partitioned Parquet dataset, ``time`` named
``hour``, new files only, see :mod:`gnn_market.prediction_dataset`; the form
for long runs) or one ``.parquet`` / ``.csv`` file, rewritten whole on each
append (:func:`append_hours`). ``collect --predict`` runs a
follower after each collect cycle (:mod:`gnn_market.live`).

Guarantees:

- **No hour twice.** The output itself is the state: hours up to its last
  ``time`` are never written again, so a restart (or a second follower, which
  waits on the output's lock) continues where the output ends.
- **No hour missed.** Every complete hour after the file's last one is written,
  however many arrived since the last poll, including across a restart. A new
  file starts at ``start`` (default: the latest complete hour).
- **Complete hours only, never rewritten.** ``collect`` writes the symbols of an
  hour one file at a time, and after an outage it catches up pair by pair, so a
  pair can be several hours behind the others for a while. Hour ``h`` counts as
  stored when every pair that has hour ``h - 1`` also has ``h``. Hours are
  written in order, so the follower writes up to the last hour of the pair
  furthest behind among those that have the hour before the file's next one (for
  a new file, among all pairs, since nothing tells a pair catching up from one
  that stopped). A written hour therefore equals a batch ``predict`` of it.
  A pair that never gets its next hour (delisted, or no longer collected) would
  hold every later hour back, so it counts as **stopped**: in a running
  follower, once the store's newest hour has advanced
  :data:`STOPPED_AFTER_ADVANCES` (2) times while the pair stayed where it was
  (a catch-up after an outage of any length reaches every pair within one
  ``collect`` cycle, during which the newest hour does not move); on a
  follower's first poll (every ``--once`` run), when it is
  ``stopped_after_hours`` (default 24) or more behind the store's newest hour.
  From then on its hours are written as the panel has them (forward-filled
  for up to 3 hours, then not valid), with a warning. Limits: a pair whose
  collection keeps failing is counted as stopped the same way (the hours
  written meanwhile are not rewritten if it is repaired later), and a follower
  (re)started in the middle of a catch-up from an outage longer than
  ``stopped_after_hours`` writes the pairs not yet caught up as stopped.
- **Atomic writes.** A file is rewritten, a folder gets new parts, through
  :func:`gnn_market.atomic.atomic_path` (readers see the old file or the new
  one), under a cross-process lock; a symbolic link given as ``out`` is written
  through (its target is replaced).
- **One model and one graph per file.** A file written by another checkpoint
  (``model`` differs), with other columns, or for other pairs (``--symbols``)
  is refused, never mixed; so is a damaged file (unparseable, or a last row cut
  short). A last row that is complete but lacks its newline gets one.

Each encoding reads the hours since ``max(first new hour - WARMUP_HOURS, ...)``:
features, correlations and the GRU lookback need far less than the
:data:`WARMUP_HOURS` (30 days), and Wilder's RSI, the one recursive feature,
forgets the older history to below float32 precision within them; so the work
per hour does not grow with the store.
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager, Iterator, Mapping, Protocol, Sequence

import pandas as pd
from filelock import FileLock

from . import prediction_dataset as pds
from .atomic import atomic_path
from .encoded import EncodedRange
from .errors import DataError
from .panel import load_panel
from .prediction_file import MODEL_ID_CHARS, Written, check_pairs, read_csv_state, read_parquet_state
from .store import Store
from .timeutil import HOUR

if TYPE_CHECKING:  # torch: only when a model is loaded, never for a CLI's --help
    from .encoder import GraphEncoder

__all__ = ["FollowConfig", "Written", "append_hours", "check_pairs", "complete_through", "follow", "model_id",
           "poll_once", "read_written", "stopped_pairs", "stored_lasts", "written_through"]

log = logging.getLogger(__name__)

#: Hours of history loaded before the first hour to encode (see the module docstring).
WARMUP_HOURS = 720
#: Suffixes --follow can append to (a single file, rewritten on each append); no suffix: a dataset folder.
FOLLOW_SUFFIXES = (".parquet", ".csv")
#: Default of :attr:`FollowConfig.stopped_after_hours`: longer than a ``collect`` catch-up takes to reach
#: every pair after any usual outage, short enough that a delisting holds predictions back at most a day.
STOPPED_AFTER_HOURS = 24
#: In a running follower, a pair left behind while the store's newest hour advanced this often has stopped.
STOPPED_AFTER_ADVANCES = 2


@dataclass(frozen=True)
class FollowConfig:
    """What to follow, where to write, how often to look."""

    out: Path
    symbols: Sequence[str] | None = None   # default: every stored symbol of the checkpoint's market
    start: pd.Timestamp | None = None      # first hour of a new file (default: the latest complete hour)
    interval_s: float = 60.0               # seconds between polls
    iterations: int | None = None          # polls before returning (None: forever)
    embeddings: bool = True                # emb_* columns
    stopped_after_hours: int = STOPPED_AFTER_HOURS  # on a first poll, a pair this far behind has stopped

    @property
    def dataset(self) -> bool:
        """``out`` names a folder (no suffix): the month-partitioned dataset of :mod:`gnn_market.prediction_dataset`."""
        return Path(self.out).suffix == ""

    def target(self) -> Path:
        """The file (or folder) written: ``out``, or what a symbolic link ``out`` leads to (the link is kept)."""
        return Path(os.path.realpath(Path(self.out).expanduser()))

    def validate(self) -> None:
        out = Path(self.out)
        if not self.dataset and out.suffix.lower() not in FOLLOW_SUFFIXES:
            raise DataError(f"--follow appends to a {' or '.join(FOLLOW_SUFFIXES)} file or to a folder (a name "
                            f"without suffix), got {self.out}")
        target = self.target()
        if target.suffix.lower() != out.suffix.lower():
            raise DataError(f"{out} is a link to {target}, which is not a {out.suffix or 'folder'} "
                            f"{'name' if self.dataset else 'file'}; pass another --out")
        if not target.parent.is_dir():
            raise DataError(f"cannot write {self.out}: folder {target.parent} does not exist")
        if target.is_dir() and not self.dataset:
            raise DataError(f"cannot write {self.out}: it is a folder; pass a file name")
        if self.dataset and target.exists() and not target.is_dir():
            raise DataError(f"cannot write {self.out}: it is a file; a name without suffix is a predictions folder")
        if not self.interval_s >= 0:
            raise DataError(f"--interval must be >= 0 seconds, got {self.interval_s}")
        if self.iterations is not None and self.iterations < 1:
            raise DataError(f"--iterations must be >= 1, got {self.iterations}")
        if self.stopped_after_hours < 1:
            raise DataError(f"stopped_after_hours must be >= 1, got {self.stopped_after_hours}")


@dataclass
class StuckPairs:
    """What one running follower has seen of pairs left behind, to tell a stopped pair from a catch-up.

    ``at_start``: the pairs far behind (``stopped_after_hours``) on the first poll, with
    their last hour: judged by distance, as nothing was seen before; they stay stopped
    while that hour does not change. Later, a pair counts as stopped only when it was
    left behind while the store's newest hour advanced :data:`STOPPED_AFTER_ADVANCES`
    times (``seen``: symbol -> (its last hour, the newest hour when first seen there)).
    A catch-up after an outage of any length reaches every pair within one ``collect``
    cycle, during which the newest hour does not move.
    """

    at_start: dict[str, pd.Timestamp] | None = None
    seen: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=dict)
    note: str = ""  # the last "waits for" line logged
    waiting_for: pd.Timestamp | None = None  # the next hour to write, as of the last poll

    def update(self, lasts: Mapping[str, pd.Timestamp], newest: pd.Timestamp, far_behind: set[str]) -> set[str]:
        """Record this poll's pairs behind ``newest``; returns those that have stopped."""
        if self.at_start is None:
            self.at_start = {s: lasts[s] for s in far_behind}
        seen = {}
        for sym, last in lasts.items():
            if last < newest:
                before = self.seen.get(sym)
                seen[sym] = before if before is not None and before[0] == last else (last, newest)
        self.seen = seen
        advanced = {s for s, (_, at) in seen.items() if newest - at >= STOPPED_AFTER_ADVANCES * HOUR}
        return advanced | {s for s, last in self.at_start.items() if lasts.get(s) == last}


def model_id(encoder: GraphEncoder) -> str:
    """The ``model`` column: the first :data:`MODEL_ID_CHARS` hex digits of the checkpoint's SHA-256."""
    return encoder.fingerprint()[:MODEL_ID_CHARS]


def check_symbols(store: Store, market: str, symbols: Sequence[str] | None) -> None:
    """Refuse symbols the store does not hold, as a plain ``predict`` does (a follower would wait forever)."""
    if symbols is None:
        return
    available = set(store.symbols(market))
    unknown = [s for s in symbols if s not in available]
    if unknown:
        raise DataError(f"unknown {market} symbols {unknown} in store {store.root}")


def stored_lasts(store: Store, market: str, symbols: Sequence[str] | None = None) -> dict[str, pd.Timestamp]:
    """Each symbol's last stored hour (symbols without candles left out); reads only time columns."""
    names = list(symbols) if symbols is not None else store.symbols(market)
    spans = {s: store.stored_range(s, market) for s in names}
    return {s: span[1] for s, span in spans.items() if span is not None}


def stopped_pairs(lasts: Mapping[str, pd.Timestamp], stopped_after_hours: int = STOPPED_AFTER_HOURS,
                  stuck: StuckPairs | None = None) -> set[str]:
    """Pairs that will not get their next hour (see the module docstring).

    Without ``stuck`` (one poll, ``--once``): those ``stopped_after_hours`` or more behind
    the newest stored hour. With it, a running follower's rule (:class:`StuckPairs`).
    """
    if not lasts:
        return set()
    newest = max(lasts.values())
    far_behind = {s for s, t in lasts.items() if newest - t >= stopped_after_hours * HOUR}
    return far_behind if stuck is None else stuck.update(lasts, newest, far_behind)


def complete_through(store_or_lasts: Store | Mapping[str, pd.Timestamp], market: str = "spot",
                     symbols: Sequence[str] | None = None, since: pd.Timestamp | None = None,
                     stopped: set[str] | None = None) -> pd.Timestamp | None:
    """The last hour ``H`` such that every hour of ``[since, H]`` is complete; None if nothing is stored.

    Hour ``h`` is complete when every pair that has ``h - 1`` also has ``h``; applied
    to each hour from ``since`` (the hour after the file's last) on, that is the
    earliest last hour among the pairs that have ``since - 1`` (those without it
    stopped earlier). Without ``since`` (a new file: nothing tells a pair catching
    up from one that stopped) it is the earliest last hour among all pairs.
    ``stopped`` pairs (default: :func:`stopped_pairs`' stateless rule) are not
    waited for. The result is before ``since`` when hour ``since`` is not complete yet.
    """
    lasts = (store_or_lasts if not isinstance(store_or_lasts, Store)
             else stored_lasts(store_or_lasts, market, symbols))
    if stopped is None:
        stopped = stopped_pairs(lasts)
    waited = waited_for(lasts, since, stopped)
    return min(waited.values()) if waited else None


def waited_for(lasts: Mapping[str, pd.Timestamp], since: pd.Timestamp | None,
               stopped: set[str]) -> dict[str, pd.Timestamp]:
    """The pairs whose next hours :func:`complete_through` waits for, with their last hours."""
    return {s: t for s, t in lasts.items() if s not in stopped and (since is None or t >= since - HOUR)}


def written_through(out: Path, model: str, embeddings: bool) -> pd.Timestamp | None:
    """Last hour in ``out`` (None if there is no file); refuses a file of another model or layout."""
    return read_written(out, model, embeddings).last


def read_written(out: Path, model: str, embeddings: bool) -> Written:
    """What ``out`` holds; refuses a damaged file or one of another model or layout (:class:`DataError`)."""
    if not out.exists():
        return Written(None, frozenset())
    columns, frame = read_parquet_state(out) if out.suffix.lower() == ".parquet" else read_csv_state(out)
    has_emb = any(c.startswith("emb_") for c in columns)
    if has_emb != embeddings:
        raise DataError(f"{out} was written {'with' if has_emb else 'without'} embedding columns; pass the same "
                        f"--no-embeddings setting or another --out")
    models = set(frame["model"])
    if models - {model}:
        raise DataError(f"{out} holds predictions of model {sorted(models - {model})[0]}, not of this checkpoint "
                        f"({model}); pass another --out")
    last = pd.to_datetime(frame["time"], utc=True).max() if len(frame) else None
    return Written(last, frozenset(frame["symbol"]))


def append_hours(out: Path, encoded: EncodedRange, model: str, embeddings: bool) -> int:
    """Append ``encoded``'s rows (with the ``model`` column) to ``out`` atomically; returns rows written."""
    frame = encoded.to_frame(embeddings=embeddings).assign(model=model)
    with atomic_path(out, DataError) as tmp:
        if out.suffix.lower() == ".parquet":
            if out.exists():
                frame = pd.concat([pd.read_parquet(out), frame], ignore_index=True)
            frame.to_parquet(tmp, index=False)
        else:
            text = frame.assign(time=frame["time"].map(pd.Timestamp.isoformat)).to_csv(
                index=False, header=not out.exists(), float_format="%.6g")
            old = out.read_bytes() if out.exists() else b""
            if old and not old.endswith(b"\n"):  # a complete last row without its newline (checked before)
                old += b"\n"
            tmp.write_bytes(old + text.encode())
    return len(encoded.times) * len(encoded.symbols)


@contextmanager
def output_lock(out: Path, lock_path: Path | None = None) -> Iterator[None]:
    """Hold ``out``'s cross-process lock (default ``.<name>.lock`` beside it; a second follower waits)."""
    lock_path = lock_path if lock_path is not None else out.with_name(f".{out.name}.lock")
    lock = FileLock(lock_path)
    try:
        lock.acquire()
    except OSError as exc:
        hint = f"remove the folder {lock_path}" if lock_path.is_dir() else f"make {lock_path.parent} writable"
        raise DataError(f"cannot lock {out} through {lock_path}: {exc.strerror or exc}; {hint} or pass "
                        f"another --out") from exc
    try:
        yield
    finally:
        lock.release()


class Output(Protocol):
    """Where a follower writes: :class:`FileOutput` or :class:`gnn_market.prediction_dataset.DatasetOutput`.

    ``written`` returns what the output holds (``last`` hour, ``symbols``) after refusing another model or layout.
    """

    path: Path

    def lock(self) -> ContextManager[None]: ...
    def written(self, model: str, embeddings: bool) -> Written | pds.DatasetState: ...
    def append(self, encoded: EncodedRange, model: str, embeddings: bool) -> None: ...


@dataclass
class FileOutput:
    """One ``.parquet`` / ``.csv`` file, rewritten whole on each append (:func:`append_hours`)."""

    path: Path

    def lock(self) -> ContextManager[None]:
        return output_lock(self.path)

    def written(self, model: str, embeddings: bool) -> Written:
        return read_written(self.path, model, embeddings)

    def append(self, encoded: EncodedRange, model: str, embeddings: bool) -> None:
        append_hours(self.path, encoded, model, embeddings)


def output_for(config: FollowConfig) -> Output:
    if config.dataset:
        return pds.DatasetOutput(config.target(), output_lock)
    return FileOutput(config.target())


def poll_once(encoder: GraphEncoder, store: Store, config: FollowConfig, model: str,
              stuck: StuckPairs | None = None) -> list[pd.Timestamp]:
    """Write every complete hour after the output's last one; returns the hours written.

    ``stuck``: what this follower saw on earlier polls (see :class:`StuckPairs`).
    """
    output = output_for(config)
    lasts = stored_lasts(store, encoder.market, config.symbols)
    if not lasts:
        return []
    with output.lock():
        written = output.written(model, config.embeddings)
        since = written.last + HOUR if written.last is not None else None  # None: a new file
        stopped = stopped_pairs(lasts, config.stopped_after_hours, stuck)
        ready = complete_through(lasts, since=since, stopped=stopped)
        first = since if since is not None else (config.start if config.start is not None else ready)
        if stuck is not None:
            stuck.waiting_for = first
        if ready is None or first > ready:
            _log_waiting(waited_for(lasts, since, stopped), first, stuck)
            return []
        _log_stopped(lasts, first, stopped)
        panel = load_panel(store, market=encoder.market, symbols=list(config.symbols) if config.symbols else None,
                           start=first - WARMUP_HOURS * HOUR, end=ready)
        encoded = encoder.encode_range(panel, start=first, end=ready, progress=None)
        check_pairs(output.path, written, encoded, config.symbols)
        output.append(encoded, model, config.embeddings)
    hours = list(encoded.times)
    log.info("wrote %d hour(s) %s .. %s x %d pairs to %s", len(hours), hours[0].isoformat(),
             hours[-1].isoformat(), len(encoded.symbols), output.path)
    return hours


def _log_waiting(waited: Mapping[str, pd.Timestamp], first: pd.Timestamp | None,
                 stuck: StuckPairs | None) -> None:
    """Say which pairs hold the next hour back (a catch-up in progress, or a pair not yet counted as stopped).

    A running follower says it once per change, not on every poll.
    """
    behind = sorted(s for s, t in waited.items() if first is not None and t < first)
    if not behind:
        return
    note = (f"hour {first.isoformat()} waits for {len(behind)} pair(s) not stored through it yet: "
            + ", ".join(f"{s} ({waited[s].isoformat()})" for s in behind[:10]))
    if stuck is None or stuck.note != note:
        log.info("%s", note)
    if stuck is not None:
        stuck.note = note


def _log_stopped(lasts: Mapping[str, pd.Timestamp], first: pd.Timestamp, stopped: set[str]) -> None:
    """Warn about the pairs no longer waited for whose last hour is among those about to be written."""
    for sym in sorted(s for s in stopped if lasts[s] >= first - HOUR):
        log.warning("%s has no hour after %s while the others have: counted as stopped (delisted?); its later "
                    "hours are written as the data has them (filled, then not valid)", sym, lasts[sym].isoformat())


def _log_idle_poll(n: int, stuck: StuckPairs, interval_s: float) -> None:
    """One INFO line per poll that wrote nothing: which hour it waits for, and when it looks again."""
    hour = stuck.waiting_for.isoformat() if stuck.waiting_for is not None else "the store's first hour"
    log.info("poll %d: nothing new to write; waiting for hour %s to be stored for every pair; next poll in %g s",
             n, hour, interval_s)


def follow(encoder: GraphEncoder, store: Store, config: FollowConfig,
           sleep: Callable[[float], None] = time.sleep) -> list[pd.Timestamp]:
    """Poll ``store`` every ``config.interval_s`` seconds, appending new hours to ``config.out``.

    Runs ``config.iterations`` polls (forever when None; Ctrl-C stops it
    between or during polls without damaging the output). Returns the hours
    written. ``sleep`` is the wait between polls (tests pass one that stores
    the next hour). Symbols the store does not hold are refused first.
    """
    config.validate()
    check_symbols(store, encoder.market, config.symbols)
    model = model_id(encoder)
    stuck = StuckPairs()
    written: list[pd.Timestamp] = []
    n = 0
    while True:
        hours = poll_once(encoder, store, config, model, stuck)
        written += hours
        n += 1
        if not hours:
            _log_idle_poll(n, stuck, config.interval_s)
        if config.iterations is not None and n >= config.iterations:
            return written
        sleep(config.interval_s)
