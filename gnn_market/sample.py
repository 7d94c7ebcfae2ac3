"""The bundled real-data sample, and how it was cut.

``gnn_market/sample/`` is a :class:`~gnn_market.store.Store` holding hourly
Binance spot candles of the 30 most liquid USDT pairs (by estimated quote
volume, ``volume x close``) over the last 12 months of the shared dataset
``binance-spot-1h-2021-2023`` (2023-01-01 00:00 to 2023-12-30 UTC). See
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


def sample_store() -> Store:
    """The bundled sample as a read-only-by-convention :class:`Store`."""
    return Store(SAMPLE_DIR)


def build_sample(source: Path, out: Path = SAMPLE_DIR, n_symbols: int = SAMPLE_SYMBOLS,
                 start: pd.Timestamp = SAMPLE_START) -> list[str]:
    """Cut the bundled sample from the shared dataset; returns the symbols kept."""
    frames = read_csv_folder(source)  # drops each file's last (partial) hour
    cut = {s: f[f.index >= start] for s, f in frames.items()}
    liquidity = {s: float((f["volume"] * f["close"]).sum()) for s, f in cut.items() if len(f)}
    keep = sorted(sorted(liquidity, key=liquidity.get, reverse=True)[:n_symbols])
    store = Store(out)
    for sym in keep:
        store.write_klines(sym, cut[sym], market="spot")
    meta = {
        "source": "binance-spot-1h-2021-2023 (misrori/binance_startegy @ dbfa7fe)",
        "start": str(start),
        "symbols": keep,
        "ranking": "sum of volume x close over the cut, descending",
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
