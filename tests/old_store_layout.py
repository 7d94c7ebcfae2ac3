"""Stores in the one-file-per-symbol layout of formats 1-2, written the way the previous release wrote them.

Two writers, both frozen references:

* :func:`write_old_file`: plain pyarrow, exactly the previous release's file format
  (``Table.from_pandas`` with the index, zstd, no dictionary encoding) at its paths
  ``klines/<market>/<SYMBOL>.parquet``, ``book/<market>/<SYMBOL>.parquet``, ``funding/<SYMBOL>.parquet``.
* :func:`previous_release_store`: the previous release's own ``Store`` class, loaded from git
  (commit :data:`PREVIOUS_RELEASE`, the last one with that layout); None where git or the commit is missing.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
#: The last commit whose ``gnn_market/store.py`` wrote one file per (kind, market, symbol).
PREVIOUS_RELEASE = "03b4107"


def old_path(root: Path, kind: str, symbol: str, market: str = "spot") -> Path:
    """Where formats 1-2 kept ``symbol``'s file of ``kind``."""
    return root / kind / f"{symbol}.parquet" if kind == "funding" else root / kind / market / f"{symbol}.parquet"


def write_old_file(root: Path, kind: str, symbol: str, frame: pd.DataFrame, market: str = "spot") -> Path:
    """Write ``frame`` (index = the kind's time column) as the previous release did; no checks."""
    path = old_path(root, kind, symbol, market)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=True), path, compression="zstd", use_dictionary=False)
    return path


def write_old_marker(root: Path, version: int | None) -> None:
    """``STORE.json`` of format ``version`` (None: no marker, as before markers existed)."""
    root.mkdir(parents=True, exist_ok=True)
    if version is not None:
        (root / "STORE.json").write_text(json.dumps({"format": "cryptograph-store", "version": version}) + "\n")


def previous_release_store():
    """The previous release's ``Store`` class (its module loaded from git), or None if git cannot give it."""
    if shutil.which("git") is None:
        return None
    done = subprocess.run(["git", "show", f"{PREVIOUS_RELEASE}:gnn_market/store.py"], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        return None
    spec = importlib.util.spec_from_loader("gnn_market._previous_release_store", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "gnn_market"  # its relative imports (atomic, errors, store_schema) resolve here
    exec(compile(done.stdout, f"{PREVIOUS_RELEASE}:gnn_market/store.py", "exec"), module.__dict__)
    return module.Store


def klines(start: str, hours: int, seed: int = 0) -> pd.DataFrame:
    """Valid hourly candles with every column, a missing trade count and a missing quote volume."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, hours)))
    idx = pd.date_range(start, periods=hours, freq="h", tz="UTC", name="open_time").as_unit("ns")
    volume = rng.uniform(1, 10, hours)
    frame = pd.DataFrame({"open": close * (1 + rng.normal(0, 0.002, hours)), "high": close * 1.02,
                          "low": close * 0.98, "close": close, "volume": volume, "quote_volume": volume * close,
                          "trades": pd.array(rng.integers(1, 1000, hours), dtype="Int64"),
                          "taker_buy_volume": volume / 2, "taker_buy_quote_volume": volume * close / 2}, index=idx)
    frame["open"] = frame["open"].clip(frame["low"], frame["high"])
    if hours > 4:
        frame.loc[idx[3], "trades"] = pd.NA
        frame.loc[idx[4], "quote_volume"] = np.nan
    return frame


def book(start: str, hours: int, seed: int = 0, lead_s: int = 30) -> pd.DataFrame:
    """Book snapshots ``lead_s`` seconds before each hour (0: on the hour, as format 1 floored them)."""
    rng = np.random.default_rng(seed)
    idx = (pd.date_range(start, periods=hours, freq="h", tz="UTC", name="snapshot_time").as_unit("ns")
           - pd.Timedelta(seconds=lead_s))
    bid = 100 + rng.normal(0, 1, hours)
    return pd.DataFrame({"best_bid": bid, "best_ask": bid + 0.01, "best_bid_qty": 1.0, "best_ask_qty": 2.0,
                         "bid_qty": rng.uniform(10, 20, hours), "ask_qty": rng.uniform(10, 20, hours),
                         "bid_notional": 1e3, "ask_notional": 2e3, "spread": 0.01,
                         "levels": np.full(hours, 20, dtype="int64")}, index=idx)


def funding(start: str, events: int, seed: int = 0) -> pd.DataFrame:
    """8-hourly funding events, one mark price missing."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=events, freq="8h", tz="UTC", name="funding_time").as_unit("ns")
    frame = pd.DataFrame({"funding_rate": rng.normal(0, 1e-4, events), "mark_price": 100 + rng.normal(0, 1, events)},
                         index=idx)
    if events > 1:
        frame.loc[idx[1], "mark_price"] = np.nan
    return frame
