"""The live path: append each new hour's predictions and embeddings to a file as soon as the hour is stored.

    python -m gnn_market.predict --follow --store data/ --checkpoint runs/X/model.pt --out live.parquet
    python -m gnn_market.data collect --store data/ &        # the job that stores each hour

Every ``--interval`` seconds :func:`follow` looks at the store's time columns
(cheap) and, when hours after the last one in the file are complete, encodes
them and appends one row per (hour, pair) to the ``.parquet`` or ``.csv`` file:
the columns of :meth:`gnn_market.encoder.EncodedRange.to_frame` (``time``, the
hour whose candle is the latest input, so the prediction is for the candle
opening at ``time + 1h``; ``symbol``; calibrated ``p_down``, ``p_sideways``,
``p_up``; ``prediction``; ``valid``; ``emb_0 ..``) plus ``model``, the first
12 hex digits of the checkpoint file's SHA-256.

Guarantees:

- **No hour twice.** The file itself is the state: hours up to its last ``time``
  are never written again, so a restart (or a second follower, which waits on
  the file's lock) continues where the file ends.
- **No hour missed.** Every complete hour after the file's last one is written,
  however many arrived since the last poll, including across a restart. A new
  file starts at ``start`` (default: the latest complete hour).
- **Complete hours only.** ``collect`` writes the symbols of an hour one file at a
  time, so hour ``h`` counts as stored when every symbol that has hour ``h - 1``
  also has ``h``, or when any symbol already has a later hour (a pair delisted at
  ``h - 1`` delays hour ``h`` until the next hour is stored).
- **Atomic writes.** The file is rewritten through :func:`gnn_market.atomic.atomic_path`
  (readers see the old file or the new one), under a cross-process lock.
- **One model per file.** A file written by another checkpoint (``model`` differs)
  or with other columns is refused, never mixed.

Each encoding reads the hours since ``max(first new hour - WARMUP_HOURS, ...)``:
features, correlations and the GRU lookback need far less than the
:data:`WARMUP_HOURS` (30 days), and Wilder's RSI, the one recursive feature,
forgets the older history to below float32 precision within them; so the work
per hour does not grow with the store.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import pyarrow.parquet as pq
from filelock import FileLock

from .atomic import atomic_path
from .encoder import EncodedRange, GraphEncoder
from .errors import DataError
from .panel import load_panel
from .store import Store
from .timeutil import HOUR

log = logging.getLogger(__name__)

#: Hours of history loaded before the first hour to encode (see the module docstring).
WARMUP_HOURS = 720
#: Suffixes --follow can append to.
FOLLOW_SUFFIXES = (".parquet", ".csv")
#: Characters of the checkpoint's SHA-256 kept in the ``model`` column.
MODEL_ID_CHARS = 12


@dataclass(frozen=True)
class FollowConfig:
    """What to follow, where to write, how often to look."""

    out: Path
    symbols: Sequence[str] | None = None   # default: every symbol of the checkpoint's market
    start: pd.Timestamp | None = None      # first hour of a new file (default: the latest complete hour)
    interval_s: float = 60.0               # seconds between polls
    iterations: int | None = None          # polls before returning (None: forever)
    embeddings: bool = True                # emb_* columns

    def validate(self) -> None:
        if Path(self.out).suffix.lower() not in FOLLOW_SUFFIXES:
            raise DataError(f"--follow appends to a {' or '.join(FOLLOW_SUFFIXES)} file, got {self.out}")
        if not Path(self.out).parent.is_dir():
            raise DataError(f"cannot write {self.out}: folder {Path(self.out).parent} does not exist")
        if not self.interval_s >= 0:
            raise DataError(f"--interval must be >= 0 seconds, got {self.interval_s}")
        if self.iterations is not None and self.iterations < 1:
            raise DataError(f"--iterations must be >= 1, got {self.iterations}")


def model_id(encoder: GraphEncoder) -> str:
    """The ``model`` column: the first :data:`MODEL_ID_CHARS` hex digits of the checkpoint's SHA-256."""
    return encoder.fingerprint()[:MODEL_ID_CHARS]


def complete_through(store: Store, market: str, symbols: Sequence[str] | None = None) -> pd.Timestamp | None:
    """The last hour every symbol alive just before it has stored (see the module docstring); None if empty."""
    names = list(symbols) if symbols is not None else store.symbols(market)
    lasts = [span[1] for span in (store.stored_range(s, market) for s in names) if span is not None]
    if not lasts:
        return None
    newest = max(lasts)
    alive = [t for t in lasts if t >= newest - HOUR]
    return newest if all(t == newest for t in alive) else newest - HOUR


def written_through(out: Path, model: str, embeddings: bool) -> pd.Timestamp | None:
    """Last hour in ``out`` (None if there is no file); refuses a file of another model or layout."""
    if not out.exists():
        return None
    try:
        if out.suffix.lower() == ".parquet":
            columns = pq.read_schema(out).names
            frame = pq.read_table(out, columns=["time", "model"]).to_pandas() if "model" in columns else None
        else:
            columns = list(pd.read_csv(out, nrows=0).columns)
            frame = pd.read_csv(out, usecols=["time", "model"], dtype={"model": str}) if "model" in columns else None
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise DataError(f"cannot read {out} to continue it: {exc}") from exc
    if frame is None:
        raise DataError(f"{out} has no 'model' column: it was not written by --follow; pass another --out")
    has_emb = any(c.startswith("emb_") for c in columns)
    if has_emb != embeddings:
        raise DataError(f"{out} was written {'with' if has_emb else 'without'} embedding columns; pass the same "
                        f"--no-embeddings setting or another --out")
    models = set(frame["model"].astype(str))
    if models - {model}:
        raise DataError(f"{out} holds predictions of model {sorted(models)[0]}, not of this checkpoint ({model}); "
                        f"pass another --out")
    if frame.empty:
        return None
    return pd.to_datetime(frame["time"], utc=True).max()


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
            tmp.write_bytes((out.read_bytes() if out.exists() else b"") + text.encode())
    return len(encoded.times) * len(encoded.symbols)


def poll_once(encoder: GraphEncoder, store: Store, config: FollowConfig, model: str) -> list[pd.Timestamp]:
    """Write every complete hour after the file's last one; returns the hours written."""
    out = Path(config.out)
    ready = complete_through(store, encoder.market, config.symbols)
    if ready is None:
        return []
    with FileLock(out.with_name(f".{out.name}.lock")):  # a second follower waits, then sees these hours
        last = written_through(out, model, config.embeddings)
        first = last + HOUR if last is not None else (config.start if config.start is not None else ready)
        if first > ready:
            return []
        panel = load_panel(store, market=encoder.market, symbols=list(config.symbols) if config.symbols else None,
                           start=first - WARMUP_HOURS * HOUR, end=ready)
        encoded = encoder.encode_range(panel, start=first, end=ready, progress=None)
        append_hours(out, encoded, model, config.embeddings)
    hours = list(encoded.times)
    log.info("wrote %d hour(s) %s .. %s x %d pairs to %s", len(hours), hours[0].isoformat(),
             hours[-1].isoformat(), len(encoded.symbols), out)
    return hours


def follow(encoder: GraphEncoder, store: Store, config: FollowConfig,
           sleep: Callable[[float], None] = time.sleep) -> list[pd.Timestamp]:
    """Poll ``store`` every ``config.interval_s`` seconds, appending new hours to ``config.out``.

    Runs ``config.iterations`` polls (forever when None; Ctrl-C stops it
    between or during polls without damaging the file). Returns the hours
    written. ``sleep`` is the wait between polls (tests pass one that stores
    the next hour).
    """
    config.validate()
    model = model_id(encoder)
    written: list[pd.Timestamp] = []
    n = 0
    while True:
        written += poll_once(encoder, store, config, model)
        n += 1
        if config.iterations is not None and n >= config.iterations:
            return written
        sleep(config.interval_s)

