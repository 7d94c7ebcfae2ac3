"""The store-keeping commands of the data CLI: ``info``, ``repair`` and ``migrate``.

They read or fix a store and never talk to a data source; ``python -m gnn_market.data``
(:mod:`gnn_market.data`) parses their arguments and re-exports every name here.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .errors import StoreError
from .migrate import migrate_store
from .sources import open_store
from .store import Store
from .store_schema import MARKETS


def _existing_store(path: str | None) -> Store:
    """``--store`` of a reading command, with a precise message when it is not a store folder."""
    if path is not None:
        root = Path(path).expanduser()
        if root.exists() and not root.is_dir():
            raise StoreError(f"store path is a file, not a folder: {root}")
    return open_store(path)


def cmd_info(args: argparse.Namespace) -> int:
    store = _existing_store(args.store)
    print(format_info(store))
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    root = Path(args.store).expanduser()
    if root.exists() and not root.is_dir():
        raise StoreError(f"store path is a file, not a folder: {root}")
    store = Store(root)
    reports = store.repair(dry_run=args.dry_run)  # one run at a time (the store's repair lock)
    if not reports:
        print(f"store {store.root}: every file passes the store rules; nothing to repair")
        return 0
    verb = "would drop" if args.dry_run else "dropped"
    for r in reports:
        print(r.line())
        if not r.repairable:
            print("  not repairable (unreadable): move it away and download or import it again")
        else:
            print(f"  {verb} {r.rows_before - r.rows_after} of {r.rows_before} rows"
                  + (f"; original kept in {r.backup}" if r.backup else ""))
    if any(not r.repairable for r in reports):
        raise StoreError(f"{sum(not r.repairable for r in reports)} file(s) could not be repaired (see above)")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    root = Path(args.store).expanduser()
    if not root.exists():
        raise StoreError(f"store not found: {root}")
    if not root.is_dir():
        raise StoreError(f"store path is a file, not a folder: {root}")
    bar = tqdm(unit="file", disable=not sys.stderr.isatty(), file=sys.stderr, desc="migrate")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        report = migrate_store(root, keep_backup=args.keep_backup, progress=progress)
    finally:
        bar.close()
    print(report.line())
    return 0


def format_info(store: Store) -> str:
    """Per market: symbols, range, rows, gaps, funding and book coverage; then the files that break a store rule,
    then kline files without a candle (``ok`` NO: an empty symbol is not usable data)."""
    version = store.format_version()  # an old layout, a newer format or a damaged marker: one error line
    summary = store.summary()
    problems = [r.line() for r in store.check()]
    book_time = ", book stamps floored to the hour (format 1 collectors)" if store.book_time() == "floored" else ""
    lines = [f"store {store.root} (format {version}{book_time})"]
    for market in MARKETS:
        s = summary[summary["market"] == market] if len(summary) else summary
        if not len(s):
            continue
        with_gaps = s[s["gaps"] > 0]
        lines.append(f"{market}: {len(s)} symbols, {_when(s['first'].min())} .. "
                     f"{_when(s['last'].max())} UTC, {int(s['rows'].sum())} candles, "
                     f"{len(with_gaps)} symbols with gaps ({int(s['missing_hours'].sum())} missing hours)")
        book = s[s["book_rows"] > 0]
        lines.append(f"  book: {len(book)}/{len(s)} symbols, {int(s['book_rows'].sum())} snapshots")
        if market == "perp":
            fund = s[s["funding_rows"] > 0]
            lines.append(f"  funding: {len(fund)}/{len(s)} symbols, {int(s['funding_rows'].sum())} rows")
    if len(summary):
        table = summary.drop(columns="problems").assign(
            first=summary["first"].dt.strftime("%Y-%m-%d %H:%M"), last=summary["last"].dt.strftime("%Y-%m-%d %H:%M"),
            ok=np.where((summary["problems"] == "") & (summary["rows"] > 0), "yes", "NO"))
        lines.append(table.to_string(index=False))
    if problems:
        lines.append(f"problems: {len(problems)}; a file listed here raises an error when read until "
                     f"'python -m gnn_market.data repair --store {store.root}' fixes it:")
        lines.extend(f"  {line}" for line in problems)
    else:
        lines.append("problems: none")
    lines.extend(_empty_files(summary))
    return "\n".join(lines)


def _empty_files(summary: pd.DataFrame) -> list[str]:
    """Lines for kline files that pass the rules but hold no candle (written by an older version or another tool)."""
    if not len(summary):
        return []
    empty = summary[(summary["rows"] == 0) & (summary["problems"] == "")]
    if not len(empty):
        return []
    return [f"empty: {len(empty)} kline file(s) hold no candle; remove them or import data into them:"] + [
        f"  klines/{market} {symbol}" for market, symbol in zip(empty["market"], empty["symbol"])]


def _when(ts: pd.Timestamp) -> str:
    return "-" if pd.isna(ts) else f"{ts:%Y-%m-%d %H:%M}"
