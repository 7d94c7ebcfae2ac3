"""The bundled real-data sample, and how it was cut.

``gnn_market/sample/`` is a :class:`~gnn_market.store.Store` holding hourly
Binance spot candles of 30 USDT pairs over the last 12 months of the shared
dataset ``binance-spot-1h-2021-2023`` (2023-01-01 00:00 to 2023-12-30 UTC).
The pairs are chosen point in time: the 30 largest by estimated quote volume
(``volume x close``) over the 12 months **before** the cut (2022), among the
pairs that trade on 2023-01-01, so no hour of the sample's own range, test
weeks included, decides which pairs it holds. See
``gnn_market/sample/PROVENANCE.md`` for the source, cut and known gaps.

Every command uses this sample when no store is given.

To rebuild it from the shared CSV files::

    python -m gnn_market.sample /path/to/binance-spot-1h-2021-2023
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from .cli import run_cli
from .csv_import import read_csv_folder
from .store import Store

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
SAMPLE_START = pd.Timestamp("2023-01-01 00:00", tz="UTC")
SAMPLE_SYMBOLS = 30
RANKING_START = pd.Timestamp("2022-01-01 00:00", tz="UTC")  # ranking window [RANKING_START, SAMPLE_START)


def sample_store() -> Store:
    """The bundled sample as a read-only-by-convention :class:`Store`."""
    return Store(SAMPLE_DIR)


def rank_by_volume(frames: dict[str, pd.DataFrame], start: pd.Timestamp, end: pd.Timestamp
                   ) -> dict[str, float]:
    """Estimated USDT volume (sum of ``volume x close``) of each pair over ``[start, end)``.

    Pairs without a candle at ``end`` (not trading when the sample starts) are left out.
    """
    liquidity = {}
    for sym, frame in frames.items():
        if end not in frame.index:
            continue
        window = frame[(frame.index >= start) & (frame.index < end)]
        if len(window):
            liquidity[sym] = float((window["volume"] * window["close"]).sum())
    return liquidity


def build_sample(source: Path, out: Path = SAMPLE_DIR, n_symbols: int = SAMPLE_SYMBOLS,
                 start: pd.Timestamp = SAMPLE_START, ranking_start: pd.Timestamp = RANKING_START
                 ) -> list[str]:
    """Cut the bundled sample from the shared dataset; returns the symbols kept.

    The universe is ranked on ``[ranking_start, start)`` only (point in time).
    """
    frames = read_csv_folder(source)  # drops each file's last (partial) hour
    liquidity = rank_by_volume(frames, ranking_start, start)
    keep = sorted(sorted(liquidity, key=liquidity.get, reverse=True)[:n_symbols])
    cut = {s: frames[s][frames[s].index >= start] for s in keep}
    store = Store(out)
    for sym in keep:
        store.write_klines(sym, cut[sym], market="spot")
    meta = {
        "source": "binance-spot-1h-2021-2023 (misrori/binance_startegy @ dbfa7fe)",
        "start": str(start),
        "symbols": keep,
        "ranking": "sum of volume x close over the 12 months before the cut, descending",
        "ranked_on": [str(ranking_start), str(start)],
        "usd_volume_estimate": {s: round(liquidity[s]) for s in keep},
    }
    (out / "sample.json").write_text(json.dumps(meta, indent=2) + "\n")
    return keep


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="folder with <SYMBOL>.csv.gz files")
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR)
    args = parser.parse_args(argv)
    kept = build_sample(args.source, args.out)
    print(f"wrote {len(kept)} symbols to {args.out}: {' '.join(kept)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
