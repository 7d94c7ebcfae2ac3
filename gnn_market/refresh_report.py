"""What one store refresh did: rows added per symbol, errors, requests and peak weight.

Neutral ground for every path that fills a store (the Binance pipeline of
:mod:`gnn_market.refresh_pipeline` and the generic :mod:`gnn_market.source_sync`),
so the generic code imports nothing exchange-specific.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .store_schema import MARKETS

if TYPE_CHECKING:  # annotations only: this module never imports the Binance client
    from .binance.client import BatchResult, BinanceClient  # noqa: F401 (string annotations)


@dataclass
class SymbolResult:
    """Rows one refresh added for one (market, symbol), per kind."""

    klines: int = 0
    book: int = 0
    funding: int = 0



@dataclass
class RefreshReport:
    """What one backfill/collect pass did, per market."""

    results: dict[tuple[str, str], SymbolResult] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    peak_weight: dict[str, int] = field(default_factory=dict)
    weight_budget: dict[str, int] = field(default_factory=dict)

    def total(self, what: str) -> int:
        return sum(getattr(r, what) for r in self.results.values())

    def summary(self) -> str:
        lines = []
        for market in MARKETS:
            res = {s: r for (m, s), r in self.results.items() if m == market}
            errs = {s: e for (m, s), e in self.errors.items() if m == market}
            if not res and not errs:
                continue
            lines.append(f"{market}: {len(res)} symbols, +{sum(r.klines for r in res.values())} candles, "
                         f"+{sum(r.book for r in res.values())} book snapshots"
                         + (f", +{sum(r.funding for r in res.values())} funding rows" if market == "perp" else "")
                         + (f", {len(errs)} skipped" if errs else ""))
            for sym, err in sorted(errs.items()):
                lines.append(f"  skipped {sym}: {err}")
        lines.append(f"{self.requests} requests ({self.retries} retries) in {self.seconds:.1f} s; peak weight "
                     + ", ".join(f"{m} {self.peak_weight.get(m, 0)}/{self.weight_budget.get(m, 0)}"
                                 for m in self.peak_weight))
        return "\n".join(lines)

    def finish(self, client: "BinanceClient", batch: "BatchResult", key: dict[str, tuple[str, str]], t0: float) -> "RefreshReport":
        """Fill in a :meth:`BinanceClient.map_symbols` batch, the client's counters and its peak weights."""
        self.results = {key[k]: v for k, v in batch.values.items()}
        self.errors = {key[k]: str(e) for k, e in batch.errors.items()}
        self.seconds = time.perf_counter() - t0
        self.requests, self.retries = client.requests, client.retries
        for m, lim in client.limiters.items():
            if lim.peak_reserved:
                self.peak_weight[m], self.weight_budget[m] = lim.peak_reserved, lim.limit
        return self
